//! The binary as a user runs it: exit codes and messages for the runtime and model errors.

use std::process::Command;

mod common;

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
        err.contains("cannot load ONNX Runtime") && err.contains("make setup"),
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
