//! Shared test harness: project paths, the project's python, ONNX Runtime discovery, and skips that
//! show (`VGGCACHE-SKIP` on stderr plus one line in a skip log that `make test` summarises).
//!
//! Every test module reaches it as `crate::common`.

use std::fmt::Display;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why a test skipped, which decides whether CI accepts it (`scripts/tools/test_summary.py`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Why {
    /// Cannot be removed by set-up on every machine: no real images ([`test_data`]), no GPU, the opt-in torch
    /// trunk not built, running as root. Listed in the summary; CI passes.
    Expected,
    /// Set-up (`make test` → `make setup model`) should have removed it: a missing python package,
    /// no ONNX Runtime library, no default model. Listed in the summary; CI fails.
    Setup,
}

impl Why {
    fn as_str(self) -> &'static str {
        match self {
            Why::Expected => "expected",
            Why::Setup => "setup",
        }
    }
}

/// The skip log: `$VGGCACHE_SKIP_LOG`, else `vggcache-skips.tsv` in the profile folder of the
/// running test binary (`target/debug/`, beside `deps/`).
pub fn skip_log() -> PathBuf {
    if let Some(p) = std::env::var_os("VGGCACHE_SKIP_LOG") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test binary path");
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| Path::new("."))
        .join("vggcache-skips.tsv")
}

/// The test binary's name without cargo's hash suffix (`cache-0123abcd` → `cache`).
fn binary_name() -> String {
    let exe = std::env::current_exe().expect("test binary path");
    let stem = exe
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
        _ => stem,
    }
}

/// Records that `test` skips (call it, then `return`): prints `VGGCACHE-SKIP` with the kind and
/// reason to stderr and appends `kind \t binary::test \t reason` to [`skip_log`].
pub fn skip(test: &str, why: Why, reason: impl Display) {
    let reason = reason.to_string().replace(['\t', '\n'], " ");
    // libtest names each test's thread after the test's path (`dataset::unreadable_file_is_skipped`).
    let name = std::thread::current()
        .name()
        .filter(|n| n.ends_with(test))
        .map_or_else(|| format!("{}::{test}", binary_name()), String::from);
    eprintln!("VGGCACHE-SKIP {} {name}: {reason}", why.as_str());
    let log = skip_log();
    if let Some(dir) = log.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // One write of one short line per call: appends from parallel tests do not interleave.
    let line = format!("{}\t{name}\t{reason}\n", why.as_str());
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!("VGGCACHE-SKIP could not append to {}: {e}", log.display());
    }
}

/// The crate root (`CARGO_MANIFEST_DIR`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/fixtures/<rel>`; committed, so its absence is a failure, not a skip.
pub fn fixture(rel: &str) -> PathBuf {
    let p = root().join("tests/fixtures").join(rel);
    assert!(p.exists(), "committed fixture {} missing", p.display());
    p
}

/// The shared tiny trunk (`scripts/fixtures/make_tiny_trunk.py`).
pub fn tiny_trunk() -> PathBuf {
    fixture("tiny_trunk.onnx")
}

/// `Some(p)` when `present`; otherwise a skip of `test` of kind `why`, the reason being `p` and `what`.
fn present_or_skip(test: &str, p: PathBuf, present: bool, why: Why, what: &str) -> Option<PathBuf> {
    if present {
        return Some(p);
    }
    skip(test, why, format!("{} {what}", p.display()));
    None
}

/// The folder of real labelled image sets (`catsdogs/`, `catsdogs-gray/`): `$VGGCACHE_TEST_DATA`,
/// else `../shared/data` beside the checkout when it exists. The only place tests learn where
/// real data lives.
pub fn test_data_root() -> Option<PathBuf> {
    match std::env::var_os("VGGCACHE_TEST_DATA") {
        Some(p) if !p.is_empty() => Some(PathBuf::from(p)),
        _ => Some(root().join("../shared/data")).filter(|p| p.is_dir()),
    }
}

/// `<test data>/<rel>` (see [`test_data_root`]) when it is a folder; otherwise an `expected` skip
/// of `test` that says which variable to set.
pub fn test_data(test: &str, rel: &str) -> Option<PathBuf> {
    let Some(base) = test_data_root() else {
        skip(
            test,
            Why::Expected,
            format!(
                "no real images: set VGGCACHE_TEST_DATA to a folder holding {rel}/ \
                 (default ../shared/data, absent here)"
            ),
        );
        return None;
    };
    let p = base.join(rel);
    let dir = p.is_dir();
    present_or_skip(
        test,
        p,
        dir,
        Why::Expected,
        "absent (real images: VGGCACHE_TEST_DATA, default ../shared/data)",
    )
}

