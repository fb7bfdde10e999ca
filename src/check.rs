//! `proa --check`: run inside the Pod (`kubectl exec POD -c CONTAINER -- /proa --check`), it reports line by line
//! on stdout whether proa could do its job there: the configuration and where each piece came from, the API server
//! reachable with TLS verified, the token accepted, RBAC allowing `get` and `watch` on the own Pod, the containers
//! proa would wait for and why, and what the restart policy means for shutdown. Each line starts with `ok` or
//! `FAIL`; a failure says what to fix. Runs on the main thread. It never writes the termination log, which belongs
//! to the container's own proa.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::api::{Access, Api, ApiError};
use crate::cluster::{self, Cluster};
use crate::exit;
use crate::lifecycle::{self, Config, Facts, Mode};
use crate::options::Options;
use crate::pod::Pod;
use crate::probe::{self, Endpoint};
use crate::readiness::{self, Found, Kind, Policy, RestartPolicy};

/// The Role rule proa needs, as a user would add it.
const RULE: &str = r#"{apiGroups: [""], resources: ["pods"], verbs: ["get", "watch"]}"#;

/// Runs every check and returns 0 when all passed, else 125.
pub fn run(options: &Options, env: impl Fn(&str) -> Option<String>) -> u8 {
    let mut report = Report { failed: false, out: std::io::stdout().lock() };
    if options.disabled {
        report.ok("PROA_DISABLE=true: proa runs the program in its place, with no wait and no shutdown");
    }
    let in_cluster = env("KUBERNETES_SERVICE_HOST").is_some_and(|host| !host.trim().is_empty());
    match options.no_api_endpoints(in_cluster) {
        Ok(Some(endpoints)) => check_endpoints(&mut report, options, &endpoints),
        Ok(None) => check_cluster(&mut report, options, &env),
        Err(err) => report.fail(&err.to_string()),
    }
    match report.failed {
        true => exit::PROA_FAILED,
        false => 0,
    }
}

/// Collects the verdict while printing each line.
struct Report<W: Write> {
    failed: bool,
    out: W,
}

impl<W: Write> Report<W> {
    fn ok(&mut self, line: &str) {
        let _ = writeln!(self.out, "ok    {line}");
    }

    fn fail(&mut self, line: &str) {
        self.failed = true;
        let _ = writeln!(self.out, "FAIL  {line}");
    }
}

/// No-API mode: each endpoint is checked once, and the shutdown actions are listed.
fn check_endpoints(report: &mut Report<impl Write>, options: &Options, endpoints: &[Endpoint]) {
    report.ok("no-API mode: proa waits by probing endpoints and never uses the Kubernetes API (no RBAC needed)");
    let agent = probe::agent();
    for endpoint in endpoints {
        match probe::check(&agent, endpoint) {
            Ok(()) => report.ok(&format!("{endpoint} is ready")),
            Err(why) => report.fail(&format!(
                "{endpoint} is not ready ({why}): check that the sidecar runs and the address is right (Cloud SQL Auth Proxy needs --health-check)"
            )),
        }
    }
    let actions = options.shutdown_actions(Duration::MAX);
    match actions.is_empty() {
        true => report.ok("no shutdown action: the sidecars are left running after the program"),
        false => report.ok(&format!(
            "shutdown: {}, then proa waits for the endpoints to stop answering (restart policy unknown: always)",
            join(&actions)
        )),
    }
}

fn check_cluster(report: &mut Report<impl Write>, options: &Options, env: &impl Fn(&str) -> Option<String>) {
    let cluster = match cluster::discover(env, cluster::hostname) {
        Ok(cluster) => cluster,
        Err(err) => return report.fail(&format!("configuration: {err}")),
    };
    report_configuration(report, &cluster);
    let mut api = match Api::new(cluster.clone(), options.watch_timeout) {
        Ok(api) => api,
        Err(err) => return report.fail(&err.to_string()),
    };

    // Any authenticated identity may ask for a review, so the first one also tests the connection and the token.
    let ca = cluster.ca_path.display();
    for verb in ["get", "watch"] {
        let answer = api.access_review(verb);
        if verb == "get" {
            match &answer {
                Err(ApiError::Transport(why)) => {
                    return report.fail(&format!(
                        "API server {} unreachable: {why}; check KUBERNETES_SERVICE_HOST and network policies",
                        cluster.api_url
                    ));
                }
                Err(err @ (ApiError::Untrusted(_) | ApiError::BadCa(_))) => return report.fail(&err.to_string()),
                _ => report.ok(&format!("API server {} reachable, TLS verified against {ca}", cluster.api_url)),
            }
            match &answer {
                Err(ApiError::Unauthorized) => {
                    return report.fail(&format!(
                        "token {} rejected (401): check the service account and automountServiceAccountToken",
                        cluster.token.path().display()
                    ));
                }
                _ => report.ok(&format!("token {} accepted", cluster.token.path().display())),
            }
        }
        match answer {
            Ok(access) => report_access(report, &cluster, verb, &access),
            Err(err) => report.fail(&format!(
                "cannot ask whether RBAC allows {verb} on pods (SelfSubjectAccessReview failed: {})",
                review_error(&err)
            )),
        }
    }

    let pod = match api.get_pod() {
        Ok(pod) => pod,
        Err(err) => return report.fail(&format!("cannot read pod {}: {err}", cluster.pod_name)),
    };
    report.ok(&format!("read pod {} in namespace {}", cluster.pod_name, cluster.namespace));
    report_containers(report, options, &pod);
}

