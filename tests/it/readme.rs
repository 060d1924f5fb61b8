//! README.md for users: at most 150 lines, no `../shared` path (nor in the user docs), and every
//! `vggcache …` command it shows names a subcommand and flags that the built binary's `--help`
//! lists (`scripts/tools/check_readme.py`).

use std::process::Command;

use crate::common;

/// The README's length limit (issue 33).
const MAX_LINES: usize = 150;

/// The docs written for users (docs/BENCHMARKS.md and docs/development.md name the test data).
const USER_DOCS: [&str; 10] = [
    "README.md",
    "docs/install.md",
    "docs/trunks.md",
    "docs/cache-format.md",
    "docs/streaming.md",
    "docs/baselines.md",
    "docs/gpu.md",
    "docs/report.md",
    "docs/views.md",
    "docs/two-trunks.md",
];

#[test]
fn readme_is_short_and_has_no_checkout_paths() {
    let path = common::root().join("README.md");
    let text = std::fs::read_to_string(&path).expect("README.md");
    let lines = text.lines().count();
    assert!(
        lines <= MAX_LINES,
        "{} has {lines} lines, more than {MAX_LINES}: move detail to docs/",
        path.display()
    );
    for doc in USER_DOCS {
        let p = common::root().join(doc);
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert!(
            !text.contains("../shared"),
            "{} mentions ../shared, a folder users do not have",
            p.display()
        );
    }
}

#[test]
fn readme_commands_use_flags_the_binary_has() {
    let Some(python) = common::python_with("readme_commands_use_flags_the_binary_has", &[]) else {
        return;
    };
    let out = Command::new(python)
        .arg(common::root().join("scripts/tools/check_readme.py"))
        .arg(env!("CARGO_BIN_EXE_vggcache"))
        .arg(common::root().join("README.md"))
        .output()
        .expect("run scripts/tools/check_readme.py");
    let text = common::text(&out);
    assert!(
        out.status.success(),
        "README commands do not match --help:\n{text}"
    );
    assert!(
        text.contains("ok: "),
        "check_readme.py printed no verdict:\n{text}"
    );
}
