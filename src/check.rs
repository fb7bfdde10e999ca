//! `proa --check`: run inside the Pod (`kubectl exec POD -c CONTAINER -- /proa --check`), it reports line by line
//! on stdout whether proa could do its job there: the configuration and where each piece came from, the API server
//! reachable with TLS verified, the token accepted, RBAC allowing `get` and `watch` on the own Pod, the containers
//! proa would wait for and why, and what the restart policy means for shutdown. Each line starts with `ok` or
//! `FAIL`; a failure says what to fix. When PID 1 is proa (the container's own, under `kubectl exec`), the check
//! judges PID 1's command line and environment, not its own. Runs on the main thread. It never writes the
//! termination log, which belongs to the container's own proa.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::api::{Access, Api, ApiError};
use crate::cluster::{self, Cluster};
use crate::direct;
use crate::exit;
use crate::lifecycle::{self, Config, Facts, Mode};
use crate::options::Options;
use crate::pod::Pod;
use crate::probe::{self, Endpoint};
use crate::readiness::{self, Found, Kind, RestartPolicy, Restarted};
use crate::url::redact;

/// The Role rule proa needs, as a user would add it.
const RULE: &str = r#"{apiGroups: [""], resources: ["pods"], verbs: ["get", "watch"]}"#;

/// Where the check reads PID 1's command line and environment.
const PROC: &str = "/proc";

/// Runs every check and returns 0 when all passed, else 125.
pub fn run(options: &Options, env: impl Fn(&str) -> Option<String>) -> u8 {
    let mut report = Report { failed: false, out: std::io::stdout().lock() };
    match read_pid1(Path::new(PROC)) {
        Some(pid1) => {
            let env = pid1.env(&env);
            if let Some(judged) = judge_pid1(&mut report, options, &pid1, &env) {
                check(&mut report, &judged, &env);
            }
        }
        // Outside proa's container (or with another init): the command line given to --check is the one judged.
        None => check(&mut report, options, &env),
    }
    match report.failed {
        true => exit::code(exit::End::ProaFailed),
        false => 0,
    }
}

/// PID 1's command line and environment, when PID 1 is proa.
#[derive(Debug, PartialEq)]
struct Pid1 {
    /// argv[0] and the arguments after it.
    argv0: String,
    args: Vec<String>,
    /// From `environ`, unless it cannot be read (another user's process).
    environment: Option<HashMap<String, String>>,
}

impl Pid1 {
    /// The environment PID 1's options share: its own where readable, else `fallback` (the check's).
    fn env<'a>(&'a self, fallback: &'a impl Fn(&str) -> Option<String>) -> impl Fn(&str) -> Option<String> + 'a {
        move |var: &str| match &self.environment {
            Some(vars) => vars.get(var).cloned(),
            None => fallback(var),
        }
    }
}

