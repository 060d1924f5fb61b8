#!/usr/bin/env bash
# linfa-logistic beside scikit-learn's lbfgs on real cached features, one after the other in one run:
#   scripts/bench/logreg_parity.sh OUT CACHE [MORE_TRAIN_CACHE ...]
# Env: TRAIN_ROWS (a seeded sample of the train rows; default all), C (default 1.0), REPEATS (3),
# PYTHON (needs numpy, scikit-learn, pyarrow; default .venv/bin/python).
# Writes OUT/sklearn.jsonl and OUT/linfa.txt (JSON lines + a Markdown table); docs/BENCHMARKS.md.
set -euo pipefail
out=$1; shift
py=${PYTHON:-.venv/bin/python}
args=()
for c in "$@"; do args+=(--cache "$c"); done
[ -n "${TRAIN_ROWS:-}" ] && args+=(--train-rows "$TRAIN_ROWS")
mkdir -p "$out"
"$py" scripts/reference/logreg_parity.py "$out" "${args[@]}" --C "${C:-1.0}" --repeats "${REPEATS:-3}" | tee "$out/sklearn.jsonl"
VGGCACHE_PARITY_DIR="$out" VGGCACHE_BENCH_REPEATS="${REPEATS:-3}" cargo bench --locked --quiet --bench logreg | tee "$out/linfa.txt"
