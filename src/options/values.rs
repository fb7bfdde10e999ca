//! The value kinds options take, each a pure parser with the text that says what it expects: durations, http
//! URLs, addresses, signals, booleans. Shared by the flags and their `PROA_*` variables (`table.rs`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::logging::LogFormat;
pub use crate::shutdown::is_http_url;

pub const DURATION_EXPECTED: &str = "use 90, 90s, 500ms, 5m or 1h";
pub const URL_EXPECTED: &str =
    "use an http:// URL such as http://127.0.0.1:15020/quitquitquit, or CONTAINER=URL for the container it stops";
pub const BOOL_EXPECTED: &str = "use true or false";
pub const LOG_FORMAT_EXPECTED: &str = "use text or json";
pub const ON_READY_TIMEOUT_EXPECTED: &str = "use fail (exit 124) or run (run the program anyway)";
pub const READY_URL_EXPECTED: &str = "use an http:// URL such as http://127.0.0.1:15021/healthz/ready";
pub const ADDRESS_EXPECTED: &str = "use HOST:PORT such as 127.0.0.1:5432 or [::1]:5432";
pub const INTERVAL_EXPECTED: &str = "use a duration above zero such as 250ms or 1s";
pub const LOOPBACK_EXPECTED: &str = "use a loopback HOST:PORT such as 127.0.0.1:15000, [::1]:15000 or localhost:15000 (every container of the Pod reaches it; nothing outside the Pod can)";
pub const DIR_EXPECTED: &str = "use a directory such as /proa-bin (an emptyDir the main container mounts too)";
pub const WATCH_TIMEOUT_EXPECTED: &str = "use whole seconds, at least 1s, such as 60s or 5m";
pub const SIGNAL_EXPECTED: &str =
    "use TERM, QUIT, INT, HUP, USR1, USR2 or KILL (SIGTERM… also) or a number from 1 to 64 that ends a process";

/// Parses `90` (seconds), `90s`, `500ms`, `5m` or `1h`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return None;
    }
    let number: u64 = digits.parse().ok()?;
    let millis_per_unit = match unit {
        "" | "s" => 1_000,
        "ms" => 1,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(millis_per_unit).map(Duration::from_millis)
}

/// A watch's `timeoutSeconds`: whole seconds and at least one (zero would leave the stream no time at all).
pub fn parse_watch_timeout(text: &str) -> Option<Duration> {
    parse_duration(text).filter(|d| d.as_secs() >= 1 && d.subsec_nanos() == 0)
}

/// A duration above zero: a zero interval would probe in a busy loop.
pub fn parse_interval(text: &str) -> Option<Duration> {
    parse_duration(text).filter(|d| !d.is_zero())
}

/// Parses a signal that asks a process to stop: `TERM`, `SIGTERM`, `term`, … (and `KILL`), or any number from 1
/// to 64.
pub fn parse_signal(text: &str) -> Option<i32> {
    let upper = text.to_ascii_uppercase();
    let signal = match upper.strip_prefix("SIG").unwrap_or(&upper) {
        "TERM" => libc::SIGTERM,
        "QUIT" => libc::SIGQUIT,
        "INT" => libc::SIGINT,
        "HUP" => libc::SIGHUP,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "KILL" => libc::SIGKILL,
        number if number.bytes().all(|b| b.is_ascii_digit()) => number.parse().ok()?,
        _ => return None,
    };
    // A signal whose default action is to stop, continue or do nothing would only make proa wait the whole grace.
    let ends_a_process = !matches!(
        signal,
        libc::SIGCHLD
            | libc::SIGCONT
            | libc::SIGSTOP
            | libc::SIGTSTP
            | libc::SIGTTIN
            | libc::SIGTTOU
            | libc::SIGURG
            | libc::SIGWINCH
    );
    ((1..=64).contains(&signal) && ends_a_process).then_some(signal)
}

/// `true`/`1` or `false`/`0`: a switch's variable.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

pub fn parse_log_format(text: &str) -> Option<LogFormat> {
    match text {
        "text" => Some(LogFormat::Text),
        "json" => Some(LogFormat::Json),
        _ => None,
    }
}

/// `HOST:PORT` with a port above zero; an IPv6 host must be bracketed (`[::1]:5432`).
pub fn is_address(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else { return false };
    let bracketed = host.starts_with('[') && host.ends_with(']');
    let host_ok = !host.is_empty() && (bracketed || !host.contains(':'));
    host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// A loopback `HOST:PORT` to listen on (`--serve-quit`): HOST is a loopback address (`127.0.0.1`, `::1`, bracketed
/// or not) or `localhost` (as 127.0.0.1); PORT is not 0.
pub fn parse_loopback(text: &str) -> Option<SocketAddr> {
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse::<u16>().ok().filter(|port| *port > 0)?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let ip = match host.trim_end_matches('.') {
        name if name.eq_ignore_ascii_case("localhost") => IpAddr::V4(Ipv4Addr::LOCALHOST),
        other => other.parse::<IpAddr>().ok()?,
    };
    ip.is_loopback().then_some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        for bad in ["", "s", "5x", "-1", " 5", "1.5s", "99999999999999999999", "18446744073709551615h"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("TERM"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("SIGQUIT"), Some(libc::SIGQUIT));
        assert_eq!(parse_signal("int"), Some(libc::SIGINT));
        assert_eq!(parse_signal("HUP"), Some(libc::SIGHUP));
        assert_eq!(parse_signal("USR2"), Some(libc::SIGUSR2));
        assert_eq!(parse_signal("KILL"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("15"), Some(15));
        assert_eq!(parse_signal("64"), Some(64));
        for bad in ["", "0", "65", "-1", "SIG", "STOP", "TERM ", "99999999999", "17", "19", "28"] {
            assert_eq!(parse_signal(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn addresses() {
        for good in ["127.0.0.1:5432", "[::1]:5432", "db:5432"] {
            assert!(is_address(good), "{good:?}");
        }
        for bad in ["5432", ":5432", "db:", "db:0", "db:x", "::1:5432"] {
            assert!(!is_address(bad), "{bad:?}");
        }
    }

    #[test]
    fn loopback_addresses_only() {
        let at = |text: &str| parse_loopback(text).map(|a| a.to_string());
        assert_eq!(at("127.0.0.1:15000").as_deref(), Some("127.0.0.1:15000"));
        assert_eq!(at("localhost:15000").as_deref(), Some("127.0.0.1:15000"));
        assert_eq!(at("LocalHost.:15000").as_deref(), Some("127.0.0.1:15000"));
        assert_eq!(at("[::1]:15000").as_deref(), Some("[::1]:15000"));
        assert_eq!(at("::1:15000").as_deref(), Some("[::1]:15000"));
        assert_eq!(at("127.0.0.2:1").as_deref(), Some("127.0.0.2:1"));
        for bad in
            ["0.0.0.0:15000", "10.0.0.1:15000", "[::]:15000", "example.com:80", "127.0.0.1:0", "127.0.0.1", ":80"]
        {
            assert_eq!(at(bad), None, "{bad}");
        }
    }
}
