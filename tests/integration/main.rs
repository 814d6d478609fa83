//! The integration and end-to-end tests of the `kubetask` package, as one test binary: each
//! module was its own binary once, each linking wasmtime, kube and the harness again (issue 34).
//! Run one module with `cargo test --test integration controller_cron::`, one test with its
//! full path (`cargo test --test integration controller_plugins::lagging`).

mod support;

mod architecture;
mod budgets;
mod cli;
mod controller;
mod controller_cron;
mod controller_deployment;
mod controller_example_plugins;
mod controller_failures;
mod controller_lifecycle;
mod controller_plugins;
mod controller_resilience;
mod crds;
mod default_plugin_parity;
mod egress;
mod fuzz_inputs;
mod gateway;
mod install;
mod plugin_cli;
mod plugin_examples;
mod plugin_sandbox;
mod rbac;
mod triggers;
mod workspace;
