//! The `kill` feature (issue 4, item 3), with real processes in a new PID namespace whose PID 1 is a bash
//! script standing in for a Pod's pause process (`shareProcessNamespace: true`): it starts the sidecars, then
//! proa, and reports how each sidecar ended. Debian's nginx is one sidecar, stopped gracefully with SIGQUIT.

use crate::lifecycle::{BOUND, bash, job_pod};
use crate::support::apiserver::ApiServer;
use crate::support::machine;
use crate::support::nginx::Nginx;
use crate::support::proa::{Marker, Proa};
use crate::support::procs;
use crate::support::temp::TempDir;

/// A bash function that prints the processes of the namespace, like `ps -eo pid,ppid,stat,args` (procps may be
/// missing on a fresh machine), with long arguments (scripts) cut short: `list TITLE`.
const LIST: &str = r#"list() {
  echo "--- $1"
  printf '%5s %5s %s %s\n' PID PPID S COMMAND
  for d in /proc/[0-9]*; do
    read -r stat < "$d/stat" || continue
    mapfile -d '' argv < "$d/cmdline"
    fields=(${stat##*) })
    cmd=
    for a in "${argv[@]}"; do read -ra w <<< "${a//$'\n'/ }"; a="${w[*]}"; [ ${#a} -gt 40 ] && a="${a:0:37}..."; cmd+="$a "; done
    printf '%5s %5s %s %s\n' "${d#/proc/}" "${fields[1]}" "${fields[0]}" "$cmd"
  done | sort -n
}
"#;

#[test]
fn kill_nginx_with_sigquit_stops_it_gracefully_and_nothing_else() {
    let test = "kill_nginx_with_sigquit_stops_it_gracefully_and_nothing_else";
    if !machine::pid_namespaces(test) {
        return;
    }
    let Some(nginx) = Nginx::prepare(test) else { return };
    let mut marker = Marker::start();
    let init = format!(
        "{} & nginx=$!
        sleep 300 & other=$!
        \"$@\"; code=$?
        wait $nginx; {}
        kill -0 $other && {}
        exit $code",
        nginx.start_command(marker.port()),
        marker.say("nginx-exited-$?"),
        marker.say("other-alive"),
    );
    let api = ApiServer::start(job_pod(&["nginx"], &[], "Never"));
    let proa = Proa::new(&api)
        .under_init(&init)
        .args(["--kill", "nginx", "--kill-signal", "QUIT"])
        .args(bash(format!("{}; exit 0", marker.say("started"))))
        .spawn();

    // nginx serves once its master has started the workers; then its container is ready.
    let up = marker.wait_until(BOUND, |line| line.contains("start worker process"));
    let master = up.text.split_whitespace().find(|w| w.contains('#')).expect("nginx logs PID#TID").to_string();
    assert!(nginx.get().ends_with("nginx ok\n"));
    api.wait_open_watches(1, BOUND);
    api.set_ready("nginx");
    marker.wait_for("started", BOUND);

    // At shutdown nginx gets SIGQUIT, finishes gracefully, and its master exits. proa's kill action reports once
    // every nginx process has exited; then the kubelet would report the container terminated.
    marker.wait_until(BOUND, |line| line.contains("signal 3 (SIGQUIT) received"));
    marker.wait_until(BOUND, |line| line.contains("gracefully shutting down"));
    marker.wait_until(BOUND, |line| line.ends_with(&format!("{master} exit")));
    let log = proa.wait_for_stderr(BOUND, |log| log.contains("shutdown --kill nginx: "));
    assert!(log.contains("INFO shutdown --kill nginx: SIGQUIT to nginx (pid "), "{log}");
    assert!(log.contains("; all exited after"), "{log}");
    api.set_terminated("nginx", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    marker.wait_for("nginx-exited-0", BOUND);
    marker.wait_for("other-alive", BOUND);
}

#[test]
fn kill_all_stops_other_containers_and_spares_the_programs_processes() {
    let test = "kill_all_stops_other_containers_and_spares_the_programs_processes";
    if !machine::pid_namespaces(test) {
        return;
    }
    let mut marker = Marker::start();
    // Two sidecars: one stops on SIGTERM, one ignores it (the ignored disposition survives exec).
    let init = format!(
        "# pause, PID 1
        {LIST}
        sleep 300 & polite=$!
        bash -c \"trap '' TERM; {}; exec sleep 301\" & stubborn=$!
        \"$@\"; code=$?
        list after
        wait $polite; {}
        wait $stubborn; {}
        exit $code",
        marker.say("stubborn-up"),
        marker.say("polite-$?"),
        marker.say("stubborn-$?"),
    );
    // The program leaves a process of its own behind, lists the namespace when told to, and exits 3.
    let program = format!(
        "# the program
        {LIST}
        (sleep 302 &)
        trap 'list before; exit 3' USR1
        {}; {}; {}",
        marker.open_3(),
        marker.say("started"),
        marker.block()
    );
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let proa = Proa::new(&api).under_init(&init).args(["--kill-all", "--kill-grace", "1s"]).args(bash(program)).spawn();
    marker.wait_for("stubborn-up", BOUND);
    marker.wait_for("started", BOUND);
    proa.signal(libc::SIGUSR1);
    let done = proa.wait(BOUND);
    println!("{}", done.stdout);
    assert_eq!(done.code(), 3, "{}", done.stderr);
    marker.wait_for("polite-143", BOUND);
    marker.wait_for("stubborn-137", BOUND);

    let (before, after) = done.stdout.split_once("--- after").expect("both listings");
    let (before, after) = (commands(before), commands(after));
    let proa = |cmd: &String| cmd.split_whitespace().nth(1) == Some("--kill-all");
    for sidecar in ["sleep 300", "sleep 301"] {
        assert!(before.iter().any(|cmd| cmd == sidecar), "{sidecar} missing before: {before:#?}");
        assert!(!after.iter().any(|cmd| cmd == sidecar), "{sidecar} still there after: {after:#?}");
    }
    assert!(before.iter().any(proa) && !after.iter().any(proa), "proa before, not after");
    assert!(after.iter().any(|cmd| cmd == "sleep 302"), "the program's process was spared: {after:#?}");
    assert!(
        done.stderr.contains("shutdown --kill-all: SIGTERM to sleep (pid 2), sleep (pid 3); still running after 1.0s, so SIGKILL to sleep (pid 3)"),
        "{}",
        done.stderr
    );
}

/// A bash script that names its own process `\xff\xfe` (as `prctl(PR_SET_NAME)` or setproctitle may), says so on
/// the marker as the hex of /proc/self/comm (`comm-fffe0a`), then runs `rest`.
fn not_utf8_comm(marker: &Marker, rest: &str) -> String {
    format!(
        "printf '\\xff\\xfe' > /proc/$$/comm
        {}
        {rest}",
        marker.say("comm-$(od -An -tx1 < /proc/$$/comm | tr -d ' \\n')")
    )
}

/// Issue 18, item 13: /proc/PID/stat was read as text, so a process whose command name is not UTF-8 was never
/// listed, even where its executable's name matched: "found no process to signal", and the sidecar ran on.
#[test]
fn kill_names_a_process_by_its_executable_whatever_bytes_its_comm_holds() {
    let test = "kill_names_a_process_by_its_executable_whatever_bytes_its_comm_holds";
    if !machine::pid_namespaces(test) {
        return;
    }
    let mut marker = Marker::start();
    let dir = TempDir::new("kill-comm");
    // A sidecar whose executable is named side-car: a copy of bash, running a script that blocks without a child.
    let sidecar = dir.join("side-car");
    std::fs::copy(machine::on_path("bash"), &sidecar).unwrap();
    let script =
        dir.write("sidecar.sh", not_utf8_comm(&marker, &format!("{}; read -u 3 -t 300", marker.open_3())), 0o644);
    let init = format!(
        "{sidecar:?} {script:?} & side=$!
        \"$@\"; code=$?
        wait $side; {}
        exit $code",
        marker.say("side-$?"),
    );
    let api = ApiServer::start(job_pod(&["sidecar"], &[], "Never"));
    let proa = Proa::new(&api)
        .under_init(&init)
        .args(["--kill", "side-car"])
        .args(bash(format!("{}; exit 0", marker.say("started"))))
        .spawn();
    marker.wait_for("comm-fffe0a", BOUND);
    api.wait_open_watches(1, BOUND);
    api.set_ready("sidecar");
    marker.wait_for("started", BOUND);

    let log = proa.wait_for_stderr(BOUND, |log| log.contains("shutdown --kill side-car: "));
    assert!(log.contains("INFO shutdown --kill side-car: SIGTERM to side-car (pid 2); all exited after"), "{log}");
    api.set_terminated("sidecar", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    marker.wait_for("side-143", BOUND);
}

/// Issue 18, item 18: the walk that spares the program's tree went only through processes it could list, so a
/// process of that tree under one whose command name is not UTF-8 was signalled as if it were a sidecar's.
#[test]
fn kill_all_spares_the_programs_tree_through_a_process_whose_comm_is_not_utf8() {
    let test = "kill_all_spares_the_programs_tree_through_a_process_whose_comm_is_not_utf8";
    if !machine::pid_namespaces(test) {
        return;
    }
    let mut marker = Marker::start();
    let dir = TempDir::new("kill-all-comm");
    // In the program's tree: a bash that renames itself, with a sleep under it.
    let middle = dir.write("middle.sh", not_utf8_comm(&marker, "sleep 302 & wait"), 0o644);
    let init = format!(
        "# pause, PID 1
        {LIST}
        sleep 300 & polite=$!
        \"$@\"; code=$?
        list after
        wait $polite; {}
        exit $code",
        marker.say("polite-$?"),
    );
    let program = format!(
        "bash {middle:?} &
        trap 'exit 3' USR1
        {}; {}; {}",
        marker.open_3(),
        marker.say("started"),
        marker.block()
    );
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let proa = Proa::new(&api).under_init(&init).args(["--kill-all", "--kill-grace", "5s"]).args(bash(program)).spawn();
    marker.wait_for("started", BOUND);
    marker.wait_for("comm-fffe0a", BOUND);
    proa.signal(libc::SIGUSR1);
    let done = proa.wait(BOUND);
    println!("{}", done.stdout);
    assert_eq!(done.code(), 3, "{}", done.stderr);
    marker.wait_for("polite-143", BOUND);
    let after = commands(done.stdout.split_once("--- after").expect("the listing").1);
    assert!(after.iter().any(|cmd| cmd == "sleep 302"), "the program's process was signalled: {after:#?}");
    let renamed = |cmd: &String| cmd.starts_with("bash ") && cmd.contains("/proa-it-kill-all-comm-");
    assert!(after.iter().any(renamed), "the renamed one was signalled: {after:#?}");
    assert!(done.stderr.contains("shutdown --kill-all: SIGTERM to sleep (pid 2); all exited after"), "{}", done.stderr);
}

/// A program whose main thread exits (`pthread_exit`) while a second thread runs on: the process lives, yet its
/// /proc/PID/stat says `Z`. The second thread prints `main-exited` once the main thread is gone.
const HEADLESS_C: &str = r#"#include <pthread.h>
#include <stdio.h>
#include <unistd.h>

static pthread_t main_thread;

static void *run(void *unused) {
    pthread_join(main_thread, NULL);
    puts("main-exited");
    fflush(stdout);
    for (;;) pause();
    return unused;
}

int main(void) {
    pthread_t worker;
    main_thread = pthread_self();
    if (pthread_create(&worker, NULL, run, NULL) != 0) return 1;
    pthread_exit(NULL);
}
"#;

/// Issue 18, item 14: `--kill` took the `Z` of a process whose main thread had exited for a zombie, and never
/// signalled it, though its other threads ran on.
#[test]
fn kill_signals_a_process_whose_main_thread_has_exited() {
    let test = "kill_signals_a_process_whose_main_thread_has_exited";
    if !machine::pid_namespaces(test) {
        return;
    }
    let dir = TempDir::new("kill-headless");
    let Some(headless) = machine::c_program(test, dir.path(), "headless", &["-pthread"], HEADLESS_C) else { return };
    let mut marker = Marker::start();
    let fifo = dir.join("up");
    // The init starts proa once the sidecar's main thread has exited; the program checks that it still shows so.
    let init = format!(
        "mkfifo {fifo:?}
        {headless:?} > {fifo:?} & side=$!
        read -r line < {fifo:?}; {}
        export SIDE=$side
        \"$@\"; code=$?
        wait $side; {}
        exit $code",
        marker.say("headless-$line"),
        marker.say("headless-exited-$?"),
    );
    let program = format!(
        "read -r stat < /proc/$SIDE/stat; fields=(${{stat##*) }}); threads=$(grep Threads: /proc/$SIDE/status)
        {}",
        marker.say("headless-${fields[0]}-threads-${threads##*[[:space:]]}")
    );
    let api = ApiServer::start(job_pod(&["headless"], &[], "Never"));
    let proa = Proa::new(&api).under_init(&init).args(["--kill", "headless"]).args(bash(program)).spawn();
    marker.wait_for("headless-main-exited", BOUND);
    api.wait_open_watches(1, BOUND);
    api.set_ready("headless");
    marker.wait_for("headless-Z-threads-2", BOUND);

    let log = proa.wait_for_stderr(BOUND, |log| log.contains("shutdown --kill headless: "));
    // pid 2 was mkfifo.
    assert!(log.contains("INFO shutdown --kill headless: SIGTERM to headless (pid 3); all exited after"), "{log}");
    api.set_terminated("headless", 0);
    let done = proa.wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    marker.wait_for("headless-exited-143", BOUND);
}

/// The COMMAND column of a `list` output.
fn commands(listing: &str) -> Vec<String> {
    let rows = listing.lines().filter(|line| line.trim_start().starts_with(|c: char| c.is_ascii_digit()));
    rows.map(|row| row.split_whitespace().skip(3).collect::<Vec<_>>().join(" ")).collect()
}

#[test]
fn kill_all_refuses_the_hosts_process_namespace_before_anything_runs() {
    refuses_the_hosts_process_namespace(&["--kill-all"], "--kill-all");
}

/// Issue 18, item 15: only `--kill-all` was refused, and `--kill sleep` signalled every sleep of the node.
#[test]
fn kill_named_refuses_the_hosts_process_namespace_before_anything_runs() {
    refuses_the_hosts_process_namespace(&["--kill", "sleep", "-k", "nginx"], "--kill sleep, --kill nginx");
}

/// proa with the kill flags `args` in the test's own PID namespace: where kernel threads show, that is the host's,
/// and proa must exit 125 naming `actions` before it runs anything or asks the API.
fn refuses_the_hosts_process_namespace(args: &[&str], actions: &str) {
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let mut marker = Marker::start();
    let done = Proa::new(&api).args(args).args(bash(marker.say("started"))).spawn().wait(BOUND);
    // What the test itself sees decides what proa must do: kernel threads mean the host's namespace.
    let host = procs::all().iter().any(|p| p.pid == 2 && p.comm == "kthreadd");
    if host {
        assert_eq!(done.code(), 125, "{}", done.stderr);
        let refusal = format!("ERROR {actions} refused: the kernel thread kthreadd (pid 2) is visible");
        assert!(done.stderr.contains(&refusal), "{}", done.stderr);
        assert!(marker.all().is_empty(), "the program must never run");
        assert!(api.requests().is_empty(), "no API request before the refusal: {:?}", api.requests());
    } else {
        assert_eq!(done.code(), 0, "{}", done.stderr);
        marker.wait_for("started", BOUND);
    }
}

#[test]
fn kill_all_as_pid_1_says_that_nothing_else_is_visible() {
    if !machine::pid_namespaces("kill_all_as_pid_1_says_that_nothing_else_is_visible") {
        return;
    }
    let api = ApiServer::start(job_pod(&[], &[], "Never"));
    let done = Proa::new(&api).pid1().args(["--kill-all", "--", "true"]).spawn().wait(BOUND);
    assert_eq!(done.code(), 0, "{}", done.stderr);
    assert!(done.stderr.contains("WARN --kill-all: proa is PID 1"), "{}", done.stderr);
    assert!(
        done.stderr.contains(
            "WARN shutdown --kill-all: found no process to signal: does the Pod set shareProcessNamespace: true?"
        ),
        "{}",
        done.stderr
    );
}

/// Issue 26, 2b: `--kill NAME` finds what `pkill NAME` finds. A sidecar that is a script named `stubborn` runs as
/// bash (its executable) under the command name `stubborn`, as `ps` shows it; a wrong name is reported with the
/// names proa did see, so that a user can tell it from a missing shareProcessNamespace.
#[test]
fn kill_finds_a_script_by_its_command_name_as_pkill_does() {
    let test = "kill_finds_a_script_by_its_command_name_as_pkill_does";
    if !machine::pid_namespaces(test) {
        return;
    }
    let dir = TempDir::new("kill-script");
    for (name, found) in [("stubborn", true), ("stubbornly", false)] {
        let mut marker = Marker::start();
        let bash_path = machine::on_path("bash");
        let body = format!(
            "#!{}\ntrap 'exit 143' TERM\n{}\n{}\nread -u 3 -t 300\n",
            bash_path.display(),
            marker.open_3(),
            marker.say("up")
        );
        let script = dir.write("stubborn", body, 0o755);
        let init = format!(
            "{script:?} & side=$!
            \"$@\"; code=$?
            kill -TERM $side 2>/dev/null; wait $side; {}
            exit $code",
            marker.say("side-$?"),
        );
        let api = ApiServer::start(job_pod(&["sidecar"], &[], "Never"));
        let proa = Proa::new(&api).under_init(&init).args(["--kill", name, "--", "true"]).spawn();
        marker.wait_for("up", BOUND);
        api.wait_open_watches(1, BOUND);
        api.set_ready("sidecar");
        let log = proa.wait_for_stderr(BOUND, |log| log.contains(&format!("shutdown --kill {name}: ")));
        match found {
            true => {
                assert!(log.contains("INFO shutdown --kill stubborn: SIGTERM to stubborn (pid 2); all exited"), "{log}")
            }
            false => assert!(log.contains("found no process to signal among bash, stubborn:"), "{log}"),
        }
        api.set_terminated("sidecar", 0);
        let done = proa.wait(BOUND);
        assert_eq!(done.code(), 0, "{}", done.stderr);
        marker.wait_for("side-143", BOUND);
    }
}
