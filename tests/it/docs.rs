//! What a user reads stays readable: the README stays short enough to read through, and no page a user is sent to
//! (the README, `docs/`, the comments of `examples/` and `deploy/`) cites what a user cannot follow: the design
//! contract, which is not in the repository, or the project's issue numbers. History belongs in the CHANGELOG. The
//! examples show the one recommended way to stop a recognised sidecar.

use std::path::{Path, PathBuf};

/// The README's length limit, in lines: past it, the README is a manual, and the rest belongs under `docs/`.
const README_MAX_LINES: usize = 250;

/// Every file below `dir` (relative to the crate) whose name ends with one of `extensions`, sorted.
pub fn files(dir: &str, extensions: &[&str]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join(dir)];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| extensions.iter().any(|e| ext == *e)) {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// `issue 20`, `issues 20 and 21`, `Issue 14's`: a reference to the project's issue tracker, with what it says.
fn issue_references(line: &str) -> Vec<String> {
    let lower = line.to_ascii_lowercase();
    let mut found = Vec::new();
    for (at, _) in lower.match_indices("issue") {
        let rest = lower[at + "issue".len()..].trim_start_matches('s');
        let number = rest.strip_prefix(' ').unwrap_or_default();
        if number.starts_with(|c: char| c.is_ascii_digit()) {
            found.push(line[at..].chars().take(20).collect());
        }
    }
    found
}

#[test]
fn the_readme_is_under_its_length_limit() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines < README_MAX_LINES,
        "README.md has {lines} lines: keep it under {README_MAX_LINES}, move detail to docs/"
    );
}

#[test]
fn user_docs_cite_neither_the_design_contract_nor_issue_numbers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut pages = vec![root.join("README.md")];
    pages.extend(files("docs", &["md"]));
    pages.extend(files("examples", &["yaml", "yml"]));
    pages.extend(files("deploy", &["yaml", "yml"]));
    let mut citations = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).unwrap();
        for (number, line) in text.lines().enumerate() {
            let place = format!("{}:{}", page.strip_prefix(root).unwrap().display(), number + 1);
            if line.contains("DESIGN.md") {
                citations.push(format!("{place}: DESIGN.md"));
            }
            citations.extend(issue_references(line).into_iter().map(|cited| format!("{place}: {cited}")));
        }
    }
    assert!(pages.len() >= 10, "only {} pages found: the paths no longer match the repository", pages.len());
    assert!(citations.is_empty(), "references a user cannot follow:\n{}", citations.join("\n"));
}

#[test]
fn an_issue_reference_is_told_from_ordinary_words() {
    assert_eq!(issue_references("Until issue 20 it stopped"), ["issue 20 it stopped"]);
    assert_eq!(issue_references("with issues 20 and 21 in"), ["issues 20 and 21 in"]);
    assert!(issue_references("an issue with the proxy; issues of 2024").is_empty());
}

/// The README recommends one way to stop a mesh proxy or a Cloud SQL Auth Proxy: no flag, recognition. The examples
/// show that way only: no `--sidecar` preset and no shutdown URL on those sidecars' ports (Istio's status port 15020,
/// Linkerd's admin port 4191, the Cloud SQL Auth Proxy's admin port 9091) in any line but a comment.
#[test]
fn the_examples_stop_recognised_sidecars_by_recognition_alone() {
    let mut explicit = Vec::new();
    for file in files("examples", &["yaml", "yml"]) {
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split(" #").next().unwrap_or_default();
            if code.trim_start().starts_with('#') {
                continue;
            }
            let preset = code.contains("--sidecar") || code.contains("PROA_SIDECAR");
            let url = [":15020/", ":4191/", ":9091/"].iter().any(|port| code.contains(port));
            if preset || url {
                explicit.push(format!("{}:{}: {}", file.display(), number + 1, line.trim()));
            }
        }
    }
    assert!(explicit.is_empty(), "explicit actions for recognised sidecars:\n{}", explicit.join("\n"));
}
