//! proa: the entrypoint of a Kubernetes Pod's main container. It waits until the sidecars are ready, runs the
//! program, stops the sidecars when it exits, and exits with the program's code (see DESIGN.md).
//! `main` only parses, starts logging, picks where readiness comes from, runs the lifecycle and exits.
#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

/// `log::debug!` for proa's own lines. Release builds compile every library's debug lines out
/// (`release_max_level_info`: rustls's alone cost tens of kB), but keep these: `RUST_LOG=debug` shows them.
macro_rules! debug {
    ($($arg:tt)+) => {
        if ::log::max_level() >= ::log::LevelFilter::Debug {
            $crate::logging::debug_line(module_path!(), format_args!($($arg)+));
        }
    };
}

mod api;
mod check;
mod child;
mod cli;
mod clock;
mod cluster;
mod crash;
mod exit;
mod install;
#[cfg(feature = "kill")]
mod kill;
#[cfg(test)]
mod layers;
mod lifecycle;
mod lines;
mod logging;
mod options;
mod pidfd;
mod pod;
mod preset;
mod probe;
#[cfg(feature = "kill")]
mod procs;
mod quit;
mod readiness;
mod shutdown;
mod signals;
mod termination;
mod tls;
mod url;
mod watch;

use std::io::Write;
use std::process::ExitCode;

use cli::Parsed;
use lifecycle::{Channel, Source};
use options::Options;

fn main() -> ExitCode {
    crash::install();
    let env = |var: &str| std::env::var(var).ok();
    let options = match cli::parse(std::env::args_os().skip(1), env) {
        Ok(Parsed::Run(options)) => options,
        Ok(Parsed::Check(options)) => {
            logging::init(options.log_format);
            return ExitCode::from(check::run(&options, env));
        }
        Ok(Parsed::Install(options)) => {
            logging::init(options.log_format);
            return ExitCode::from(install(&options));
        }
        // `print!` and `eprintln!` panic when the stream is closed; what they write is never worth a panic.
        Ok(Parsed::Help) => {
            let _ = write!(std::io::stdout(), "{}", cli::help());
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            let _ = writeln!(std::io::stdout(), "{}", cli::VERSION);
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            logging::write_stderr(&format!("proa: ERROR {err}\n"));
            termination::write(&cli::termination_log_from_env(env), &err.to_string());
            return ExitCode::from(exit::PROA_FAILED);
        }
    };
    logging::init(options.log_format);
    if options.disabled {
        debug!("PROA_DISABLE=true: running {} in proa's place", options.program.to_string_lossy());
        let err = child::exec_program(&options.program, &options.args);
        log::error!("{err}");
        return ExitCode::from(err.code());
    }
    // Signals first, so that a SIGTERM during start-up is not lost.
    let channel = match Channel::open() {
        Ok(channel) => channel,
        Err(reason) => return ExitCode::from(lifecycle::fail(None, &options, exit::PROA_FAILED, &reason)),
    };
    // Every kill action is refused in the node's PID namespace, before anything runs.
    #[cfg(feature = "kill")]
    if let Err(err) = kill::check(&options.kill_rules()) {
        return ExitCode::from(lifecycle::fail(Some(&channel), &options, exit::PROA_FAILED, &err.to_string()));
    }
    let in_cluster = env("KUBERNETES_SERVICE_HOST").is_some_and(|host| !host.trim().is_empty());
    let source = match (options.serve_quit, options.no_api_endpoints(in_cluster)) {
        (Some(address), _) => quit::bind(address).map(Source::Quit),
        (None, Ok(Some(endpoints))) => Ok(Source::Endpoints(endpoints)),
        (None, Ok(None)) => connect(&options),
        (None, Err(err)) => Err(err.to_string()),
    };
    match source {
        Ok(source) => ExitCode::from(lifecycle::run(channel, options, source)),
        Err(reason) => ExitCode::from(lifecycle::fail(Some(&channel), &options, exit::PROA_FAILED, &reason)),
    }
}

/// `--install DIR`: one line on stdout saying what was installed, 0; or the reason, also in the termination log, 125.
fn install(options: &Options) -> u8 {
    let dir = options.install.as_deref().unwrap_or(std::path::Path::new("."));
    match install::install(dir) {
        Ok(installed) => {
            let line = format!("installed {} ({} bytes)", installed.path.display(), installed.bytes);
            // The copy is in place: a stdout nobody reads changes nothing of that.
            if let Err(err) = writeln!(std::io::stdout(), "{line}") {
                log::warn!("{line}, but cannot say so on stdout: {err}");
            }
            0
        }
        Err(reason) => {
            log::error!("{reason}");
            termination::write(&options.termination_log, &reason);
            exit::PROA_FAILED
        }
    }
}

/// The in-cluster configuration and the API client built from it.
fn connect(options: &Options) -> Result<Source, String> {
    let mut cluster = cluster::discover(|var| std::env::var(var).ok(), cluster::hostname).map_err(|e| e.to_string())?;
    cluster.token.max_age = options.token_refresh;
    let api = api::Api::new(cluster, options.watch_timeout).map_err(|e| e.to_string())?;
    Ok(Source::Api(api))
}