fn report_configuration(report: &mut Report<impl Write>, cluster: &Cluster) {
    report.ok(&format!("API server {} (from KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT)", cluster.api_url));
    report.ok(&format!("namespace {} (from {})", cluster.namespace, cluster.namespace_from));
    match cluster.pod_name_from.as_str() {
        "POD_NAME" => report.ok(&format!("pod {} (from POD_NAME)", cluster.pod_name)),
        from => report.ok(&format!(
            "pod {} (from {from}: wrong under hostNetwork, spec.hostname or names over 63 characters; set POD_NAME from the Downward API)",
            cluster.pod_name
        )),
    }
    let dir = cluster.ca_path.parent().unwrap_or(Path::new("/"));
    let from = match dir == Path::new(cluster::DEFAULT_SERVICE_ACCOUNT_DIR) {
        true => "where the kubelet mounts them",
        false => "from PROA_SERVICE_ACCOUNT_DIR",
    };
    report.ok(&format!("service account token and ca.crt in {} ({from})", dir.display()));
}

fn report_access(report: &mut Report<impl Write>, cluster: &Cluster, verb: &str, access: &Access) {
    let what = format!("{verb} on pod {} in namespace {}", cluster.pod_name, cluster.namespace);
    match (access.allowed, access.reason.is_empty()) {
        (true, _) => report.ok(&format!("RBAC allows {what}")),
        (false, true) => report.fail(&format!(
            "RBAC does not allow {what}: add the Role rule {RULE} and bind it to the Pod's service account"
        )),
        (false, false) => report.fail(&format!(
            "RBAC does not allow {what} ({}): add the Role rule {RULE} and bind it to the Pod's service account",
            access.reason
        )),
    }
}

/// The failure of a review request in words (`ApiError`'s text speaks of pods, not of reviews).
fn review_error(err: &ApiError) -> String {
    match err {
        ApiError::Forbidden { .. } => "403; the system:basic-user ClusterRole normally allows it".to_string(),
        ApiError::PodNotFound { .. } => "404".to_string(),
        other => other.to_string(),
    }
}

