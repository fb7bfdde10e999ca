//! Recognised sidecars (DESIGN.md step 4, `--auto-shutdown`): from the Pod spec, which waited regular sidecars proa
//! knows how to stop without a flag (Istio's `istio-proxy`, Linkerd's `linkerd-proxy` with its shutdown endpoint
//! enabled, the Cloud SQL Auth Proxy v2 with `--quitquitquit`), on which port, and which sidecars nothing will stop.
//! Pure: decisions over the parsed Pod, no I/O; the lifecycle logs and sends what this decides.

use crate::pod::{Container, Pod};
use crate::preset::Preset;
use crate::readiness::{Kind, Waited};
use crate::shutdown::Target;

/// Istio's injector sets the status port, where pilot-agent serves `/quitquitquit`, from this Pod annotation.
pub const ISTIO_STATUS_PORT: &str = "status.sidecar.istio.io/port";
/// Linkerd's proxy serves `/shutdown` only when this Pod annotation is `enabled` (or the Helm value
/// `proxy.enableShutdownEndpoint`, which the injector writes to the proxy's environment).
pub const LINKERD_SHUTDOWN: &str = "config.linkerd.io/proxy-admin-shutdown";
/// Linkerd's admin port (default 4191).
pub const LINKERD_ADMIN_PORT: &str = "config.linkerd.io/admin-port";
/// What Linkerd's injector writes to the proxy's environment: the shutdown endpoint's switch and the admin address.
const LINKERD_SHUTDOWN_ENV: &str = "LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED";
const LINKERD_ADMIN_ENV: &str = "LINKERD2_PROXY_ADMIN_LISTEN_ADDR";
/// The Cloud SQL Auth Proxy's flags (and the variables its operator sets instead).
const CLOUDSQL_QUIT_FLAG: &str = "--quitquitquit";
const CLOUDSQL_PORT_FLAG: &str = "--admin-port";
const CLOUDSQL_QUIT_ENV: &str = "CSQL_PROXY_QUITQUITQUIT";
const CLOUDSQL_PORT_ENV: &str = "CSQL_PROXY_ADMIN_PORT";

/// A waited regular sidecar proa recognised from the Pod spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recognised {
    pub container: String,
    /// What it is and where its port came from: `Istio's proxy (status port 15020, the default)`.
    pub what: String,
    /// The POST that stops it, or what to add so that it has one.
    pub action: Result<Target, String>,
}

impl Recognised {
    /// One line for the log and `--check`: the container, what it is, what proa will send or why nothing.
    pub fn describe(&self) -> String {
        match &self.action {
            Ok(target) => format!(
                "container {} is {}: proa will POST {} at shutdown (--auto-shutdown)",
                self.container, self.what, target.url
            ),
            Err(why) => format!("container {} is {}, but {why}", self.container, self.what),
        }
    }
}

/// What proa will do about each waited regular sidecar that no action names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The recognised ones, with or without an action.
    pub recognised: Vec<Recognised>,
    /// The ones nothing will stop (the recognised ones without an action among them): the Pod will not complete.
    pub unstopped: Vec<String>,
}

impl Plan {
    /// The recognised sidecars' actions.
    pub fn targets(&self) -> Vec<Target> {
        self.recognised.iter().filter_map(|r| r.action.clone().ok()).collect()
    }

    /// One line per recognised sidecar that gets an action: what proa recognised and what it will send.
    pub fn notes(&self) -> Vec<String> {
        self.recognised.iter().filter(|r| r.action.is_ok()).map(Recognised::describe).collect()
    }

    /// One line per sidecar nothing will stop: what proa recognised of it, if anything, and the ways out.
    pub fn warnings(&self) -> Vec<String> {
        let recognised = |name: &String| self.recognised.iter().find(|r| &r.container == name);
        let line = |name: &String| match recognised(name) {
            Some(r) => format!("{}; {}", r.describe(), unstopped_warning(name)),
            None => unstopped_warning(name),
        };
        self.unstopped.iter().map(line).collect()
    }
}

/// The shutdown requests of every sidecar proa recognises, on their default loopback ports: what proa sends as a
/// guess when it could not read its Pod (see `lifecycle::shutting_down`).
pub fn guesses() -> Vec<Target> {
    [Preset::Istio, Preset::Linkerd, Preset::CloudSql].iter().map(|p| p.quit_on(p.quit_port())).collect()
}