/// Reads `PROC/1/cmdline` and `PROC/1/environ`: `None` when PID 1 is not proa (its executable's name does not start
/// with `proa`), or /proc cannot be read.
fn read_pid1(proc: &Path) -> Option<Pid1> {
    let cmdline = std::fs::read(proc.join("1/cmdline")).ok()?;
    let mut words = nul_separated(&cmdline).into_iter();
    let argv0 = words.next()?;
    let name = Path::new(&argv0).file_name()?.to_string_lossy().into_owned();
    if !name.starts_with("proa") {
        return None;
    }
    let environment = std::fs::read(proc.join("1/environ")).ok().map(|environ| {
        let pairs = nul_separated(&environ);
        pairs.into_iter().filter_map(|pair| pair.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect()
    });
    Some(Pid1 { argv0, args: words.collect(), environment })
}

/// The NUL-terminated strings of a /proc file.
fn nul_separated(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    match bytes.is_empty() {
        true => Vec::new(),
        false => bytes.split(|&b| b == 0).map(|word| String::from_utf8_lossy(word).into_owned()).collect(),
    }
}

/// The options of PID 1's proa, parsed from its command line with its environment, and a line saying so; `None`
/// (with a FAIL) when they are not a command line that runs a program.
fn judge_pid1(
    report: &mut Report<impl Write>,
    options: &Options,
    pid1: &Pid1,
    env: impl Fn(&str) -> Option<String>,
) -> Option<Options> {
    let shown = std::iter::once(&pid1.argv0).chain(&pid1.args).map(|w| redact(w)).collect::<Vec<_>>().join(" ");
    let environment = match &pid1.environment {
        Some(_) => "PID 1's environment",
        None => "the environment of --check (PID 1's cannot be read)",
    };
    match crate::options::cli::parse(pid1.args.iter().map(OsString::from), env) {
        Ok(crate::options::cli::Parsed::Run(judged)) if judged.serve_quit.is_some() => {
            report.ok(&format!(
                "PID 1 is a sidecar's proa ({shown}): nothing to wait for or stop here; run the check in the main container"
            ));
            None
        }
        Ok(crate::options::cli::Parsed::Run(judged)) => {
            let ignored = match options.own_args.iter().any(|arg| arg != "--check") {
                true => "; the flags given to --check are not used",
                false => "",
            };
            report.ok(&format!(
                "judging the command line of PID 1, the container's proa: {shown} (with {environment}{ignored})"
            ));
            Some(judged)
        }
        Ok(_) => {
            report.fail(&format!(
                "PID 1 is proa, but not one that runs a program: {shown}; run the check in the main container"
            ));
            None
        }
        Err(err) => {
            report.fail(&format!("PID 1's command line ({shown}, with {environment}) is not one proa accepts: {err}"));
            None
        }
    }
}

/// Checks what proa would do with `options`, reading the environment through `env`.
fn check(report: &mut Report<impl Write>, options: &Options, env: &impl Fn(&str) -> Option<String>) {
    if options.disabled {
        report.ok("PROA_DISABLE=true: proa runs the program in its place, with no wait and no shutdown");
    }
    let in_cluster = env("KUBERNETES_SERVICE_HOST").is_some_and(|host| !host.trim().is_empty());
    match options.no_api_endpoints(in_cluster) {
        Ok(Some(endpoints)) => check_endpoints(report, options, &endpoints),
        Ok(None) => check_cluster(report, options, env),
        Err(err) => report.fail(&err.to_string()),
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
                Err(ApiError::Transport(why) | ApiError::Cut(why)) => {
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
    // The judged command line: PID 1's (see `run`), or the one given to --check.
    let own_args: Vec<String> = options.own_args.iter().filter(|a| *a != "--check").cloned().collect();
    let args_from = match options.program.is_empty() {
        true => "the command line",
        false => "the command line of PID 1",
    };
    // The program and its arguments end the command line: count them as the container's own proa does.
    let program_words = match options.program.is_empty() {
        true => 0,
        false => 1 + options.args.len(),
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
        Err(err) => return report.fail(&err.to_string()),
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
    for container in waited {
        let way = match options.direct_probe {
            true => direct::way(pod, container).to_string(),
            false => "the API only (--direct-probe false)".to_string(),
        };
        report.ok(&format!("readiness of container {}: {way}", container.name));
    }

    let policy = RestartPolicy::of_container(pod, &own.name);
    let meaning = match (policy.restarted_exits(), options.always_shutdown) {
        (_, true) => "--always-shutdown: proa stops the sidecars whatever the program's exit code",
        (Restarted::Never, false) => "proa stops the sidecars after the program exits",
        (Restarted::Sometimes, false) => {
            "proa stops the sidecars after an exit the kubelet does not restart (a success, under OnFailure); after one it restarts, it leaves them running for the restarted program"
        }
        (Restarted::Always, false) => {
            "the kubelet restarts the program after every exit, so proa leaves the sidecars running and sends nothing (--always-shutdown changes that)"
        }
    };
    report.ok(&format!("{policy}: {meaning}"));
    // From here on, what this proa's run will send: nothing where it never stops the sidecars.
    if !facts.may_stop_sidecars(options.always_shutdown) {
        return;
    }

    let actions = options.shutdown_actions(Duration::MAX);
    let regular: Vec<&str> = waited.iter().filter(|w| w.kind == Kind::Regular).map(|w| w.name.as_str()).collect();
    for (i, action) in actions.iter().enumerate() {
        match facts.skips.iter().find(|(skipped, _)| *skipped == i) {
            Some((_, why)) => report.ok(&format!("shutdown {action}: not sent here, {why}")),
            None => report.ok(&format!("shutdown {action}: sent")),
        }
    }
    // Recognised sidecars (DESIGN.md step 4), and each sidecar nothing will stop, as the container's proa says them.
    for line in facts.plan.notes() {
        report.ok(&line);
    }
    facts.plan.warnings().iter().for_each(|line| report.fail(line));
    if !facts.sends.is_empty() || !facts.plan.targets().is_empty() {
        let timeout = readiness::shutdown_timeout(options.shutdown_timeout, Some(pod));
        report.ok(&format!(
            "shutdown actions answered within their budget, sidecars awaited within {}s",
            timeout.as_secs()
        ));
    } else if regular.is_empty() {
        report.ok("no shutdown action needed");
    }
}

fn join(items: &[impl std::fmt::Display]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempProc(std::path::PathBuf);

    impl TempProc {
        /// A /proc look-alike whose PID 1 has this cmdline and (when given) environ.
        fn new(name: &str, cmdline: &[&str], environ: Option<&[&str]>) -> TempProc {
            let root = std::env::temp_dir().join(format!("proa-check-{name}-{}", std::process::id()));
            std::fs::create_dir_all(root.join("1")).unwrap();
            let nul = |words: &[&str]| words.iter().flat_map(|w| w.bytes().chain([0])).collect::<Vec<u8>>();
            std::fs::write(root.join("1/cmdline"), nul(cmdline)).unwrap();
            if let Some(environ) = environ {
                std::fs::write(root.join("1/environ"), nul(environ)).unwrap();
            }
            TempProc(root)
        }
    }

    impl Drop for TempProc {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn pid1_is_read_only_when_it_is_proa() {
        let proc = TempProc::new("proa", &["/proa", "-p", "http://127.0.0.1:1/q", "--", "sh"], Some(&["A=1", "B=x=y"]));
        let pid1 = read_pid1(&proc.0).unwrap();
        assert_eq!(pid1.argv0, "/proa");
        assert_eq!(pid1.args, ["-p", "http://127.0.0.1:1/q", "--", "sh"]);
        let environment = pid1.environment.unwrap();
        assert_eq!((environment["A"].as_str(), environment["B"].as_str()), ("1", "x=y"));
        let shell = TempProc::new("shell", &["/bin/sh", "-c", "proa"], None);
        assert_eq!(read_pid1(&shell.0), None);
        let unreadable = TempProc::new("no-environ", &["/usr/local/bin/proa", "--", "job"], None);
        assert_eq!(read_pid1(&unreadable.0).unwrap().environment, None);
    }

    #[test]
    fn pid1s_flags_and_variables_are_judged_and_said() {
        let proc = TempProc::new(
            "judged",
            &["/proa", "-p", "http://user:pw@127.0.0.1:1/q", "--", "sh", "-c", "job"],
            Some(&["PROA_IGNORE=logger", "PROA_SHUTDOWN_TIMEOUT=17s"]),
        );
        let pid1 = read_pid1(&proc.0).unwrap();
        let mut report = Report { failed: false, out: Vec::new() };
        let own = Options { own_args: vec!["--check".into(), "--ignore".into(), "x".into()], ..Options::default() };
        let judged = judge_pid1(&mut report, &own, &pid1, pid1.env(&|_| None)).unwrap();
        assert_eq!(judged.shutdown_post[0].url, "http://user:pw@127.0.0.1:1/q");
        assert_eq!(
            (judged.ignore.as_slice(), judged.shutdown_timeout),
            (&["logger".to_string()][..], Some(Duration::from_secs(17)))
        );
        assert_eq!(judged.program, "sh");
        assert_eq!(
            String::from_utf8(report.out).unwrap(),
            "ok    judging the command line of PID 1, the container's proa: /proa -p http://***@127.0.0.1:1/q -- sh -c job (with PID 1's environment; the flags given to --check are not used)\n"
        );
    }

    #[test]
    fn a_pid1_command_line_proa_would_refuse_fails() {
        let proc = TempProc::new("refused", &["/proa", "--ready-timeout", "soon", "--", "job"], Some(&[]));
        let mut report = Report { failed: false, out: Vec::new() };
        assert!(judge_pid1(&mut report, &Options::default(), &read_pid1(&proc.0).unwrap(), |_| None).is_none());
        assert!(report.failed);
        let out = String::from_utf8(report.out).unwrap();
        assert!(out.starts_with("FAIL  PID 1's command line (/proa --ready-timeout soon -- job, with PID 1's environment) is not one proa accepts: invalid --ready-timeout"), "{out}");
    }

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
