//! `--help` and `--version`: the help text, generated from the table of options (`options::table`) that the parser
//! (`options::cli`) reads too, so that they cannot disagree. Pure.

use crate::options::table::{Kind, OPTIONS};

/// What `--version` prints: `proa 0.3.0 (commit abc1234, x86_64-unknown-linux-musl, features: kill)`. build.rs
/// supplies the commit (`unknown` outside a git checkout), the target triple and the enabled features (`none`).
pub const VERSION: &str = concat!(
    "proa ",
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("PROA_GIT_COMMIT"),
    ", ",
    env!("PROA_TARGET"),
    ", features: ",
    env!("PROA_FEATURES"),
    ")"
);

/// Where `--help` puts the help lines, and how wide it writes.
const HELP_COLUMN: usize = 33;
const HELP_WIDTH: usize = 110;

/// The `--help` text, from the table.
pub fn help() -> String {
    let mut out = String::from(
        "proa: run a Kubernetes Job's program once its sidecars are ready, then stop the sidecars\n\n\
         Usage: proa [OPTIONS] -- PROGRAM [ARGS...]\n\
         \x20      proa --serve-quit HOST:PORT [--kill-signal SIG] [--kill-grace DURATION] -- SIDECAR [ARGS...]\n\
         \x20      proa --install DIR\n\n\
         Options (each also read from PROA_<NAME>, e.g. PROA_READY_TIMEOUT; a flag wins; not --check, --help,\n\
         --version, nor those marked no variable):\n",
    );
    for spec in OPTIONS.iter().filter(|spec| spec.flag) {
        let short = spec.short.map_or("    ".to_string(), |s| format!("-{s}, "));
        let value = match spec.kind {
            Kind::One(metavar) | Kind::Many(metavar) => format!(" {metavar}"),
            Kind::Switch | Kind::Mode(_) => String::new(),
        };
        let flags = format!("  {short}--{}{value}", spec.long);
        let mut text = spec.help.to_string();
        if matches!(spec.kind, Kind::Many(_)) {
            text.push_str(" (repeatable)");
        }
        if let Some(feature) = spec.feature {
            text.push_str(&format!(" (feature {feature})"));
        }
        if !spec.env && !matches!(spec.kind, Kind::Mode(_)) {
            text.push_str(" (no variable)");
        }
        if let Some(default) = spec.default {
            text.push_str(&format!(" (default {default})"));
        }
        out.push_str(&flags);
        let mut column = flags.len();
        if column >= HELP_COLUMN - 1 {
            out.push('\n');
            column = 0;
        }
        for (i, word) in text.split(' ').enumerate() {
            if i > 0 && column + 1 + word.len() > HELP_WIDTH {
                out.push('\n');
                column = 0;
            }
            let pad = if column < HELP_COLUMN { HELP_COLUMN - column } else { 1 };
            out.push_str(&" ".repeat(pad));
            out.push_str(word);
            column += pad + word.len();
        }
        out.push('\n');
    }
    out.push_str("\nDURATION: 90, 90s, 500ms, 5m, 1h\n");
    out.push_str("Exit: the program's code; 128+N for signal N; 124 sidecars not ready in time;\n");
    out.push_str("      125 proa failed before the program ran, or the program's status was lost;\n");
    out.push_str("      126 cannot be executed; 127 not found\n");
    for spec in OPTIONS.iter().filter(|spec| !spec.flag) {
        out.push_str(&format!("{}=true: {}.\n", spec.variable(), spec.help));
    }
    out
}
