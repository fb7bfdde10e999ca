//! Logging setup: env_logger on stderr, level from `RUST_LOG` (default info), as `proa: LEVEL message` or
//! one JSON object per line. stdout belongs to the program, so proa never writes logs there.
//! A bare level (`RUST_LOG=debug`) applies to proa only, so its debug log is not buried under the TLS library's;
//! a full filter (`RUST_LOG=ureq=debug,proa=trace`) is used as written.

use std::io::Write;

/// `--log-format`: how log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `proa: LEVEL message`
    Text,
    /// One JSON object per line: time, level, message.
    Json,
}

/// Installs the logger. Call once, before any thread starts.
pub fn init(format: LogFormat) {
    let mut builder = env_logger::Builder::new();
    builder.filter_level(log::LevelFilter::Warn).filter_module("proa", log::LevelFilter::Info);
    if let Ok(filter) = std::env::var("RUST_LOG") {
        match filter.trim().parse::<log::LevelFilter>() {
            Ok(level) => builder.filter_module("proa", level),
            Err(_) => builder.parse_filters(&filter),
        };
    }
    builder.target(env_logger::Target::Stderr);
    match format {
        LogFormat::Text => builder.format(|buf, record| writeln!(buf, "proa: {} {}", record.level(), record.args())),
        LogFormat::Json => builder.format(|buf, record| {
            let line = serde_json::json!({
                "time": buf.timestamp_millis().to_string(),
                "level": record.level().as_str(),
                "source": "proa",
                "message": record.args().to_string(),
            });
            writeln!(buf, "{line}")
        }),
    };
    builder.init();
}
