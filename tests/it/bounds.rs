//! No panic and no abort on impossible settings: size-like flags beyond what a run can use and
//! zero counts exit 2 naming the flag before anything is allocated; object-store settings that
//! no client can use (a URL that is not one, plain HTTP not allowed) are refused with the fix.
//! Every case but one runs the binary without a cache or a server, in well under a second.

use std::process::{Command, Output};

use crate::common::{self, text, tiny_trunk};

/// 10^12: more rows, layers or batches than any machine holds.
const HUGE: &str = "1000000000000";

fn vggcache(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vggcache"))
        .args(args)
        .output()
        .expect("run vggcache")
}

/// Exit 2 (not 134 from a failed allocation, not 101 from a panic, not success) with a message
/// naming `flag`.
fn assert_usage(o: &Output, flag: &str) {
    let t = text(o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains(flag), "the message should name {flag}: {t}");
    assert!(
        !t.contains("panicked") && !t.contains("memory allocation"),
        "{t}"
    );
}

fn train_head(extra: &[&str]) -> Output {
    let d = tempfile::tempdir().unwrap();
    let runs = d.path().join("runs");
    let mut args = vec!["train-head", "--features", "no-cache-here", "--runs-dir"];
    args.push(runs.to_str().unwrap());
    args.extend_from_slice(extra);
    vggcache(&args)
}

#[test]
fn train_head_hidden_beyond_memory_exits_2() {
    assert_usage(&train_head(&["--hidden", "99999999999"]), "--hidden");
}

#[test]
fn train_head_batch_size_beyond_memory_exits_2() {
    assert_usage(&train_head(&["--batch-size", HUGE]), "--batch-size");
}

#[test]
fn train_head_prefetch_batches_beyond_memory_exits_2() {
    assert_usage(
        &train_head(&["--stream", "--prefetch-batches", HUGE]),
        "--prefetch-batches",
    );
}

#[test]
fn train_head_shuffle_buffer_beyond_memory_exits_2() {
    assert_usage(
        &train_head(&["--stream", "--shuffle-buffer-rows", HUGE]),
        "--shuffle-buffer-rows",
    );
}

/// `extract` of 24 small images with `extra` (real images: before the checks existed, the run
/// got as far as allocating what the flag asked for).
fn extract(extra: &[&str]) -> Output {
    let d = tempfile::tempdir().unwrap();
    let imgs = crate::sharded::images(d.path());
    common::extract(&tiny_trunk(), &imgs, &d.path().join("cache"), extra)
}

#[test]
fn extract_batch_size_beyond_memory_exits_2() {
    assert_usage(&extract(&["--batch-size", HUGE]), "--batch-size");
}

#[test]
fn extract_shard_rows_beyond_memory_exits_2() {
    assert_usage(&extract(&["--shard-rows", HUGE]), "--shard-rows");
}

#[test]
fn extract_zero_workers_exits_2() {
    assert_usage(&extract(&["--workers", "0"]), "--workers");
}

#[test]
fn extract_zero_sessions_exits_2() {
    assert_usage(&extract(&["--sessions", "0"]), "--sessions");
}

#[test]
fn extract_too_many_workers_exits_2() {
    assert_usage(&extract(&["--workers", HUGE]), "--workers");
}

#[test]
fn shard_run_with_huge_batch_exits_2_before_opening_the_root() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("no-plan-here");
    let o = vggcache(&[
        "extract",
        "--device",
        "cpu",
        "--plan",
        root.to_str().unwrap(),
        "--shard",
        "0/1",
        "--model",
        tiny_trunk().to_str().unwrap(),
        "--batch-size",
        HUGE,
    ]);
    assert_usage(&o, "--batch-size");
}

/// `--epochs 10^11 --patience 1` is a legal run that stops early: it must not reserve memory per
/// planned epoch up front (4.8 TB before the fix).
#[test]
fn train_head_huge_epochs_with_patience_runs_and_stops_early() {
    let test = "bounds::train_head_huge_epochs_with_patience_runs_and_stops_early";
    if common::ort(test).is_none() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let imgs = crate::sharded::images(d.path());
    let cache = d.path().join("cache");
    let o = common::extract(&tiny_trunk(), &imgs, &cache, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let o = vggcache(&[
        "train-head",
        "--features",
        cache.to_str().unwrap(),
        "--runs-dir",
        d.path().join("runs").to_str().unwrap(),
        "--name",
        "r",
        "--hidden",
        "8",
        "--epochs",
        "100000000000",
        "--patience",
        "1",
        "--lr",
        "0.1",
    ]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let epochs = t
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<u64>().is_ok())
        })
        .count();
    assert!((1..100_000).contains(&epochs), "{epochs} epoch lines");
}

/// `cache gc` on an S3 root with `AWS_*` settings from `pairs` (and dummy credentials, so no
/// credential lookup leaves the machine).
fn s3_gc_with(pairs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vggcache"));
    c.args(["cache", "gc", "s3://vggcache-test/prefix"]);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            c.env_remove(k);
        }
    }
    c.envs([
        ("AWS_ACCESS_KEY_ID", "x"),
        ("AWS_SECRET_ACCESS_KEY", "x"),
        ("AWS_REGION", "us-east-1"),
    ]);
    c.envs(pairs.iter().copied());
    c.output().expect("run vggcache")
}

#[test]
fn an_endpoint_that_is_not_a_url_is_an_error_not_a_panic() {
    let o = s3_gc_with(&[("AWS_ENDPOINT", "not-a-url")]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("AWS_ENDPOINT=not-a-url") && t.contains("http://") && !t.contains("panicked"),
        "{t}"
    );
}

#[test]
fn plain_http_without_allow_http_says_what_to_set() {
    let o = s3_gc_with(&[
        ("AWS_ENDPOINT", "http://127.0.0.1:9"),
        ("AWS_ALLOW_HTTP", "false"),
    ]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("AWS_ENDPOINT=http://127.0.0.1:9")
            && t.contains("set AWS_ALLOW_HTTP=true")
            && !t.contains("builder error"),
        "{t}"
    );
}
