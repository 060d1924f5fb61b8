//! The binary as a user runs it: exit codes and messages for the runtime and model errors.

use std::process::Command;

use crate::common;

fn vggcache() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vggcache"))
}

#[test]
fn doctor_with_a_missing_runtime_says_how_to_install_it() {
    let out = vggcache()
        .args(["doctor", "--ort-lib", "/nonexistent/libonnxruntime.so"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot load ONNX Runtime") && err.contains("pip install onnxruntime"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn doctor_with_a_library_that_is_not_onnxruntime_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libonnxruntime.so");
    std::fs::write(&fake, b"not a shared library").unwrap();
    let out = vggcache()
        .args(["doctor", "--ort-lib"])
        .arg(&fake)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot load ONNX Runtime from"), "{err}");
}

#[test]
fn doctor_reports_runtime_and_model() {
    if common::ort("doctor_reports_runtime_and_model").is_none() {
        return;
    }
    let out = vggcache()
        .args(["doctor", "--model"])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/tiny_trunk.onnx"
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("CPUExecutionProvider") && text.contains("[N,128]"),
        "{text}"
    );
}

/// The flags' documented defaults are the library configs' `Default`s (one source).
#[test]
fn stream_and_dtype_flag_defaults_come_from_the_configs() {
    use vggcache::cache::FeatureDtype;
    use vggcache::head::StreamConfig;
    let help = |cmd: &str| {
        let o = vggcache().args([cmd, "--help"]).output().unwrap();
        assert!(o.status.success());
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let train = help("train-head");
    let s = StreamConfig::default();
    for (flag, v) in [
        ("--shuffle-buffer-rows", s.shuffle_buffer_rows),
        ("--prefetch-batches", s.prefetch_batches),
    ] {
        let block = train
            .split(flag)
            .nth(1)
            .unwrap_or_else(|| panic!("{flag}: {train}"));
        let block = block.split("\n  -").next().unwrap();
        assert!(
            block.contains(&format!("[default: {v}]")),
            "{flag}: {block}"
        );
    }
    assert!(
        train.contains("--stream") && train.contains("--memory-budget"),
        "{train}"
    );
    let extract = help("extract");
    let block = extract.split("--feature-dtype").nth(1).unwrap();
    let block = block.split("\n  -").next().unwrap();
    assert!(
        block.contains(&format!("[default: {}]", FeatureDtype::default())),
        "{block}"
    );
    assert_eq!(FeatureDtype::default(), FeatureDtype::F32);
}

/// Runs `vggcache args` in a scratch folder; returns (exit code, stderr).
fn exit_of(args: &[&str]) -> (Option<i32>, String) {
    let d = tempfile::tempdir().unwrap();
    let o = vggcache()
        .current_dir(d.path())
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn exit_codes_are_the_documented_ones() {
    // 0: success.
    assert_eq!(exit_of(&["--version"]).0, Some(0));
    // 2: clap's own errors, and flag values no run can use (checked before any file is read, so
    // the missing folders below are never reached).
    for (args, needle) in [
        (&["extract", "--no-such-flag"][..], "--no-such-flag"),
        (
            &[
                "extract",
                "--images",
                "nope",
                "--model",
                "m.onnx",
                "--batch-size",
                "0",
            ][..],
            "--batch-size",
        ),
        (
            &[
                "extract",
                "--images",
                "nope",
                "--model",
                "m.onnx",
                "--val-fraction",
                "1",
            ][..],
            "--val-fraction",
        ),
        (
            &["compare-baselines", "--features", "nope", "--C", "0"][..],
            "--C",
        ),
        (&["train-head", "--features", "nope", "--lr=-1"][..], "lr"),
        (
            &["train-head", "--features", "nope", "--name", "../x"][..],
            "--name",
        ),
        (
            &[
                "train-head",
                "--features",
                "nope",
                "--shuffle-buffer-rows",
                "0",
            ][..],
            "shuffle_buffer_rows",
        ),
        (
            &[
                "train-head",
                "--features",
                "nope",
                "--memory-budget",
                "lots",
            ][..],
            "--memory-budget",
        ),
        (
            &[
                "extract",
                "--images",
                "nope",
                "--model",
                "m.onnx",
                "--feature-dtype",
                "f8",
            ][..],
            "--feature-dtype",
        ),
    ] {
        let (code, err) = exit_of(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // 1: the command ran and failed on its inputs.
    let (code, err) = exit_of(&["train-head", "--features", "nope"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("nope"), "{err}");
    let (code, err) = exit_of(&["extract", "--images", "nope", "--model", "m.onnx"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("nope") || err.contains("m.onnx"), "{err}");
}

/// Output into a pipe whose reader is gone (`vggcache models list | head -0`) ends the command by
/// SIGPIPE, as other Unix tools do, never by a "Broken pipe" panic.
#[test]
fn writing_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let home = tempfile::tempdir().unwrap();
    // The reader is closed before the command starts, so its first write meets no reader.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = vggcache()
        .args(["models", "list"])
        .env("VGGCACHE_HOME", home.path())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "{:?}: {err}",
        out.status
    );
}
