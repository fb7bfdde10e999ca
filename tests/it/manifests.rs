//! The YAML users copy: every document under `deploy/` and `examples/` parses, every proa command line in them is
//! accepted by proa's own argument parser, each proa Pod has what proa needs (the Downward API's POD_NAME and
//! POD_NAMESPACE, the `proa` service account), and the RBAC grants exactly `get` and `watch` on `pods`.
//! A command line is checked by running the real binary with a KUBERNETES_SERVICE_HOST no request could use: a
//! usage error exits 125 with its own message, a parsed one then stops at that host. The binary is the default variant, so a
//! `--kill` in an example fails here until the examples are checked against the kill variant too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use yaml_rust2::{Yaml, YamlLoader};

use crate::support::proa::Proa;

const BOUND: Duration = Duration::from_secs(10);

/// One YAML document and the file it came from.
struct Document {
    file: PathBuf,
    yaml: Yaml,
}

/// A container that runs proa: its command line starts with an executable named `proa` (`/proa`,
/// `/proa-bin/proa`), or it gives no command and its image is proa's own (whose ENTRYPOINT is `/proa`).
struct ProaContainer<'a> {
    file: &'a Path,
    /// `file: container NAME`, for messages.
    place: String,
    /// The arguments after proa (`command` then `args`).
    args: Vec<String>,
    role: Role,
    container: &'a Yaml,
    pod_spec: &'a Yaml,
}

/// What a proa container does.
#[derive(Debug, PartialEq)]
enum Role {
    /// Wraps a main container's program, through the API.
    Main,
    /// `--install DIR`: copies proa into a volume (an init container).
    Install,
    /// `--serve-quit`: a sidecar's entrypoint; no API.
    ServeQuit,
}

/// Every `.yaml`/`.yml` file below `dir` (relative to the crate), sorted; at least one.
fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let files = crate::docs::files(dir, &["yaml", "yml"]);
    assert!(!files.is_empty(), "no YAML files under {dir}/");
    files
}

fn documents(dir: &str) -> Vec<Document> {
    let mut documents = Vec::new();
    for file in yaml_files(dir) {
        let text = std::fs::read_to_string(&file).unwrap();
        let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        documents.extend(docs.into_iter().map(|yaml| Document { file: file.clone(), yaml }));
    }
    documents
}

/// The Pod specs inside a document, wherever they sit (Pod, Job, CronJob, Deployment...): mappings with `containers`.
fn pod_specs<'a>(yaml: &'a Yaml, found: &mut Vec<&'a Yaml>) {
    match yaml {
        Yaml::Hash(_) if yaml["containers"].as_vec().is_some() => found.push(yaml),
        Yaml::Hash(hash) => hash.values().for_each(|value| pod_specs(value, found)),
        Yaml::Array(items) => items.iter().for_each(|item| pod_specs(item, found)),
        _ => {}
    }
}

/// A list of strings, as Kubernetes requires for `command` and `args` (an unquoted number is rejected there).
fn strings(yaml: &Yaml, what: &str) -> Vec<String> {
    match yaml {
        Yaml::BadValue => Vec::new(),
        Yaml::Array(items) => items
            .iter()
            .map(|item| item.as_str().unwrap_or_else(|| panic!("{what}: {item:?} is not a string")).to_string())
            .collect(),
        other => panic!("{what}: {other:?} is not a list"),
    }
}

fn proa_containers(documents: &[Document]) -> Vec<ProaContainer<'_>> {
    let mut found = Vec::new();
    for doc in documents {
        let mut specs = Vec::new();
        pod_specs(&doc.yaml, &mut specs);
        for spec in specs {
            let containers = spec["containers"].as_vec().into_iter().chain(spec["initContainers"].as_vec());
            for container in containers.flatten() {
                let place = format!("{}: container {}", doc.file.display(), container["name"].as_str().unwrap_or("?"));
                let command = strings(&container["command"], &place);
                let mut argv = command.clone();
                argv.extend(strings(&container["args"], &place));
                let proa_image = container["image"].as_str().is_some_and(|image| image.contains("/proa:"));
                let runs_proa = match command.first() {
                    Some(exe) => exe.rsplit('/').next() == Some("proa"),
                    None => proa_image,
                };
                if !runs_proa {
                    continue;
                }
                if !command.is_empty() {
                    argv.remove(0);
                }
                let role = match values(&argv, &["--install"]).is_empty() {
                    false => Role::Install,
                    true if !values(&argv, &["--serve-quit"]).is_empty() => Role::ServeQuit,
                    true => Role::Main,
                };
                found.push(ProaContainer { file: &doc.file, place, args: argv, role, container, pod_spec: spec });
            }
        }
    }
    found
}