fn report_containers(report: &mut Report<impl Write>, options: &Options, pod: &Pod) {
    let (own_args, args_from) = match pid1_args() {
        Some(args) => (args, "the command line of PID 1"),
        None => (options.own_args.iter().filter(|a| *a != "--check").cloned().collect(), "the command line"),
    };
    // The program and its arguments end the command line: count them as the container's own proa does.
    let parsed = crate::cli::parse(own_args.iter().map(std::ffi::OsString::from), |_| None);
    let program_words = match parsed {
        Ok(crate::cli::Parsed::Run(run)) => 1 + run.args.len(),
        _ => 0,
    };
    let own = match readiness::find_own_container(pod, options.container.as_deref(), &own_args, program_words) {
        Ok(own) => own,
        Err(err) => return report.fail(&err),
    };
    match own.found {
        Found::Flag => report.ok(&format!("own container {} (from --container)", own.name)),
        Found::CommandLine => report.ok(&format!("own container {} (found from {args_from})", own.name)),
        Found::FirstContainer => report.ok(&format!(
            "own container {} (guessed: the first container; set --container or PROA_CONTAINER if it is not proa's)",
            own.name
        )),
    }
    for name in readiness::unknown_names(pod, &options.ignore) {
        report.fail(&format!("--ignore {name}: the pod has no such container; fix the name"));
    }
    for name in readiness::unknown_names(pod, &options.peers) {
        report.fail(&format!("--peer {name}: the pod has no such container; fix the name"));
    }
    // What the container's own proa decides, from the same code.
    let config = Config { container: Some(own.name.clone()), ..lifecycle::config(options, Mode::Pod) };
    let facts = match Facts::of(&config, pod) {
        Ok(facts) => facts,
        Err(err) => return report.fail(&err),
    };
    let waited = &facts.waited;
    for peer in &facts.peers {
        report.ok(&format!("peer {peer}: not waited for; the sidecars are stopped only after it has terminated"));
    }
    match &facts.stopper {
        Some(stopper) => report.ok(&format!(
            "container {stopper} (the first by name that runs proa) stops the sidecars: this proa exits with its program's code"
        )),
        None if facts.peers.is_empty() => {}
        None => report.ok("this proa stops the sidecars, once its program and every peer have ended"),
    }
    for name in &options.ignore {
        if pod.spec.containers.iter().chain(&pod.spec.init_containers).any(|c| &c.name == name) {
            report.ok(&format!("ignores container {name} (--ignore)"));
        }
    }
    for container in waited {
        match container.kind {
            Kind::Regular => report.ok(&format!(
                "waits for container {} (regular sidecar: ready before the program starts; after it, the shutdown actions stop it and proa waits until it has exited)",
                container.name
            )),
            Kind::Native => report.ok(&format!(
                "waits for container {} (native sidecar: ready before the program starts; the kubelet stops it after proa exits)",
                container.name
            )),
        }
    }
    if waited.is_empty() {
        report.ok("no sidecars to wait for: the program starts at once");
    }

    let policy = RestartPolicy::of_container(pod, &own.name);
    let meaning = match (policy.policy, options.always_shutdown) {
        (_, true) => "--always-shutdown: proa stops the sidecars whatever the program's exit code",
        (Policy::Never, false) => "proa stops the sidecars after the program exits",
        (Policy::OnFailure, false) => {
            "proa stops the sidecars after the program succeeds; after a failure it leaves them running for the restarted program"
        }
        (Policy::Always, false) => {
            "the kubelet restarts the program, so proa leaves the sidecars running (--always-shutdown changes that)"
        }
    };
    report.ok(&format!("{policy}: {meaning}"));

    let actions = options.shutdown_actions(Duration::MAX);
    let regular: Vec<&str> = waited.iter().filter(|w| w.kind == Kind::Regular).map(|w| w.name.as_str()).collect();
    let shuts_down = options.always_shutdown || policy.policy != Policy::Always;
    for (i, action) in actions.iter().enumerate() {
        match facts.skips.iter().find(|(skipped, _)| *skipped == i) {
            Some((_, why)) => report.ok(&format!("shutdown {action}: not sent here, {why}")),
            None => report.ok(&format!("shutdown {action}: sent")),
        }
    }
    if !facts.sends.is_empty() {
        let timeout = readiness::shutdown_timeout(options.shutdown_timeout, Some(pod));
        report.ok(&format!(
            "shutdown actions answered within their budget, sidecars awaited within {}s",
            timeout.as_secs()
        ));
    } else if !regular.is_empty() && shuts_down {
        report.fail(&format!(
            "no shutdown action for {}: they keep the Pod running after the program; set --sidecar, --shutdown-http-post or --shutdown-http-get",
            regular.join(", ")
        ));
    } else {
        report.ok("no shutdown action needed");
    }
}

/// PID 1's arguments (without argv[0]) when PID 1 is proa: under `kubectl exec` they, not the check's own, are
/// the container's command line.
fn pid1_args() -> Option<Vec<String>> {
    let cmdline = std::fs::read("/proc/1/cmdline").ok()?;
    let mut args = cmdline.split(|&b| b == 0).map(|arg| String::from_utf8_lossy(arg).into_owned());
    let argv0 = args.next()?;
    let name = Path::new(&argv0).file_name()?.to_string_lossy().into_owned();
    let mut args: Vec<String> = args.collect();
    // The kernel ends every argument with a NUL, so the split leaves one empty string at the end.
    if args.last().is_some_and(String::is_empty) {
        args.pop();
    }
    name.starts_with("proa").then_some(args)
}

fn join(items: &[impl std::fmt::Display]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_lines_and_verdict() {
        let mut report = Report { failed: false, out: Vec::new() };
        report.ok("a");
        assert!(!report.failed);
        report.fail("b");
        assert!(report.failed);
        assert_eq!(String::from_utf8(report.out).unwrap(), "ok    a\nFAIL  b\n");
    }
}
