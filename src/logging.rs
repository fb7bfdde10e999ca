//! The logger: env_logger with a format of proa's own, one line per record on stderr, `proa: LEVEL message` or one
//! JSON object. stdout belongs to the program, so proa never writes logs there. Levels come from `RUST_LOG` in
//! env_logger's syntax (default: info for proa, warn for its libraries); a bare level (`RUST_LOG=debug`) applies to
//! proa only, so its debug log is not buried under the TLS library's. Nothing here may panic: a failed write to stderr
//! is dropped (env_logger ignores it too), and an invalid `RUST_LOG` is ignored with a warning, never printed by
//! env_filter's own `eprintln!`.

use std::io::Write;
use std::time::SystemTime;

use log::{LevelFilter, Record};

use crate::{clock, lines};

/// `--log-format`: how log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `proa: LEVEL message`
    Text,
    /// One JSON object per line: time, level, source, message.
    Json,
}

/// Writes `record` as one line in `format`, stamped `time` (JSON only).
fn write_line(out: &mut impl Write, format: LogFormat, time: SystemTime, record: &Record) -> std::io::Result<()> {
    match format {
        LogFormat::Text => writeln!(out, "proa: {} {}", record.level(), record.args()),
        LogFormat::Json => writeln!(
            out,
            "{{\"time\":\"{}\",\"level\":\"{}\",\"source\":\"proa\",\"message\":{}}}",
            clock::rfc3339_millis(time),
            record.level(),
            lines::quote(&record.args().to_string())
        ),
    }
}

/// Writes `text` to stderr in one write, so that lines of different threads never interleave. A failed write (a
/// closed pipe, a full disk) is ignored: a log line is never worth proa's life, and `eprintln!` would panic.
pub fn write_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A debug line from `target` (a module path), for the `debug!` macro in `main.rs`: proa's own debug lines pass
/// through `log`'s compiled-in level (`release_max_level_info`), which drops the libraries' in release builds.
pub fn debug_line(target: &'static str, args: std::fmt::Arguments<'_>) {
    let metadata = log::Metadata::builder().level(log::Level::Debug).target(target).build();
    let logger = log::logger();
    if logger.enabled(&metadata) {
        logger.log(&Record::builder().metadata(metadata).module_path_static(Some(target)).args(args).build());
    }
}

/// What `RUST_LOG` asks for, over the defaults.
#[derive(Debug, PartialEq, Eq)]
enum Levels<'a> {
    /// Unset or blank: info for proa, warn for the rest.
    Default,
    /// A bare level: proa's own.
    Proa(LevelFilter),
    /// Directives in env_logger's syntax, used as written over the defaults.
    Directives(&'a str),
    /// Not env_logger's syntax: the defaults, and a warning that says why.
    Invalid(&'a str, String),
}

impl<'a> Levels<'a> {
    fn parse(rust_log: Option<&'a str>) -> Levels<'a> {
        let Some(text) = rust_log.map(str::trim).filter(|t| !t.is_empty()) else { return Levels::Default };
        if let Ok(level) = text.parse() {
            return Levels::Proa(level);
        }
        match env_filter::Builder::new().try_parse(text) {
            Ok(_) => Levels::Directives(text),
            Err(err) => Levels::Invalid(text, err.to_string()),
        }
    }
}

/// Installs the logger, levels from `RUST_LOG`. Call once, before any thread starts.
pub fn init(format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let levels = Levels::parse(rust_log.as_deref());
    let mut builder = env_logger::Builder::new();
    builder.filter_level(LevelFilter::Warn).filter_module("proa", LevelFilter::Info);
    match &levels {
        Levels::Default | Levels::Invalid(..) => {}
        Levels::Proa(level) => {
            builder.filter_module("proa", *level);
        }
        // Checked by `try_parse` above, so env_filter has nothing to print.
        Levels::Directives(text) => {
            builder.parse_filters(text);
        }
    }
    builder
        .target(env_logger::Target::Stderr)
        .format(move |out, record| write_line(out, format, SystemTime::now(), record));
    // Only fails when a logger is already installed, which `main` never does twice.
    let _ = builder.try_init();
    if let Levels::Invalid(text, err) = levels {
        log::warn!("ignoring RUST_LOG {text:?} ({err}): info for proa, warn for its libraries");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn line(format: LogFormat, level: log::Level, message: &str) -> String {
        let time = UNIX_EPOCH + Duration::from_millis(1_796_023_097_709);
        let mut out = Vec::new();
        let record = |args| Record::builder().level(level).target("proa::watch").args(args).build();
        write_line(&mut out, format, time, &record(format_args!("{message}"))).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_lines_are_proa_level_message() {
        let text = line(LogFormat::Text, log::Level::Warn, "container envoy waiting: ImagePullBackOff");
        assert_eq!(text, "proa: WARN container envoy waiting: ImagePullBackOff\n");
    }

    #[test]
    fn json_lines_are_one_object_with_time_level_source_message() {
        let json = line(LogFormat::Json, log::Level::Info, "started \"/app/job\" (pid 7)\tnow");
        assert_eq!(
            json,
            "{\"time\":\"2026-11-30T07:18:17.709Z\",\"level\":\"INFO\",\"source\":\"proa\",\
             \"message\":\"started \\\"/app/job\\\" (pid 7)\\tnow\"}\n"
        );
    }

    #[test]
    fn rust_log_a_bare_level_is_proas_own() {
        assert_eq!(Levels::parse(Some(" debug ")), Levels::Proa(LevelFilter::Debug));
        assert_eq!(Levels::parse(Some("")), Levels::Default);
        assert_eq!(Levels::parse(None), Levels::Default);
    }

    #[test]
    fn rust_log_directives_are_env_loggers() {
        assert_eq!(
            Levels::parse(Some("ureq=debug,proa::watch=trace")),
            Levels::Directives("ureq=debug,proa::watch=trace")
        );
    }

    #[test]
    fn rust_log_not_in_env_loggers_syntax_is_invalid() {
        let Levels::Invalid(text, err) = Levels::parse(Some("proa=chatty")) else { panic!("not invalid") };
        assert_eq!((text, err.as_str()), ("proa=chatty", "error parsing logger filter: invalid logging spec 'chatty'"));
    }
}
