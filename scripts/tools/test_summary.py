"""Summarise a `cargo test` run: passed, failed, skipped (with reasons); fail on set-up skips.

    python3 scripts/tools/test_summary.py CARGO_TEST_OUTPUT SKIP_LOG [CARGO_EXIT_CODE]

CARGO_TEST_OUTPUT is what `cargo test` printed (its `test result:` lines are summed); SKIP_LOG is
the file the tests' skip helper (tests/it/common.rs) appended to, one `kind<TAB>test<TAB>reason`
line per skip. A skipped test returns early and cargo counts it as passed, so it is moved from
"passed" to "skipped" here. Kinds: `expected` (cannot be removed on every machine: no
real images (VGGCACHE_TEST_DATA), no GPU, the opt-in torch trunk, running as root) and `setup` (set-up should have
removed it: missing python package, ONNX Runtime, default model).

Ends with one line `N passed, F failed, K skipped`. Exit status: 1 when cargo failed, a test
failed, no test result was found, or any skip is of kind `setup` (unless VGGCACHE_ALLOW_SETUP_SKIPS=1);
else 0. Standard library only.
"""
import os
import re
import sys

RESULT = re.compile(r"^test result: (\w+)\. (\d+) passed; (\d+) failed; (\d+) ignored")


def main():
    out_path, log_path = sys.argv[1], sys.argv[2]
    cargo_rc = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    passed = failed = ignored = binaries = 0
    with open(out_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            m = RESULT.match(line.strip())
            if m:
                binaries += 1
                passed += int(m.group(2))
                failed += int(m.group(3))
                ignored += int(m.group(4))
    skips = {}
    if os.path.exists(log_path):
        with open(log_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                parts = line.rstrip("\n").split("\t", 2)
                if len(parts) == 3:
                    skips.setdefault(parts[1], (parts[0], parts[2]))  # one entry per test
    setup = sorted(t for t, (k, _) in skips.items() if k == "setup")
    print()
    print(f"test summary ({binaries} test binaries; {ignored} #[ignore]d: opt-in, run with --ignored)")
    for kind in ("expected", "setup"):
        for test in sorted(t for t, (k, _) in skips.items() if k == kind):
            print(f"  skipped [{kind}] {test}: {skips[test][1]}")
    if setup and os.environ.get("VGGCACHE_ALLOW_SETUP_SKIPS") != "1":
        print(f"error: {len(setup)} test(s) skipped for a reason set-up should have removed "
              "(see [setup] above; VGGCACHE_ALLOW_SETUP_SKIPS=1 accepts them)")
    if binaries == 0:
        print("error: no `test result:` line in the cargo output")
    print(f"{passed - len(skips)} passed, {failed} failed, {len(skips)} skipped")
    bad = (cargo_rc != 0 or failed or binaries == 0
           or (setup and os.environ.get("VGGCACHE_ALLOW_SETUP_SKIPS") != "1"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
