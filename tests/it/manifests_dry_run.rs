//! The manifests users apply are ones a real kube-apiserver accepts: every document of `examples/*.yaml` and
//! `deploy/*.yaml` (the top level of each) is created with a server-side dry run (`dryRun=All`, as
//! `kubectl apply --dry-run=server` sends it) and strict field validation, so that an unknown or misspelt field, a
//! wrong type or a missing required field fails here, not in a user's cluster. Nothing is stored.
//! `deploy/` goes into a fresh namespace (its ServiceAccount, Role and RoleBinding are named `proa`, like the ones
//! the harness creates); the examples go into a harness namespace, which has the `proa` ServiceAccount that they run
//! as (the ServiceAccount admission plugin rejects a Pod whose account does not exist).
//! Only in the default build, like `envtest.rs`: one cluster per test binary.

use std::path::{Path, PathBuf};

use serde_json::{Map, Number, Value, json};
use yaml_rust2::{Yaml, YamlLoader};

use crate::support::envtest::{self, Cluster};

/// The `.yaml` files directly in `dir` (relative to the crate), sorted.
fn top_level_yaml(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "yaml" || ext == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML files in {}", dir.display());
    files
}

/// A YAML value as the JSON the API server reads (what kubectl sends for it).
fn json_of(yaml: &Yaml) -> Value {
    match yaml {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::Real(text) => {
            let real: f64 = text.parse().unwrap_or_else(|e| panic!("the YAML real {text}: {e}"));
            Value::Number(Number::from_f64(real).unwrap_or_else(|| panic!("the YAML real {text} is not finite")))
        }
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(json_of).collect()),
        Yaml::Hash(hash) => {
            let mut map = Map::new();
            for (key, value) in hash {
                let key = match key {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => panic!("a mapping key JSON cannot hold: {other:?}"),
                };
                map.insert(key, json_of(value));
            }
            Value::Object(map)
        }
        other => panic!("a YAML value JSON cannot hold: {other:?}"),
    }
}

/// The API objects of a file, as JSON: every document but kustomize's own configuration.
fn objects(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap();
    let documents = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let objects = documents.iter().filter(|doc| !doc.is_null()).map(json_of);
    objects.filter(|object| !object["apiVersion"].as_str().unwrap_or_default().starts_with("kustomize.")).collect()
}

/// The collection a namespaced object of this apiVersion and kind is created in (`/apis/batch/v1/namespaces/NS/jobs`).
/// Every kind in these manifests is pluralised with an `s`; an unknown kind gets a 404, which fails the test.
fn collection(object: &Value, namespace: &str) -> String {
    let version = object["apiVersion"].as_str().expect("every object has an apiVersion");
    let kind = object["kind"].as_str().expect("every object has a kind");
    let group = match version {
        "v1" => "/api/v1".to_string(),
        grouped => format!("/apis/{grouped}"),
    };
    format!("{group}/namespaces/{namespace}/{}s", kind.to_ascii_lowercase())
}

/// Creates each object of `files` in `namespace` with a server-side dry run; returns how many were accepted. A
/// rejection panics (the harness's `request`) with the server's answer; the line before it names the file.
fn dry_run(cluster: &Cluster, namespace: &str, files: &[PathBuf]) -> usize {
    let mut accepted = 0;
    for file in files {
        for object in objects(file) {
            let name = object["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let kind = object["kind"].as_str().unwrap_or_default().to_string();
            eprintln!("dry run: {} {kind} {name}", file.display());
            let path = format!("{}?dryRun=All&fieldValidation=Strict", collection(&object, namespace));
            let answer = cluster.request("POST", &path, Some(&object));
            // What a dry run answers: the object as it would have been stored, under the same kind and name.
            let answered = (answer["kind"].as_str(), answer["metadata"]["name"].as_str());
            assert_eq!(answered, (Some(kind.as_str()), Some(name.as_str())), "{}: {answer}", file.display());
            accepted += 1;
        }
    }
    accepted
}

#[test]
fn every_manifest_of_deploy_is_accepted_by_the_api_server() {
    let test = "every_manifest_of_deploy_is_accepted_by_the_api_server";
    let Some(cluster) = envtest::cluster(test) else { return };
    let namespace = "deploy-dry-run";
    cluster.request(
        "POST",
        "/api/v1/namespaces",
        Some(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})),
    );
    let accepted = dry_run(cluster, namespace, &top_level_yaml("deploy"));
    assert!(accepted >= 3, "deploy/ holds a ServiceAccount, a Role and a RoleBinding; {accepted} objects were sent");
}

#[test]
fn every_example_is_accepted_by_the_api_server() {
    let test = "every_example_is_accepted_by_the_api_server";
    let Some(cluster) = envtest::cluster(test) else { return };
    let namespace = cluster.namespace(test, &["get", "watch"]);
    let files = top_level_yaml("examples");
    let accepted = dry_run(cluster, &namespace.name, &files);
    assert!(accepted >= files.len(), "{} files, only {accepted} objects sent", files.len());
}