/// The container's `env` entries with a literal `value`, as (name, value).
fn literal_env(container: &Yaml, place: &str) -> Vec<(String, String)> {
    let entries = container["env"].as_vec().map(Vec::as_slice).unwrap_or_default();
    entries
        .iter()
        .filter(|entry| !entry["value"].is_badvalue())
        .map(|entry| {
            let name = entry["name"].as_str().unwrap_or_else(|| panic!("{place}: env entry without a name"));
            let value = entry["value"].as_str().unwrap_or_else(|| panic!("{place}: env {name} is not a string"));
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// Whether a document holds a Pod (template) labelled for injection (deploy/inject/): proa is added at admission,
/// and tests/it/inject.rs checks what the real API server makes of it.
fn injected(doc: &Document) -> bool {
    fn labelled(yaml: &Yaml) -> bool {
        match yaml {
            Yaml::Hash(hash) => {
                yaml["metadata"]["labels"]["proa.dev/inject"].as_str() == Some("true") && !yaml["spec"].is_badvalue()
                    || hash.values().any(labelled)
            }
            _ => false,
        }
    }
    labelled(&doc.yaml)
}

#[test]
fn every_example_runs_proa() {
    let documents = documents("examples");
    let containers = proa_containers(&documents);
    for file in yaml_files("examples") {
        let labelled = documents.iter().any(|doc| doc.file == file && injected(doc));
        assert!(
            labelled || containers.iter().any(|c| c.file == file),
            "{} has no container whose command starts with /proa, and no Pod labelled proa.dev/inject: \"true\"",
            file.display()
        );
    }
}

#[test]
fn every_proa_command_line_is_accepted_by_proa() {
    let mut docs = documents("examples");
    docs.extend(documents("deploy"));
    let mut failures = Vec::new();
    for container in proa_containers(&docs) {
        let env = literal_env(container.container, &container.place);
        // A host no request could use: a command line proa accepts then stops at once, on the configuration.
        let mut proa = Proa::bare()
            .env("KUBERNETES_SERVICE_HOST", "not a host")
            .env("KUBERNETES_SERVICE_PORT", "443")
            .args(&container.args);
        for (name, value) in env.iter().filter(|(name, _)| name.starts_with("PROA_")) {
            proa = proa.env(name, value);
        }
        // `--install` tries the example's directory, which this machine lacks; `--serve-quit` runs `true` as its
        // sidecar, on the example's port.
        let (code, says) = match container.role {
            Role::Main => (125, "invalid KUBERNETES_SERVICE_HOST".to_string()),
            Role::Install => (125, format!("{}: no such directory", values(&container.args, &["--install"])[0])),
            Role::ServeQuit => (0, "program exited with code 0".to_string()),
        };
        if container.role == Role::ServeQuit {
            let options = container.args.iter().take_while(|arg| *arg != "--");
            proa = Proa::bare().args(options).args(["--", "true"]);
        }
        let done = proa.spawn().wait(BOUND);
        if done.code() != code || !done.stderr.contains(&says) {
            failures.push(format!(
                "{}: proa {:?} exited {}:\n{}",
                container.place,
                container.args,
                done.code(),
                done.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "command lines proa does not accept:\n{}", failures.join("\n"));
}

#[test]
fn every_proa_pod_names_itself_through_the_downward_api_and_runs_as_proa() {
    let documents = documents("examples");
    for container in proa_containers(&documents).iter().filter(|c| c.role == Role::Main) {
        let place = &container.place;
        assert_eq!(container.pod_spec["serviceAccountName"].as_str(), Some("proa"), "{place}: serviceAccountName");
        for (name, field) in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")] {
            let entries = container.container["env"].as_vec().map(Vec::as_slice).unwrap_or_default();
            let entry = entries.iter().find(|e| e["name"].as_str() == Some(name));
            let path = entry.map(|e| &e["valueFrom"]["fieldRef"]["fieldPath"]);
            assert_eq!(path.and_then(Yaml::as_str), Some(field), "{place}: {name} from the Downward API");
        }
    }
}

#[test]
fn deploy_grants_get_and_watch_on_pods_and_nothing_more() {
    let documents = documents("deploy");
    let kind =
        |kind: &str| -> Vec<&Document> { documents.iter().filter(|d| d.yaml["kind"].as_str() == Some(kind)).collect() };
    assert!(kind("ClusterRole").is_empty() && kind("ClusterRoleBinding").is_empty(), "proa's grant is namespaced");

    let [account] = kind("ServiceAccount")[..] else { panic!("one ServiceAccount") };
    assert_eq!(account.yaml["metadata"]["name"].as_str(), Some("proa"));

    // deploy/role.yaml, and deploy/inject/namespace/role.yaml for injected Pods: the same Role.
    let roles = kind("Role");
    assert_eq!(roles.len(), 2, "deploy/ and deploy/inject/namespace/ each have the Role");
    for role in roles {
        let (role, file) = (&role.yaml, role.file.display());
        assert_eq!(role["metadata"]["name"].as_str(), Some("proa"), "{file}");
        let rules = role["rules"].as_vec().expect("the Role has rules");
        let [rule] = &rules[..] else { panic!("{file}: one rule: {rules:?}") };
        assert_eq!(strings(&rule["apiGroups"], "apiGroups"), [""]);
        assert_eq!(strings(&rule["resources"], "resources"), ["pods"]);
        assert_eq!(strings(&rule["verbs"], "verbs"), ["get", "watch"]);
        assert!(rule["resourceNames"].is_badvalue() && rule["nonResourceURLs"].is_badvalue(), "{file}: {rule:?}");
    }

    // To the proa ServiceAccount; for injected Pods, to every service account of the namespace (its group, whose
    // name the kustomization fills in from its `namespace:`; tests/it/inject.rs asks the API server what it grants).
    let mut subjects = Vec::new();
    for binding in kind("RoleBinding") {
        let (yaml, file) = (&binding.yaml, binding.file.display());
        let role_ref = &yaml["roleRef"];
        assert_eq!((role_ref["kind"].as_str(), role_ref["name"].as_str()), (Some("Role"), Some("proa")), "{file}");
        let list = yaml["subjects"].as_vec().expect("the RoleBinding has subjects");
        let [subject] = &list[..] else { panic!("{file}: one subject: {list:?}") };
        subjects.push((subject["kind"].as_str().unwrap_or_default(), subject["name"].as_str().unwrap_or_default()));
    }
    subjects.sort();
    assert_eq!(subjects, [("Group", "system:serviceaccounts:NAMESPACE"), ("ServiceAccount", "proa")]);

    // Each kustomization.yaml lists every other file of its folder, and nothing that is missing.
    let kustomizations = kind("Kustomization");
    assert_eq!(kustomizations.len(), 3, "deploy/, deploy/inject/, deploy/inject/namespace/");
    for kustomization in kustomizations {
        let folder = kustomization.file.parent().unwrap();
        let mut listed = strings(&kustomization.yaml["resources"], "resources");
        listed.sort();
        let mut present: Vec<String> = yaml_files("deploy")
            .iter()
            .filter(|f| f.parent() == Some(folder))
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .filter(|name| name != "kustomization.yaml")
            .collect();
        present.sort();
        assert_eq!(listed, present, "{} resources", kustomization.file.display());
    }
}

#[test]
fn the_injection_never_refuses_a_pod_and_reads_the_documented_configmap() {
    let documents = documents("deploy/inject");
    let kind = |kind: &str| -> Vec<&Yaml> {
        documents.iter().map(|d| &d.yaml).filter(|y| y["kind"].as_str() == Some(kind)).collect()
    };
    let [policy] = kind("MutatingAdmissionPolicy")[..] else { panic!("one MutatingAdmissionPolicy") };
    assert_eq!(policy["apiVersion"].as_str(), Some("admissionregistration.k8s.io/v1"));
    assert_eq!(policy["spec"]["failurePolicy"].as_str(), Some("Ignore"), "a failure leaves the Pod as it was");
    assert_eq!(policy["spec"]["paramKind"]["kind"].as_str(), Some("ConfigMap"));
    let bindings = kind("MutatingAdmissionPolicyBinding");
    assert_eq!(bindings.len(), 2, "the label's binding and the namespaces' one");
    for binding in bindings {
        let spec = &binding["spec"];
        assert_eq!(spec["policyName"], policy["metadata"]["name"]);
        let param = &spec["paramRef"];
        assert_eq!((param["namespace"].as_str(), param["name"].as_str()), (Some("proa-system"), Some("proa-inject")));
    }
    let [namespace] = kind("Namespace")[..] else { panic!("one Namespace, for the ConfigMap") };
    assert_eq!(namespace["metadata"]["name"].as_str(), Some("proa-system"));
    // The README's command writes that ConfigMap (tests/it/inject.rs runs it).
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    assert!(readme.contains("kubectl -n proa-system create configmap proa-inject --from-literal image="));
}

/// The values proa's command line gives `flags` (`--flag value`, `--flag=value`, `-f value`).
fn values<'a>(args: &'a [String], flags: &[&str]) -> Vec<&'a str> {
    let mut found = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if arg == "--" {
            break;
        }
        for flag in flags {
            if arg == flag {
                found.extend(args.get(i + 1).map(String::as_str));
            } else if let Some(value) = arg.strip_prefix(&format!("{flag}=")) {
                found.push(value);
            }
        }
    }
    found
}

#[test]
fn every_container_a_command_line_names_is_in_its_pod() {
    // A mesh injects these at admission: they are not in the manifest.
    let injected = ["istio-proxy", "linkerd-proxy"];
    let documents = documents("examples");
    for container in proa_containers(&documents) {
        let place = &container.place;
        let spec = container.pod_spec;
        let all = spec["containers"].as_vec().into_iter().chain(spec["initContainers"].as_vec()).flatten();
        let names: Vec<&str> = all.filter_map(|c| c["name"].as_str()).collect();
        let actions = values(&container.args, &["-p", "-g", "--shutdown-http-post", "--shutdown-http-get"]);
        let named = actions.iter().filter(|a| !a.starts_with("http://")).filter_map(|a| a.split_once('=')).map(|n| n.0);
        for name in named.chain(values(&container.args, &["--peer", "--container", "--ignore"])) {
            assert!(names.contains(&name) || injected.contains(&name), "{place}: no container {name} in its Pod");
        }
    }
}

#[test]
fn a_pod_with_several_proa_containers_needs_no_peer_flag() {
    // Each finds the others by their command; the example says so, and gives none.
    let documents = documents("examples");
    let containers = proa_containers(&documents);
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/job-two-main-containers.yaml");
    let two: Vec<&ProaContainer> = containers.iter().filter(|c| c.file == file).collect();
    assert_eq!(two.len(), 2, "two main containers run proa");
    assert!(two.iter().all(|c| values(&c.args, &["--peer"]).is_empty()));
}

#[test]
fn an_image_without_proa_gets_it_from_an_init_container_that_shares_its_volume() {
    // Whoever runs proa from a path other than /proa must get it there: an --install into a volume it mounts.
    let documents = documents("examples");
    let containers = proa_containers(&documents);
    let mounts = |container: &Yaml| -> Vec<(String, String)> {
        let mounts = container["volumeMounts"].as_vec().map(Vec::as_slice).unwrap_or_default();
        let field = |m: &Yaml, key: &str| m[key].as_str().unwrap_or_default().to_string();
        mounts.iter().map(|m| (field(m, "name"), field(m, "mountPath"))).collect()
    };
    let mut installed = 0;
    for container in containers.iter().filter(|c| c.role != Role::Install) {
        let exe = container.container["command"][0].as_str().unwrap_or("/proa");
        let Some(dir) = exe.strip_suffix("/proa").filter(|dir| !dir.is_empty()) else { continue };
        let volume = mounts(container.container).into_iter().find(|(_, path)| path == dir);
        let Some((volume, _)) = volume else { panic!("{}: nothing mounted at {dir}", container.place) };
        let installer = containers.iter().find(|c| {
            c.role == Role::Install
                && std::ptr::eq(c.pod_spec, container.pod_spec)
                && mounts(c.container)
                    .iter()
                    .any(|(name, path)| *name == volume && values(&c.args, &["--install"]) == [path])
        });
        assert!(installer.is_some(), "{}: no init container installs proa into volume {volume}", container.place);
        installed += 1;
    }
    assert!(installed >= 3, "job-any-image.yaml and job-sidecar-without-endpoint.yaml run proa from /proa-bin");
}

/// The proa versions a text names: image tags (`proa:0.3.0`, `proa:0.3.0-kill`), release URLs
/// (`releases/download/v0.3.0`), git tags (`--tag v0.3.0`) and docs/install.md's "Sizes are for 0.3.0". Other
/// projects' versions (the original `proa 0.1.3`, images of sidecars) are not proa's release.
fn proa_versions(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for marker in ["/proa:", "releases/download/v", "--tag v", "Sizes are for "] {
        for (at, _) in text.match_indices(marker) {
            let rest = &text[at + marker.len()..];
            let version: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            found.push(version.trim_end_matches('.').to_string());
        }
    }
    found
}

/// The README and the pages under `docs/`.
fn markdown_files() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docs = std::fs::read_dir(root.join("docs")).unwrap().map(|entry| entry.unwrap().path());
    let mut files: Vec<PathBuf> = docs.filter(|path| path.extension().is_some_and(|ext| ext == "md")).collect();
    files.sort();
    files.insert(0, root.join("README.md"));
    files
}

#[test]
fn every_proa_version_mentioned_is_cargos() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = markdown_files();
    files.push(root.join("scratch.Dockerfile"));
    files.extend(yaml_files("examples"));
    files.extend(yaml_files("deploy"));
    let mut seen = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for version in proa_versions(&text) {
            assert_eq!(version, env!("CARGO_PKG_VERSION"), "{} names proa {version}", file.display());
            seen += 1;
        }
    }
    assert!(seen >= 8, "only {seen} mentions found: the patterns no longer match the texts");
}

