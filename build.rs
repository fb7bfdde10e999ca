//! Build facts for `proa --version`: the git commit, the target triple and the enabled features, passed to the crate
//! as `PROA_GIT_COMMIT`, `PROA_TARGET` and `PROA_FEATURES`. Runs on the build machine, never in a Pod.
//! A source tree without its own `.git` (a crates.io tarball, a vendored copy inside another repository) says
//! `unknown` rather than borrowing an enclosing repository's commit; `PROA_GIT_COMMIT` set at build time wins.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=PROA_GIT_COMMIT");
    let commit = std::env::var("PROA_GIT_COMMIT").ok().filter(|c| !c.is_empty()).or_else(git_commit);
    println!("cargo:rustc-env=PROA_GIT_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
    println!("cargo:rustc-env=PROA_TARGET={}", std::env::var("TARGET").unwrap_or_else(|_| "unknown".into()));
    println!("cargo:rustc-env=PROA_FEATURES={}", features());
}

/// `git rev-parse --short HEAD`, when this source tree is a git checkout of its own (`.git` is a directory, or a
/// file in a worktree) and git runs. Also asks cargo to build again when HEAD moves.
fn git_commit() -> Option<String> {
    if !Path::new(".git").exists() {
        return None;
    }
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).output().ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        out.status.success().then(|| text.trim().to_string())
    };
    // HEAD's reflog grows on every commit, checkout and reset; HEAD itself changes on checkout. --git-path finds
    // both in a worktree too. A missing file would make cargo rerun this script on every build, so only existing
    // ones are named.
    for path in ["HEAD", "logs/HEAD"] {
        if let Some(file) = git(&["rev-parse", "--git-path", path]).filter(|f| Path::new(f).exists()) {
            println!("cargo:rerun-if-changed={file}");
        }
    }
    git(&["rev-parse", "--short", "HEAD"]).filter(|c| !c.is_empty())
}

/// The enabled cargo features, comma-separated (`none` without any). Cargo sets `CARGO_FEATURE_<NAME>` for each.
fn features() -> String {
    let mut names: Vec<String> = std::env::vars()
        .filter_map(|(var, _)| var.strip_prefix("CARGO_FEATURE_").map(|n| n.to_lowercase().replace('_', "-")))
        .filter(|name| name != "default")
        .collect();
    names.sort();
    if names.is_empty() { "none".into() } else { names.join(",") }
}
