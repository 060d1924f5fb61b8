#!/usr/bin/env bash
# Head settings compared on one cache over several seeds: val accuracy of the kept epoch and of the last
# epoch, per seed and median, for each setting given as one quoted string of train-head flags.
#
# Usage: scripts/head_defaults.sh CACHE OUT "FLAGS" ["FLAGS" ...]
#   e.g. scripts/head_defaults.sh /tmp/cache /tmp/sweep "" "--standardize false" "--lr 1e-4"
# Environment: BIN (default target/release/vggcache), SEEDS (3: seeds 0..SEEDS-1).
# Runs are kept in OUT/runs, so a re-run only trains what is missing. Prints one Markdown row a setting.
set -euo pipefail
CACHE=${1:?usage: scripts/head_defaults.sh CACHE OUT FLAGS...}
OUT=${2:?usage: scripts/head_defaults.sh CACHE OUT FLAGS...}
shift 2
BIN=${BIN:-target/release/vggcache}
SEEDS=${SEEDS:-3}
[[ -x "$BIN" ]] || { echo "build first: cargo build --release (or set BIN)"; exit 1; }
mkdir -p "$OUT/runs"
echo "| train-head flags | kept epoch (per seed) | kept-epoch val acc (per seed) | median | last-epoch val acc (per seed) | median |"
echo "|---|---|---|---:|---|---:|"
for flags in "$@"; do
  tag=$(echo "x$flags" | tr -c 'A-Za-z0-9.\n-' '_')
  for s in $(seq 0 $((SEEDS - 1))); do
    run="h$tag-seed$s"
    if [[ ! -f "$OUT/runs/$run/metrics.csv" ]]; then
      # shellcheck disable=SC2086
      "$BIN" train-head --features "$CACHE" --runs-dir "$OUT/runs" --name "$run" --seed "$s" $flags \
        > "$OUT/$run.txt" 2>&1
    fi
  done
  python3 - "$OUT/runs" "h$tag" "$SEEDS" "${flags:-(defaults)}" <<'PY'
import csv, statistics as st, sys
runs, tag, n, flags = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
kept_ep, kept, last = [], [], []
for s in range(n):
    rows = list(csv.DictReader(open(f"{runs}/{tag}-seed{s}/metrics.csv")))
    b = next(r for r in rows if r["best"] == "1")
    kept_ep.append(b["epoch"]); kept.append(float(b["val_acc"])); last.append(float(rows[-1]["val_acc"]))
f = lambda xs: " ".join(f"{x:.3f}" for x in xs)
print(f"| `{flags}` | {' '.join(kept_ep)} | {f(kept)} | {st.median(kept):.3f} | {f(last)} | {st.median(last):.3f} |")
PY
done
