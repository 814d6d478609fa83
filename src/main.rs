//! The `kubetask` binary: the controller, offline rendering, plugin tools and cluster commands
//! (all in [`kubetask::cli`]).

fn main() -> std::process::ExitCode {
    kubetask::cli::run()
}