/// The warning for a sidecar nothing will stop: what it costs and the ways out.
pub fn unstopped_warning(name: &str) -> String {
    format!(
        "no shutdown action stops container {name}: the Pod will not complete after the program exits; give it one (-p {name}=URL, or --kill NAME with the kill feature), run it under proa --serve-quit, or make it a native sidecar"
    )
}

/// Decides, for the waited regular sidecars, which get a recognised action and which nothing stops.
/// `named`: the containers the actions given name; `blanket`: an unnamed action or a kill was given (it may stop
/// any container, so nothing is recognised or warned about); `recognise`: `--auto-shutdown` is on and no
/// `--sidecar` was given. An action that names a container always wins over recognition; native sidecars are
/// stopped by the kubelet and never appear here.
pub fn plan(pod: &Pod, waited: &[Waited], named: &[&str], blanket: bool, recognise: bool) -> Plan {
    let mut plan = Plan::default();
    if blanket {
        return plan;
    }
    let regular = waited.iter().filter(|w| w.kind == Kind::Regular && !named.contains(&w.name.as_str()));
    for w in regular {
        let found = pod.spec.containers.iter().find(|c| c.name == w.name).filter(|_| recognise);
        match found.and_then(|c| recognised(pod, c)) {
            Some(r) => {
                if r.action.is_err() {
                    plan.unstopped.push(r.container.clone());
                }
                plan.recognised.push(r);
            }
            None => plan.unstopped.push(w.name.clone()),
        }
    }
    plan
}

/// What `container` is, if proa knows it: by name (`istio-proxy`, `linkerd-proxy`, as their injectors name them),
/// or by image (`cloud-sql-proxy`, whatever the container's name).
pub fn recognised(pod: &Pod, container: &Container) -> Option<Recognised> {
    let (what, action) = match container.name.as_str() {
        "istio-proxy" => istio(pod),
        "linkerd-proxy" => linkerd(pod, container),
        _ if container.image.as_deref().is_some_and(is_cloud_sql_proxy) => cloud_sql(container),
        _ => return None,
    };
    let action = action.map(|target| Target { container: Some(container.name.clone()), ..target });
    Some(Recognised { container: container.name.clone(), what, action })
}

type Found = (String, Result<Target, String>);

/// pilot-agent serves `POST /quitquitquit` on its status port (15020, or the annotation's; 0 turns it off).
fn istio(pod: &Pod) -> Found {
    let preset = Preset::Istio;
    let (port, from) = match pod.metadata.annotations.get(ISTIO_STATUS_PORT).map(|v| v.trim().parse::<u16>()) {
        Some(Ok(port)) => (port, format!("from {ISTIO_STATUS_PORT}")),
        _ => (preset.quit_port(), "the default".to_string()),
    };
    let what = format!("Istio's proxy (status port {port}, {from})");
    match port {
        0 => (what, Err(format!("{ISTIO_STATUS_PORT} is 0, so pilot-agent serves no /quitquitquit"))),
        port => (what, Ok(preset.quit_on(port))),
    }
}

/// The proxy serves `POST /shutdown` on its admin port only when enabled: its injected environment says so, else
/// the Pod's annotation.
fn linkerd(pod: &Pod, container: &Container) -> Found {
    let preset = Preset::Linkerd;
    let annotations = &pod.metadata.annotations;
    let env_port = env(container, LINKERD_ADMIN_ENV).and_then(|addr| addr.rsplit(':').next()?.parse::<u16>().ok());
    let (port, from) = match (env_port, annotations.get(LINKERD_ADMIN_PORT).and_then(|v| v.trim().parse().ok())) {
        (Some(port), _) => (port, format!("from {LINKERD_ADMIN_ENV}")),
        (None, Some(port)) => (port, format!("from {LINKERD_ADMIN_PORT}")),
        (None, None) => (preset.quit_port(), "the default".to_string()),
    };
    let enabled = match env(container, LINKERD_SHUTDOWN_ENV) {
        Some(value) => value.trim() == "true",
        None => annotations.get(LINKERD_SHUTDOWN).is_some_and(|v| v.trim() == "enabled"),
    };
    let what = format!("Linkerd's proxy (admin port {port}, {from})");
    match enabled {
        true => (what, Ok(preset.quit_on(port))),
        false => (
            what,
            Err(format!(
                "its /shutdown endpoint is off: add the Pod annotation {LINKERD_SHUTDOWN}: enabled (a new Pod is needed)"
            )),
        ),
    }
}

