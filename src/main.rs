//! proa: the entrypoint of a Kubernetes Pod's main container. It waits until the sidecars are ready, runs the
//! program, stops the sidecars when it exits, and exits with the program's code (see DESIGN.md).
//! `main` only parses, starts logging, runs the lifecycle and exits.
#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod api;
mod child;
mod cli;
mod cluster;
mod exit;
#[cfg(feature = "kill")]
mod kill;
mod lifecycle;
mod logging;
mod pod;
#[cfg(feature = "kill")]
mod procs;
mod readiness;
mod shutdown;
mod signals;
mod watch;

use std::process::ExitCode;

use cli::Parsed;

fn main() -> ExitCode {
    let options = match cli::parse(std::env::args_os().skip(1), |var| std::env::var(var).ok()) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Help) => {
            print!("{}", cli::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("proa {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("proa: ERROR {err}");
            return ExitCode::from(exit::PROA_FAILED);
        }
    };
    logging::init(options.log_format);
    #[cfg(feature = "kill")]
    if options.kill.all {
        if let Err(err) = kill::check_kill_all() {
            log::error!("{err}");
            return ExitCode::from(exit::PROA_FAILED);
        }
    }
    let api = cluster::discover(|var| std::env::var(var).ok(), cluster::hostname)
        .map_err(|err| err.to_string())
        .and_then(|cluster| api::Api::new(cluster, options.watch_timeout).map_err(|err| err.to_string()));
    match api {
        Ok(api) => ExitCode::from(lifecycle::run(options, api)),
        Err(err) => {
            log::error!("{err}");
            ExitCode::from(exit::PROA_FAILED)
        }
    }
}
