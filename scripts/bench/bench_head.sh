#!/usr/bin/env bash
# Same-run benchmark of `vggcache train-head` against the PyTorch peer (fused and default Adam).
#
# Usage: scripts/bench/bench_head.sh REAL_CACHE SYNTH_CACHE [OUT_DIR]
#   REAL_CACHE   a vggcache cache of real features (e.g. a copy of the catsdogs cache), 5 epochs
#   SYNTH_CACHE  a synthetic cache; written first if missing, by
#                `HEAD_BENCH_WRITE_CACHE=SYNTH_CACHE cargo bench --bench head` (4,000 x 25,088);
#                `-` leaves the synthetic rows out (the real cache only)
# Environment: PY (python with torch, numpy, pyarrow; default /tmp/torchvenv/bin/python;
#   `make setup-bench` makes .bench-venv/bin/python, which has them),
#   PEERS (peers.py; default: scripts/testdata.py --peers), THREADS (default 2), REPS (rounds of
#   the alternation, default 2), REAL_EPOCHS (5), SYNTH_EPOCHS (2), BIN (the vggcache binary;
#   default: built with `cargo build --release`).
# Each round runs, one after another: ours (raw features), PyTorch fused Adam, PyTorch default
# Adam on the synthetic cache, then the same three on the real cache plus ours standardized.
# Every run goes through /usr/bin/time -v (peak RSS) and is stamped with /proc/loadavg.
# The summary (medians of all epochs per side, ratios, GFLOP/s, RSS, val accuracy) is printed at
# the end by scripts/bench/bench_head_summary.py (rerunnable on OUT_DIR) and saved as OUT_DIR/summary.txt.
set -euo pipefail
REAL=${1:?usage: scripts/bench/bench_head.sh REAL_CACHE SYNTH_CACHE [OUT_DIR]}
SYNTH=${2:?usage: scripts/bench/bench_head.sh REAL_CACHE SYNTH_CACHE [OUT_DIR]}
OUT=${3:-$(mktemp -d /tmp/bench_head.XXXXXX)}
PY=${PY:-/tmp/torchvenv/bin/python}
PEERS=${PEERS:-$(python3 "$(dirname "$0")/../testdata.py" --peers)}
THREADS=${THREADS:-2}
REPS=${REPS:-2}
REAL_EPOCHS=${REAL_EPOCHS:-5}
SYNTH_EPOCHS=${SYNTH_EPOCHS:-2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
mkdir -p "$OUT"

if [[ -z "${BIN:-}" ]]; then
  cargo build --release --bin vggcache >&2
  BIN=$OUT/vggcache
  cp "$CARGO_TARGET_DIR/release/vggcache" "$BIN" # a private copy: other builds may replace it
fi
if [[ "$SYNTH" != - && ! -f "$SYNTH/manifest.json" ]]; then
  HEAD_BENCH_WRITE_CACHE=$SYNTH cargo bench --bench head >&2
fi

# run NAME CMD...: time one run, keep its stdout/stderr, log its load average and peak RSS
run() {
  local name=$1
  shift
  echo "$name start $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/log.txt"
  /usr/bin/time -v -o "$OUT/$name.time" "$@" >"$OUT/$name.out" 2>"$OUT/$name.err"
  echo "$name end $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/log.txt"
  echo "$name done $(cut -d' ' -f1-3 /proc/loadavg)" >&2
}

ours() { # ours NAME CACHE EPOCHS STANDARDIZE
  run "$1" "$BIN" train-head --features "$2" --runs-dir "$OUT/runs" --name "$1" \
    --epochs "$3" --batch-size 64 --standardize "$4" --seed 0
}
peer() { # peer NAME CACHE EPOCHS ADAM
  run "$1" "$PY" "$PEERS" head "$2" --epochs "$3" --batch 64 --adam "$4"
}

for r in $(seq 1 "$REPS"); do
  if [[ "$SYNTH" != - ]]; then
    ours "synth-ours-r$r" "$SYNTH" "$SYNTH_EPOCHS" false
    peer "synth-fused-r$r" "$SYNTH" "$SYNTH_EPOCHS" fused
    peer "synth-default-r$r" "$SYNTH" "$SYNTH_EPOCHS" default
  fi
  ours "real-ours-r$r" "$REAL" "$REAL_EPOCHS" false
  peer "real-fused-r$r" "$REAL" "$REAL_EPOCHS" fused
  peer "real-default-r$r" "$REAL" "$REAL_EPOCHS" default
  ours "real-oursstd-r$r" "$REAL" "$REAL_EPOCHS" true
done

python3 "$(dirname "$0")/bench_head_summary.py" "$OUT" "$THREADS" | tee "$OUT/summary.txt"
echo "outputs in $OUT" >&2