/// The release workflow takes its notes from the CHANGELOG section of Cargo.toml's version: the newest released
/// section is this version, so that a tag of it publishes what it says.
#[test]
fn the_newest_changelog_section_is_cargos_version() {
    let changelog = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("CHANGELOG.md")).unwrap();
    let released = changelog.lines().find(|line| line.starts_with("## [") && !line.starts_with("## [Unreleased]"));
    let version = released.and_then(|line| line["## [".len()..].split(']').next());
    assert_eq!(version, Some(env!("CARGO_PKG_VERSION")), "CHANGELOG.md's newest section: {released:?}");
}

/// Every example and manifest is linked from the README, and every relative link in the README and `docs/` leads to
/// a file or folder that exists.
#[test]
fn every_example_and_manifest_is_linked_and_every_link_leads_somewhere() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for file in yaml_files("examples").into_iter().chain(yaml_files("deploy")) {
        let relative = file.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let folder = relative.split('/').next().unwrap();
        let linked =
            readme.contains(&format!("]({relative})")) || (folder == "deploy" && readme.contains("](deploy/)"));
        assert!(linked, "README.md links no {relative}");
    }
    for page in markdown_files() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (at, _) in text.match_indices("](") {
            let target: String = text[at + 2..].chars().take_while(|&c| c != ')').collect();
            let path = target.split('#').next().unwrap();
            if path.is_empty() || path.contains("://") {
                continue;
            }
            let resolved = page.parent().unwrap().join(path);
            assert!(resolved.exists(), "{} links {target}, which does not exist", page.display());
        }
    }
}
