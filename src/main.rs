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
mod clock;
mod cluster;
mod crash;
mod direct;
mod exit;
mod http;
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
mod recognition;
mod shutdown;
mod signals;
mod termination;
mod tls;
mod url;
mod watch;

use std::io::Write;
use std::process::ExitCode;

use options::Options;
use options::cli::{self, Parsed};
use options::help;

/// As ripgrep's: the panic hook first, then `run` what the command line asks for, and exit with its code.
fn main() -> ExitCode {
    crash::install();
    let env = |var: &str| std::env::var(var).ok();
    ExitCode::from(run(cli::parse(std::env::args_os().skip(1), env), env))
}

/// Does what the command line asks for and returns the code proa exits with. Logging starts once, for every role
/// that has options; a command line proa cannot use is reported without it (its format is not known).
fn run(parsed: Result<Parsed, cli::UsageError>, env: impl Fn(&str) -> Option<String>) -> u8 {
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(err) => {
            logging::write_stderr(&format!("proa: ERROR {err}\n"));
            termination::write(&cli::termination_log_from_env(env), &err.to_string());
            return exit::code(exit::End::ProaFailed);
        }
    };
    if let Parsed::Run(options) | Parsed::Check(options) | Parsed::Install(options) = &parsed {
        logging::init(options.log_format);
    }
    match parsed {
        Parsed::Help => show(&help::help()),
        Parsed::Version => show(&format!("{}\n", help::VERSION)),
        Parsed::Check(options) => check::run(&options, env),
        Parsed::Install(options) => install(&options),
        Parsed::Run(options) if options.disabled => run_in_place(&options),
        Parsed::Run(options) => lifecycle::run(&options, env),
    }
}

/// `--help`, `--version`: the text on stdout, 0. `print!` panics when the stream is closed; what it writes is
/// never worth a panic.
fn show(text: &str) -> u8 {
    let _ = write!(std::io::stdout(), "{text}");
    0
}

/// `PROA_DISABLE=true`: the program replaces proa; only a failed exec returns, with the shell's code.
fn run_in_place(options: &Options) -> u8 {
    debug!("PROA_DISABLE=true: running {} in proa's place", options.program.to_string_lossy());
    let err = child::exec_program(&options.program, &options.args);
    log::error!("{err}");
    exit::code(err.end())
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
            exit::code(exit::End::ProaFailed)
        }
    }
}