/// The project's python (`$VGGCACHE_PYTHON`, else `.venv/bin/python`) when it imports every module
/// of `modules`; otherwise a `setup` skip of `test` naming what is missing.
pub fn python_with(test: &str, modules: &[&str]) -> Option<PathBuf> {
    let p = std::env::var_os("VGGCACHE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"));
    if !p.exists() {
        skip(
            test,
            Why::Setup,
            format!("{} missing (run `make setup`)", p.display()),
        );
        return None;
    }
    let missing: Vec<&str> = modules
        .iter()
        .copied()
        .filter(|m| {
            !Command::new(&p)
                .args(["-c", &format!("import {m}")])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .collect();
    if missing.is_empty() {
        Some(p)
    } else {
        skip(
            test,
            Why::Setup,
            format!(
                "{} cannot import {} (run `make setup-test`: requirements/runtime.txt + requirements/test.txt)",
                p.display(),
                missing.join(", ")
            ),
        );
        None
    }
}

/// The ONNX Runtime library (the search of `vggcache::trunk::find_library`) and the process's
/// environment on it; otherwise a `setup` skip of `test`.
pub fn ort(test: &str) -> Option<(PathBuf, &'static ort::environment::Environment)> {
    let found = vggcache::trunk::find_library(None).map_err(|e| e.to_string());
    let found = found.and_then(|vggcache::store::Resolved { path: lib, .. }| {
        vggcache::trunk::shared_environment(None)
            .map(|env| (lib, env))
            .map_err(|e| e.to_string())
    });
    match found {
        Ok(v) => Some(v),
        Err(e) => {
            skip(
                test,
                Why::Setup,
                format!("no ONNX Runtime library ({e}); set ORT_DYLIB_PATH or run `make setup`"),
            );
            None
        }
    }
}

/// Trunk `name` as vggcache finds it (`--trunk NAME`: the model store, `VGGCACHE_HOME`), which
/// `make test` fills (`vgg16`, `vgg16-hed`); otherwise a `setup` skip of `test` with the lookup's
/// message.
pub fn default_model(test: &str, name: &str) -> Option<PathBuf> {
    match vggcache::store::model_path(None, name) {
        Ok(p) => Some(p),
        Err(e) => {
            skip(
                test,
                Why::Setup,
                format!("{e} (`make test` builds it: `make model`, `make model TRUNK={name}`)"),
            );
            None
        }
    }
}

/// Writes `v` as raw little-endian float32 (the format of the reference scripts' tensors).
pub fn write_f32(path: &Path, v: &[f32]) {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Reads raw little-endian float32 written by a reference script.
pub fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Trunk features `got` against a reference `want` (same length): max |diff| at most `rel` of the
/// largest reference value, the reference not empty, and partly zero as ReLU features are.
pub fn assert_features_close(got: &[f32], want: &[f32], rel: f32) {
    assert_eq!(got.len(), want.len(), "feature counts differ");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(scale > 0.0, "reference features are all zero");
    let max_diff = got
        .iter()
        .zip(want)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        max_diff <= rel * scale,
        "max |diff| {max_diff} vs max |ref| {scale} (allowed {rel} of it)"
    );
    let zeros = want.iter().filter(|v| **v == 0.0).count() as f64 / want.len() as f64;
    assert!(
        zeros > 0.05 && zeros < 0.99,
        "ReLU features should be partly zero, got {zeros}"
    );
}

/// Runs `vggcache extract` on the CPU (one thread) with `model` over `images` into `out`.
pub fn extract(model: &Path, images: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vggcache"))
        .args(["extract", "--device", "cpu", "--threads", "1", "--model"])
        .arg(model)
        .arg("--images")
        .arg(images)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run vggcache")
}

/// A command's stdout then stderr, as text.
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The first `n` files (sorted by name) of `dir`; fails when it holds fewer.
pub fn first_images(dir: &Path, n: usize) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    files.truncate(n);
    assert_eq!(
        files.len(),
        n,
        "expected at least {n} images in {}",
        dir.display()
    );
    files
}