/// Cloud SQL Auth Proxy v2 serves `POST /quitquitquit` on its localhost admin port (9091, or `--admin-port`) when
/// started with `--quitquitquit` (or the variables its operator sets: a flag wins over its variable).
fn cloud_sql(container: &Container) -> Found {
    let preset = Preset::CloudSql;
    let words: Vec<&str> = container.command.iter().chain(&container.args).map(String::as_str).collect();
    let quit = flag_value(&words, CLOUDSQL_QUIT_FLAG, true)
        .map(|v| go_true(&v))
        .or_else(|| env(container, CLOUDSQL_QUIT_ENV).map(|v| go_true(v.trim())))
        .unwrap_or(false);
    let port_flag = flag_value(&words, CLOUDSQL_PORT_FLAG, false).and_then(|v| v.parse::<u16>().ok());
    let (port, from) = match (port_flag, env(container, CLOUDSQL_PORT_ENV).and_then(|v| v.trim().parse().ok())) {
        (Some(port), _) => (port, format!("from {CLOUDSQL_PORT_FLAG}")),
        (None, Some(port)) => (port, format!("from {CLOUDSQL_PORT_ENV}")),
        (None, None) => (preset.quit_port(), "the default".to_string()),
    };
    let what = format!("the Cloud SQL Auth Proxy (admin port {port}, {from})");
    match quit {
        true => (what, Ok(preset.quit_on(port))),
        false => (what, Err(format!("its /quitquitquit endpoint is off: add {CLOUDSQL_QUIT_FLAG} to its args"))),
    }
}

/// Whether an image reference names `cloud-sql-proxy`, from any registry, with any tag or digest.
fn is_cloud_sql_proxy(image: &str) -> bool {
    let without_digest = image.split('@').next().unwrap_or(image);
    let name = without_digest.rsplit('/').next().unwrap_or(without_digest);
    name.split(':').next() == Some("cloud-sql-proxy")
}

/// The last value of a long flag among `words`: `--flag=value` or `--flag value`; a bare `--flag` is `"true"` where
/// it is a switch.
fn flag_value(words: &[&str], flag: &str, switch: bool) -> Option<String> {
    let mut found = None;
    for (i, word) in words.iter().enumerate() {
        if let Some(value) = word.strip_prefix(flag).and_then(|rest| rest.strip_prefix('=')) {
            found = Some(value.to_string());
        } else if *word == flag {
            found = match switch {
                true => Some("true".to_string()),
                false => words.get(i + 1).map(|v| v.to_string()),
            };
        }
    }
    found
}

/// What Go's `strconv.ParseBool`, which the Cloud SQL Auth Proxy reads its flags and variables with, takes as true.
fn go_true(value: &str) -> bool {
    matches!(value, "1" | "t" | "T" | "true" | "TRUE" | "True")
}

