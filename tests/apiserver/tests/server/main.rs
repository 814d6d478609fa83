//! The test API server's own suites, as one test binary (each was its own binary once, each
//! linking kube and the server again). Run one with `cargo test -p kubetask-test-apiserver
//! --test server watch::`.

mod common;

mod kubectl;
mod simulation_and_faults;
mod verbs;
mod watch;