/// `files` through vggcache's own decode and `spec`'s preprocessing: `(files.len(), 3, h, w)`.
pub fn preprocessed_batch(files: &[PathBuf], spec: &vggcache::spec::PreprocessSpec) -> Vec<f32> {
    let len = spec.tensor_len();
    let mut x = vec![0f32; files.len() * len];
    for (f, out) in files.iter().zip(x.chunks_exact_mut(len)) {
        let img = vggcache::dataset::decode_rgb8(f, &Default::default())
            .unwrap_or_else(|e| panic!("decode {}: {e}", f.display()));
        vggcache::dataset::preprocess_into(&img, spec, out);
    }
    x
}

/// Features from a reference script run on the batch `x` of `n` images: `python scripts/reference/SCRIPT
/// ARGS.. IN.f32 N OUT.f32` (the calling convention of `ort_reference.py`, `wheel_reference.py
/// forward` and `numpy_vgg16.py`); fails the test when the script fails, with its output.
pub fn reference_features(
    py: &Path,
    script: &str,
    args: &[&std::ffi::OsStr],
    x: &[f32],
    n: usize,
) -> Vec<f32> {
    let dir = tempfile::tempdir().expect("temp dir");
    let (inp, outp) = (dir.path().join("x.f32"), dir.path().join("y.f32"));
    write_f32(&inp, x);
    let out = Command::new(py)
        .arg(root().join("scripts/reference").join(script))
        .args(args)
        .arg(&inp)
        .arg(n.to_string())
        .arg(&outp)
        .output()
        .unwrap_or_else(|e| panic!("run scripts/reference/{script}: {e}"));
    assert!(
        out.status.success(),
        "scripts/reference/{script} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    read_f32(&outp)
}

/// Headless Chromium (`$VGGCACHE_CHROMIUM`, else `chromium` on the PATH, which `make test`
/// installs from Debian's packages when it runs as root with apt). Otherwise a skip of `test`:
/// `setup` where apt could have installed it, `expected` where it cannot.
pub fn chromium(test: &str) -> Option<PathBuf> {
    let exe = std::env::var_os("VGGCACHE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("chromium"));
    let works = Command::new(&exe)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Some(exe);
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let apt = Path::new("/usr/bin/apt-get").exists();
    let (why, how) = if root && apt {
        (
            Why::Setup,
            "`make test` installs Debian's chromium package (apt-get install chromium)",
        )
    } else {
        (
            Why::Expected,
            "it cannot be installed here (needs root and apt-get): install chromium or set VGGCACHE_CHROMIUM",
        )
    };
    skip(
        test,
        why,
        format!("no headless Chromium ({}): {how}", exe.display()),
    );
    None
}

/// A real S3 server for the test that starts it: moto's server from PyPI (`moto[server]`, in the
/// project venv), on 127.0.0.1 at a free port, with one bucket. Stopped (killed and reaped) on drop.
pub struct S3Server {
    child: std::process::Child,
    pub endpoint: String,
    pub bucket: String,
}

impl S3Server {
    /// The `AWS_*` settings that point vggcache (and object_store) at this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", "vggcache-test"),
            ("AWS_SECRET_ACCESS_KEY", "vggcache-test"),
            ("AWS_REGION", "us-east-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts an [`S3Server`] (bounded: 60 s to answer), or a `setup` skip of `test` when the venv
/// has no moto server.
pub fn s3_server(test: &str) -> Option<S3Server> {
    let py = python_with(test, &["moto.server", "boto3"])?;
    let exe = py.with_file_name("moto_server");
    if !exe.exists() {
        skip(
            test,
            Why::Setup,
            format!("{} missing (run `make setup`)", exe.display()),
        );
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = Command::new(&exe)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start moto_server");
    let server = S3Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        bucket: "vggcache-test".into(),
    };
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "moto_server did not answer on port {port} in 60 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let made = Command::new(&py)
        .args([
            "-c",
            "import boto3,sys; boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
             aws_access_key_id='vggcache-test', aws_secret_access_key='vggcache-test')\
             .create_bucket(Bucket=sys.argv[2])",
            &server.endpoint,
            &server.bucket,
        ])
        .output()
        .expect("run python");
    assert!(made.status.success(), "create bucket: {}", text(&made));
    Some(server)
}