/// A literal environment value of the container (`valueFrom` is not resolved).
fn env<'a>(container: &'a Container, name: &str) -> Option<&'a str> {
    container.env.iter().rev().find(|e| e.name == name).and_then(|e| e.value.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readiness;

    fn pod(text: &str) -> Pod {
        serde_json::from_str(text).unwrap()
    }

    fn fixture(name: &str) -> Pod {
        pod(match name {
            "istio" => include_str!("../tests/fixtures/pods/istio-regular.json"),
            "istio-native" => include_str!("../tests/fixtures/pods/istio-native.json"),
            "linkerd" => include_str!("../tests/fixtures/pods/linkerd-regular.json"),
            "cloudsql" => include_str!("../tests/fixtures/pods/cloud-sql-proxy.json"),
            other => panic!("no fixture {other}"),
        })
    }

    /// The plan for the fixture as the container `job`'s proa sees it, with no action given.
    fn plan_of(pod: &Pod) -> Plan {
        let proa = |c: &&Container| c.command.first().is_some_and(|word| word == "/proa");
        let own = &pod.spec.containers.iter().find(proa).expect("a container runs proa").name;
        let waited = readiness::waited_containers(pod, own, &[]);
        plan(pod, &waited, &[], false, true)
    }

    fn container<'a>(pod: &'a mut Pod, name: &str) -> &'a mut Container {
        pod.spec.containers.iter_mut().find(|c| c.name == name).expect("the container")
    }

    fn url(plan: &Plan, container: &str) -> Result<String, String> {
        let r = plan.recognised.iter().find(|r| r.container == container).expect("recognised");
        r.action.clone().map(|t| t.url)
    }

    #[test]
    fn istio_regular_is_stopped_on_its_status_port() {
        let pod = fixture("istio");
        assert_eq!(url(&plan_of(&pod), "istio-proxy"), Ok("http://127.0.0.1:15020/quitquitquit".into()));
        let mut moved = pod.clone();
        moved.metadata.annotations.insert(ISTIO_STATUS_PORT.into(), "15099".into());
        let plan = plan_of(&moved);
        assert_eq!(url(&plan, "istio-proxy"), Ok("http://127.0.0.1:15099/quitquitquit".into()));
        assert_eq!(plan.targets()[0].container.as_deref(), Some("istio-proxy"));
        assert!(plan.unstopped.is_empty());
        assert_eq!(
            plan.recognised[0].describe(),
            "container istio-proxy is Istio's proxy (status port 15099, from status.sidecar.istio.io/port): proa will POST http://127.0.0.1:15099/quitquitquit at shutdown (--auto-shutdown)"
        );
    }

    #[test]
    fn istio_with_its_status_server_off_has_no_action() {
        let mut pod = fixture("istio");
        pod.metadata.annotations.insert(ISTIO_STATUS_PORT.into(), "0".into());
        let plan = plan_of(&pod);
        assert!(url(&plan, "istio-proxy").unwrap_err().contains("status.sidecar.istio.io/port is 0"));
        assert_eq!(plan.unstopped, ["istio-proxy"]);
    }

    #[test]
    fn a_native_istio_proxy_is_never_given_an_action() {
        let plan = plan_of(&fixture("istio-native"));
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn linkerd_with_the_annotation_is_stopped_on_its_admin_port() {
        let pod = fixture("linkerd");
        assert_eq!(url(&plan_of(&pod), "linkerd-proxy"), Ok("http://127.0.0.1:4191/shutdown".into()));
        // The injector writes the annotation's port into the proxy's environment: that address is the one it serves.
        let mut moved = pod.clone();
        moved.metadata.annotations.insert(LINKERD_ADMIN_PORT.into(), "4999".into());
        container(&mut moved, "linkerd-proxy").env.retain(|e| e.name != LINKERD_ADMIN_ENV);
        assert_eq!(url(&plan_of(&moved), "linkerd-proxy"), Ok("http://127.0.0.1:4999/shutdown".into()));
    }

    #[test]
    fn linkerd_without_the_annotation_names_it() {
        let mut pod = fixture("linkerd");
        pod.metadata.annotations.remove(LINKERD_SHUTDOWN);
        container(&mut pod, "linkerd-proxy").env.retain(|e| e.name != LINKERD_SHUTDOWN_ENV);
        let plan = plan_of(&pod);
        let why = url(&plan, "linkerd-proxy").unwrap_err();
        assert!(why.contains("add the Pod annotation config.linkerd.io/proxy-admin-shutdown: enabled"), "{why}");
        assert_eq!(plan.unstopped, ["linkerd-proxy"]);
    }

    #[test]
    fn linkerd_environment_written_by_the_injector_wins_over_the_annotation() {
        // The Helm value proxy.enableShutdownEndpoint enables it with no annotation; an annotation added to a
        // running Pod changes nothing in its proxy.
        let mut pod = fixture("linkerd");
        pod.metadata.annotations.remove(LINKERD_SHUTDOWN);
        assert!(url(&plan_of(&pod), "linkerd-proxy").is_ok());
        let off = serde_json::from_str(r#"{"name":"LINKERD2_PROXY_SHUTDOWN_ENDPOINT_ENABLED","value":"false"}"#);
        container(&mut pod, "linkerd-proxy").env.push(off.unwrap());
        pod.metadata.annotations.insert(LINKERD_SHUTDOWN.into(), "enabled".into());
        assert!(url(&plan_of(&pod), "linkerd-proxy").is_err());
    }

    #[test]
    fn cloud_sql_proxy_by_image_with_quitquitquit_on_its_admin_port() {
        let pod = fixture("cloudsql");
        let plan = plan_of(&pod);
        assert_eq!(url(&plan, "db"), Ok("http://127.0.0.1:9091/quitquitquit".into()));
        assert_eq!(plan.targets()[0].container.as_deref(), Some("db"));
        let mut explicit = pod.clone();
        container(&mut explicit, "db").args.push("--admin-port=9300".into());
        assert_eq!(url(&plan_of(&explicit), "db"), Ok("http://127.0.0.1:9300/quitquitquit".into()));
        let mut split = pod.clone();
        container(&mut split, "db").args.extend(["--admin-port".to_string(), "9301".to_string()]);
        assert_eq!(url(&plan_of(&split), "db"), Ok("http://127.0.0.1:9301/quitquitquit".into()));
    }

    #[test]
    fn cloud_sql_proxy_without_quitquitquit_names_the_flag() {
        let mut pod = fixture("cloudsql");
        container(&mut pod, "db").args.retain(|a| a != "--quitquitquit");
        let plan = plan_of(&pod);
        assert_eq!(url(&plan, "db").unwrap_err(), "its /quitquitquit endpoint is off: add --quitquitquit to its args");
        assert_eq!(plan.unstopped, ["db"]);
        container(&mut pod, "db").args.push("--quitquitquit=false".into());
        assert!(url(&plan_of(&pod), "db").is_err());
        // The proxy reads its flags with Go's ParseBool: `1`, `t` and `True` are true too.
        for yes in ["1", "t", "True"] {
            container(&mut pod, "db").args.push(format!("--quitquitquit={yes}"));
            assert!(url(&plan_of(&pod), "db").is_ok(), "--quitquitquit={yes}");
        }
    }

    #[test]
    fn cloud_sql_proxy_configured_by_its_operators_variables() {
        let mut pod = fixture("cloudsql");
        container(&mut pod, "db").args.retain(|a| a != "--quitquitquit");
        let vars =
            r#"[{"name":"CSQL_PROXY_QUITQUITQUIT","value":"true"},{"name":"CSQL_PROXY_ADMIN_PORT","value":"9092"}]"#;
        container(&mut pod, "db").env = serde_json::from_str(vars).unwrap();
        assert_eq!(url(&plan_of(&pod), "db"), Ok("http://127.0.0.1:9092/quitquitquit".into()));
    }

    #[test]
    fn image_names_from_any_registry_with_any_tag() {
        for yes in [
            "gcr.io/cloud-sql-connectors/cloud-sql-proxy:2.14.1",
            "us-docker.pkg.dev/cloud-sql-connectors/gcr/cloud-sql-proxy",
            "mirror.example:5000/cloud-sql-proxy:2.14.1-alpine",
            "cloud-sql-proxy@sha256:0123abcd",
        ] {
            assert!(is_cloud_sql_proxy(yes), "{yes}");
        }
        for no in
            ["gcr.io/cloudsql-docker/gce-proxy:1.37", "example/cloud-sql-proxy-helper:1", "cloud-sql-proxy.io/x:1"]
        {
            assert!(!is_cloud_sql_proxy(no), "{no}");
        }
    }

    #[test]
    fn an_action_naming_the_container_wins_and_a_blanket_action_turns_it_all_off() {
        let pod = fixture("istio");
        let waited = readiness::waited_containers(&pod, "report", &[]);
        assert_eq!(plan(&pod, &waited, &["istio-proxy"], false, true), Plan::default());
        assert_eq!(plan(&pod, &waited, &[], true, true), Plan::default());
        let off = plan(&pod, &waited, &[], false, false);
        assert_eq!((off.recognised.len(), off.unstopped.as_slice()), (0, &["istio-proxy".to_string()][..]));
    }

    #[test]
    fn an_unknown_sidecar_is_unstopped() {
        let pod: Pod = serde_json::from_str(include_str!("../tests/fixtures/pods/job-with-sidecars.json")).unwrap();
        let plan = plan_of(&pod);
        assert_eq!((plan.recognised.len(), plan.unstopped.as_slice()), (0, &["envoy".to_string()][..]));
        assert!(unstopped_warning("envoy").contains("-p envoy=URL"));
    }
}
