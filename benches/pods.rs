//! The Pod-level rows of `make bench` (issue 27): real Pods on the test node (`tests/it/support/node.rs`: a kubelet,
//! containerd and runc on this machine), each figure beside a control measured in the same rounds. Every round
//! creates one Pod of each kind at once, so that the machine's other work weighs on all alike:
//! - a regular and a native sidecar that serve 3 s after they start, with a readinessProbe of the default period
//!   (10 s), in front of proa, with direct probes and with `--direct-probe false` (the API's Ready only): from the
//!   moment the bench first sees the sidecar's endpoint answer to the moment the program reports its start;
//! - from the moment the program reports it is ending (then exits) to the moment the watch sees the Pod
//!   `Succeeded`: proa with a regular sidecar (stopped by a POST), proa with a native one (stopped by the kubelet),
//!   and the control, a Pod with the same program alone (no sidecar, no proa).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::envtest::Namespace;
use crate::support::node::{self, BUSYBOX, Beacon, Node, PROA_BUSYBOX, free_port, wait_until_serving};
use crate::support::real_pod::{KUBELET, RealPod, Scratch, phase, proa_env, sidecar};

/// The kinds of Pod of one round.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// proa and a sidecar: native or regular, direct probes on or off.
    Proa { native: bool, direct: bool },
    /// The same program alone.
    Control,
}

const KINDS: [Kind; 5] = [
    Kind::Proa { native: false, direct: true },
    Kind::Proa { native: true, direct: true },
    Kind::Proa { native: false, direct: false },
    Kind::Proa { native: true, direct: false },
    Kind::Control,
];

/// What one Pod measured, in ms: endpoint answered → program started (proa's only), program ending → Succeeded.
struct Measured {
    start: Option<f64>,
    succeeded: f64,
}

/// Runs `rounds` rounds; the table's rows and their JSON, or why there are none.
pub fn rows(rounds: usize) -> Result<(String, Value), String> {
    let test = "make bench (Pod rows)";
    let node = node::node(test).ok_or("no real node here (see the SKIPPED line above)")?;
    let ns = node.namespace("bench-pods");
    let mut measured: Vec<Vec<Measured>> = KINDS.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        eprintln!("bench: Pod round {} of {rounds}", round + 1);
        let results = std::thread::scope(|scope| {
            let ns = &ns;
            let handles: Vec<_> =
                KINDS.iter().enumerate().map(|(i, kind)| scope.spawn(move || one(node, ns, round, i, *kind))).collect();
            handles
                .into_iter()
                .map(|h| h.join().map_err(|_| "a Pod's measure panicked".to_string()))
                .collect::<Vec<_>>()
        });
        for (i, result) in results.into_iter().enumerate() {
            measured[i].push(result??);
        }
    }
    Ok(render(&measured))
}

/// Creates one Pod of `kind` and measures it.
fn one(node: &'static Node, ns: &Namespace, round: usize, index: usize, kind: Kind) -> Result<Measured, String> {
    let name = format!("bench-{round}-{index}");
    let scratch = Scratch::new(node, &format!("{}-{name}", ns.name));
    let beacon = Beacon::start();
    let program = format!("{}; {}", beacon.say("started"), beacon.say("ending"));
    let addr = format!("{}:{}", node.ip(), free_port(node.ip()));
    let spec = match kind {
        Kind::Control => json!({"restartPolicy": "Never", "containers": [
            {"name": "main", "image": BUSYBOX, "command": ["/bin/sh", "-c", program]},
        ]}),
        Kind::Proa { native, direct } => {
            let quit = format!("http://{addr}/cgi-bin/quitquitquit");
            let mut command = vec!["/proa", "--direct-probe", if direct { "true" } else { "false" }, "-p", &quit];
            command.extend(["--", "/bin/sh", "-c", &program]);
            let main = json!({"name": "main", "image": PROA_BUSYBOX, "env": proa_env(node), "command": command});
            let mut web = sidecar("web", &addr, 3);
            let volumes = [scratch.volume()];
            match native {
                true => {
                    web["restartPolicy"] = json!("Always");
                    json!({"restartPolicy": "Never", "initContainers": [web], "containers": [main], "volumes": volumes})
                }
                false => json!({"restartPolicy": "Never", "containers": [main, web], "volumes": volumes}),
            }
        }
    };
    let pod = RealPod::create(node, ns, &name, spec);
    let bound = Duration::from_secs(60);
    let answered = (kind != Kind::Control).then(|| wait_until_serving(&addr, "/ready", bound));
    let started = beacon.wait_for("started", bound);
    let ending = beacon.wait_for("ending", bound);
    let (succeeded, done) = pod.wait_for("finished", KUBELET, |p| matches!(phase(p), "Succeeded" | "Failed"));
    if phase(&done) != "Succeeded" {
        return Err(format!("Pod {name} ended {}", phase(&done)));
    }
    let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1e3;
    Ok(Measured { start: answered.map(|answered| ms(answered, started)), succeeded: ms(ending, succeeded) })
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn render(measured: &[Vec<Measured>]) -> (String, Value) {
    let rounds = measured[0].len();
    let figure = |i: usize, pick: &dyn Fn(&Measured) -> Option<f64>| -> (f64, f64) {
        let mut values: Vec<f64> = measured[i].iter().filter_map(pick).collect();
        let max = values.iter().copied().fold(0.0, f64::max);
        (median(&mut values), max)
    };
    let start = |i| figure(i, &|m: &Measured| m.start);
    let succeeded = |i| figure(i, &|m: &Measured| Some(m.succeeded));
    let control = succeeded(4).0;
    let rows = [
        ("sidecar endpoint answers → program starts, regular sidecar", start(0), None),
        ("same, native sidecar", start(1), None),
        ("same, regular sidecar, --direct-probe false (the kubelet's 10 s period)", start(2), None),
        ("same, native sidecar, --direct-probe false", start(3), None),
        ("program ends → Pod Succeeded, proa + regular sidecar", succeeded(0), Some(control)),
        ("same, proa + native sidecar", succeeded(1), Some(control)),
        ("same, control: the program alone, no sidecar, no proa", succeeded(4), None),
    ];
    let header = format!("real Pods, kubelet 1.36 + containerd + runc ({rounds} rounds)");
    let mut lines = vec![[header, "median (ms)".into(), "max (ms)".into(), "over the control (ms)".into()]];
    let mut json_rows = Vec::new();
    for (label, (median, max), control) in rows {
        let over = control.map_or("-".to_string(), |c| format!("+{:.0}", median - c));
        lines.push([label.to_string(), format!("{median:.0}"), format!("{max:.0}"), over]);
        json_rows.push(json!({"row": label, "median_ms": median, "max_ms": max, "control_median_ms": control}));
    }
    let widths: Vec<usize> = (0..4).map(|c| lines.iter().map(|l| l[c].chars().count()).max().unwrap_or(0)).collect();
    let mut table = String::from("\n");
    for (i, line) in lines.iter().enumerate() {
        let cells: Vec<String> = line.iter().zip(&widths).map(|(cell, w)| format!(" {cell:<w$} ")).collect();
        table.push_str(&format!("|{}|\n", cells.join("|")));
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
            table.push_str(&format!("|{}|\n", rule.join("|")));
        }
    }
    (table, json!({"rounds": rounds, "rows": json_rows}))
}
