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
    ExitCode::from(lifecycle::run(&options, env))
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
