//! The modules' layers, top to bottom, and a test that no module imports from a layer above its own: the command
//! line at the top, configuration types and pure parsers at the bottom, so that arrows only point down. The files
//! inside `lifecycle/` keep the same rule among themselves (`LIFECYCLE`). Test-only.

/// Top to bottom; a module may import from its own layer and the ones below.
const LAYERS: [&[&str]; 8] = [
    &["main"],
    &["check", "lifecycle"],
    &["options"],
    &["recognition"],
    &["watch", "probe", "child", "shutdown", "kill", "signals", "termination", "logging", "preset", "install", "quit"],
    &["api", "readiness", "direct"],
    &["http"],
    &["cluster", "pod", "lines", "pidfd", "procs", "exit", "url", "crash", "clock", "tls", "layers"],
];

/// The files of `lifecycle/`, top to bottom: the owner loop and `step`, the real world, one file per phase, the
/// shared endings, then the types and pure decisions every phase uses. `simulation/` and `tests` are test-only.
const LIFECYCLE: [&[&str]; 11] = [
    &["mod", "simulation", "tests"],
    &["threads"],
    &["waiting", "running"],
    &["endings"],
    &["peers"],
    &["shutting_down"],
    &["world"],
    &["machine"],
    &["probing"],
    &["facts"],
    &["stop", "config"],
];

fn layer(module: &str) -> usize {
    LAYERS.iter().position(|layer| layer.contains(&module)).unwrap_or_else(|| panic!("module {module} has no layer"))
}

/// The top-level module a source file belongs to: `src/lifecycle/machine.rs` → `lifecycle`.
fn module_of(path: &std::path::Path, src: &std::path::Path) -> String {
    let relative = path.strip_prefix(src).expect("under src");
    let first = relative.components().next().expect("a file").as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

/// The top-level modules `text` names as `crate::name`, or in `use crate::{a, b::c}`.
fn imports(text: &str) -> Vec<String> {
    imports_under(text, "crate::")
}

/// The modules `text` names right after `prefix` (`crate::`, `super::`), alone or in a `{…}` group.
fn imports_under(text: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices(prefix) {
        let rest = &text[at + prefix.len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => group[..group.find('}').unwrap_or(group.len())].split(',').collect(),
            None => vec![rest],
        };
        for name in names {
            let name: String = name.trim().chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

fn sources(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("src is readable") {
        let path = entry.expect("a directory entry").path();
        match path.is_dir() {
            true => sources(&path, out),
            false if path.extension().is_some_and(|e| e == "rs") => out.push(path),
            false => {}
        }
    }
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut upward = Vec::new();
    // This file's own examples are not imports.
    for file in files.iter().filter(|f| !f.ends_with("layers.rs")) {
        let module = module_of(file, &src);
        let text = std::fs::read_to_string(file).expect("a source file");
        let known = imports(&text).into_iter().filter(|name| LAYERS.iter().any(|l| l.contains(&name.as_str())));
        for imported in known {
            if imported != module && layer(&imported) < layer(&module) {
                upward.push(format!("{} imports {imported}", file.display()));
            }
        }
    }
    assert!(upward.is_empty(), "arrows running back up:\n{}", upward.join("\n"));
}

#[test]
fn no_lifecycle_file_imports_from_a_file_above_its_own() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lifecycle");
    let position = |name: &str| LIFECYCLE.iter().position(|layer| layer.contains(&name));
    let mut upward = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("src/lifecycle is readable") {
        let path = entry.expect("a directory entry").path();
        let Some(name) = path.file_name().map(|n| n.to_string_lossy().trim_end_matches(".rs").to_string()) else {
            continue;
        };
        let own = position(&name).unwrap_or_else(|| panic!("lifecycle/{name} has no layer"));
        // `simulation/` is test-only, at the top: what it imports cannot point up.
        if path.is_dir() {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a source file");
        for imported in imports_under(&text, "super::") {
            // Any other name is an item of `mod.rs` (`step`, `drive`): the top.
            let theirs = position(&imported).unwrap_or(0);
            if theirs < own {
                upward.push(format!("lifecycle/{name} imports {imported}"));
            }
        }
    }
    assert!(upward.is_empty(), "arrows running back up inside lifecycle/:\n{}", upward.join("\n"));
}

#[test]
fn imports_are_found_in_both_forms() {
    let text = "use crate::pod::Pod;\nuse crate::{api, child::Exit};\nlet x = crate::readiness::is_gone;";
    assert_eq!(imports(text), ["pod", "api", "child", "readiness"]);
}
