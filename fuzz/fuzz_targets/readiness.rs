//! The readiness decision: arbitrary Pod JSON through every pure decision proa takes on a snapshot. None may
//! panic, and the decisions must agree with each other.
#![no_main]

#[allow(dead_code)] // each target uses a part
#[path = "../../src/pod.rs"]
mod pod;
#[allow(dead_code)] // each target uses a part
#[path = "../../src/readiness.rs"]
mod readiness;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let Ok(pod) = serde_json::from_slice::<pod::Pod>(input) else { return };
    let own_args = ["--".to_string(), "/app/job".to_string()];
    let flag = pod.spec.containers.last().map(|c| c.name.clone());
    for flag in [None, flag.as_deref()] {
        let Ok(own) = readiness::find_own_container(&pod, flag, &own_args, 1) else { continue };
        assert!(pod.spec.containers.iter().any(|c| c.name == own.name));
        let waited = readiness::waited_containers(&pod, &own.name, &[]);
        assert!(waited.iter().all(|w| w.name != own.name || w.kind == readiness::Kind::Native));
        match readiness::assess(&pod, &waited) {
            readiness::Verdict::Pending { not_ready, waiting } => {
                assert!(!not_ready.is_empty());
                assert!(waiting.iter().all(|(name, _)| not_ready.contains(name)));
            }
            readiness::Verdict::Dead { container, .. } => assert!(waited.iter().any(|w| w.name == container)),
            readiness::Verdict::Ready => {}
        }
        assert!(!readiness::is_gone(&pod, &pod.metadata.uid) || pod.metadata.deletion_timestamp.is_some());
        let left = readiness::sidecars_left(&pod, &waited);
        assert_eq!(left.is_empty(), readiness::sidecars_gone(&pod, &waited));
        let policy = readiness::RestartPolicy::of_container(&pod, &own.name);
        let _ = readiness::shutdown_needed(Some(&policy), 0, false);
        let _ = readiness::shutdown_timeout(None, Some(&pod));
        let _ = readiness::grace_period(&pod);
    }
});
