//! `examples/ray_extract.py` on a real local Ray cluster (`ray` from PyPI, 2 CPUs): 4 shard tasks,
//! one of which crashes on its first attempt (a failpoint aborts the process after its first part
//! file, before the part's record); Ray retries it, the driver commits, and the result equals the
//! one-machine run.

use std::process::Command;
use std::time::Duration;

use crate::common::{self, text, tiny_trunk};
use crate::sharded::{self, Root};

#[test]
fn ray_runs_four_shards_with_one_retry_and_equals_one_machine_run() {
    let test = "ray::ray_runs_four_shards_with_one_retry_and_equals_one_machine_run";
    if common::ort(test).is_none() {
        return;
    }
    let Some(py) = common::python_with(test, &["ray"]) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let root = Root::local(&d.path().join("root"));
    let imgs = sharded::images(d.path());
    root.plan(&imgs, 4, 3);
    let marker = d.path().join("failed-once");
    let tiny = tiny_trunk();
    let mut child = Command::new(&py)
        .arg(common::root().join("examples/ray_extract.py"))
        .args([
            "--plan",
            &root.url,
            "--shards",
            "4",
            "--num-cpus",
            "2",
            "--vggcache",
        ])
        .arg(env!("CARGO_BIN_EXE_vggcache"))
        .args([
            "--",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--batch-size",
            "1",
            "--model",
        ])
        .arg(&tiny)
        .env(vggcache::failpoint::ENV, "part-written:abort")
        .env(vggcache::failpoint::ENV_ONCE, &marker)
        .env("RAY_USAGE_STATS_ENABLED", "0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a local cluster that hangs must not hang CI.
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("ray_extract.py ran over 300 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let o = child.wait_with_output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(
        marker.exists(),
        "the failpoint never fired: no attempt failed\n{t}"
    );
    assert_eq!(t.matches("committed by this attempt").count(), 4, "{t}");
    assert!(t.contains("committed: 4 shards"), "{t}");
    sharded::assert_rows(
        &sharded::table(&d.path().join("root")),
        &sharded::one_machine(d.path(), &imgs, "1"),
        None,
        "ray",
    );
    // The crashed attempt's part file is an orphan that verify names.
    let v = root.ok(&["cache", "verify", "--features", &root.url]);
    assert!(
        v.contains("orphaned parts (listed by no record") && v.contains(": 1\n"),
        "{v}"
    );
}
