//! The logger: one line per record on stderr, `proa: LEVEL message` or one JSON object, level from `RUST_LOG`
//! (default: info for proa, warn for its libraries). stdout belongs to the program, so proa never writes logs there.
//! A bare level (`RUST_LOG=debug`) applies to proa only, so its debug log is not buried under the TLS library's;
//! module directives (`RUST_LOG=ureq=debug,proa=trace`, a bare level among them for the rest) are used as written.
//! A few lines of its own rather than env_logger: the same behaviour in a fraction of the binary.

use std::io::Write;
use std::time::SystemTime;

use log::{LevelFilter, Log, Metadata, Record};

use crate::{clock, lines};

/// `--log-format`: how log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `proa: LEVEL message`
    Text,
    /// One JSON object per line: time, level, source, message.
    Json,
}

/// The levels by module: the longest matching module wins, else `default`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Filter {
    default: LevelFilter,
    modules: Vec<(String, LevelFilter)>,
}

impl Filter {
    /// From `RUST_LOG`, over the defaults.
    fn parse(rust_log: Option<&str>) -> Filter {
        let mut filter = Filter { default: LevelFilter::Warn, modules: vec![("proa".into(), LevelFilter::Info)] };
        let Some(text) = rust_log.map(str::trim).filter(|t| !t.is_empty()) else { return filter };
        if let Ok(level) = text.parse::<LevelFilter>() {
            filter.set("proa", level);
            return filter;
        }
        for directive in text.split(',').map(str::trim) {
            match directive.split_once('=') {
                Some((module, level)) => match level.trim().parse() {
                    Ok(level) => filter.set(module.trim(), level),
                    Err(_) => write_stderr(&format!("proa: WARN RUST_LOG: ignoring {directive:?}: not a level\n")),
                },
                None => match directive.parse() {
                    Ok(level) => filter.default = level,
                    Err(_) => filter.set(directive, LevelFilter::Trace),
                },
            }
        }
        filter
    }

    fn set(&mut self, module: &str, level: LevelFilter) {
        self.modules.retain(|(m, _)| m != module);
        self.modules.push((module.to_string(), level));
    }

    /// The level for a record's target (`proa::watch`, `rustls::client`).
    fn level(&self, target: &str) -> LevelFilter {
        let matches =
            |module: &str| target == module || target.strip_prefix(module).is_some_and(|r| r.starts_with("::"));
        let found = self.modules.iter().filter(|(m, _)| matches(m)).max_by_key(|(m, _)| m.len());
        found.map_or(self.default, |(_, level)| *level)
    }

    fn most_verbose(&self) -> LevelFilter {
        self.modules.iter().map(|(_, level)| *level).chain([self.default]).max().unwrap_or(LevelFilter::Off)
    }
}

struct Logger {
    format: LogFormat,
    filter: Filter,
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.filter.level(metadata.target())
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = match self.format {
            LogFormat::Text => format!("proa: {} {}\n", record.level(), record.args()),
            LogFormat::Json => format!(
                "{{\"time\":\"{}\",\"level\":\"{}\",\"source\":\"proa\",\"message\":{}}}\n",
                clock::rfc3339_millis(SystemTime::now()),
                record.level(),
                lines::quote(&record.args().to_string())
            ),
        };
        write_stderr(&line);
    }

    fn flush(&self) {}
}

/// Writes `text` to stderr in one write, so that lines of different threads never interleave. A failed write (a
/// closed pipe, a full disk) is ignored: a log line is never worth proa's life, and `eprintln!` would panic.
pub fn write_stderr(text: &str) {
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// A debug line from `target` (a module path), for the `debug!` macro: past `log`'s compiled-in level.
pub fn debug_line(target: &'static str, args: std::fmt::Arguments<'_>) {
    let metadata = log::Metadata::builder().level(log::Level::Debug).target(target).build();
    let logger = log::logger();
    if logger.enabled(&metadata) {
        logger.log(&log::Record::builder().metadata(metadata).module_path_static(Some(target)).args(args).build());
    }
}

/// Installs the logger. Call once, before any thread starts.
pub fn init(format: LogFormat) {
    let filter = Filter::parse(std::env::var("RUST_LOG").ok().as_deref());
    log::set_max_level(filter.most_verbose());
    // Leaked once: the logger lives as long as the process.
    let _ = log::set_logger(Box::leak(Box::new(Logger { format, filter })));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_info_for_proa_and_warn_for_the_rest() {
        let filter = Filter::parse(None);
        assert_eq!(filter.level("proa::watch"), LevelFilter::Info);
        assert_eq!(filter.level("rustls::client"), LevelFilter::Warn);
        assert_eq!(filter.level("proactive"), LevelFilter::Warn, "a module name, not a prefix of one");
    }

    #[test]
    fn a_bare_level_is_proas_own() {
        let filter = Filter::parse(Some("debug"));
        assert_eq!((filter.level("proa"), filter.level("ureq")), (LevelFilter::Debug, LevelFilter::Warn));
    }

    #[test]
    fn directives_by_module_with_a_default() {
        let filter = Filter::parse(Some("ureq=debug, proa::watch=trace,error"));
        assert_eq!(filter.level("ureq::unversioned"), LevelFilter::Debug);
        assert_eq!(filter.level("proa::watch"), LevelFilter::Trace);
        assert_eq!(filter.level("proa::api"), LevelFilter::Info);
        assert_eq!(filter.level("rustls"), LevelFilter::Error);
        assert_eq!(filter.most_verbose(), LevelFilter::Trace);
    }
}
