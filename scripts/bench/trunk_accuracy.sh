#!/usr/bin/env bash
# Val accuracy of the head and the logistic baseline, and extract img/s, for one or more trunks on one
# image folder: each model extracted once, the head trained with its defaults over several seeds.
#
# Usage: scripts/bench/trunk_accuracy.sh DATA OUT MODEL.onnx [MODEL.onnx ...]
#   DATA   an image folder with train/val splits (e.g. $(python3 scripts/testdata.py catsdogs))
#   OUT    a folder for the caches, runs and results (kept, so a re-run only trains)
# Environment: BIN (default target/release/vggcache), SEEDS (3: seeds 0..SEEDS-1),
#   HEAD_ARGS (extra train-head flags, e.g. "--standardize false"), TAG (a name for HEAD_ARGS' runs).
# Prints one Markdown row per model: extract img/s, head val accuracy per seed and median, the logistic
# baseline's val accuracy (compare-baselines with its defaults, scored against the seed-0 head).
set -euo pipefail
DATA=${1:?usage: scripts/bench/trunk_accuracy.sh DATA OUT MODEL.onnx [MODEL.onnx ...]}
OUT=${2:?usage: scripts/bench/trunk_accuracy.sh DATA OUT MODEL.onnx [MODEL.onnx ...]}
shift 2
BIN=${BIN:-target/release/vggcache}
SEEDS=${SEEDS:-3}
HEAD_ARGS=${HEAD_ARGS:-}
TAG=${TAG:-default}
[[ -x "$BIN" ]] || { echo "build first: cargo build --release (or set BIN)"; exit 1; }
[[ -d "$DATA" ]] || { echo "no image folder $DATA"; exit 1; }
mkdir -p "$OUT"
echo "| model | extract img/s | head val acc (seeds 0..$((SEEDS - 1))) | head median | linfa-logistic val acc |"
echo "|---|---:|---|---:|---:|"
for model in "$@"; do
  name=$(basename "$model" .onnx)
  cache="$OUT/cache-$name"
  if [[ ! -f "$OUT/extract-$name.txt" ]]; then
    "$BIN" extract --model "$model" --images "$DATA" --out "$cache" > "$OUT/extract-$name.txt" 2>&1
  fi
  rate=$(grep -o '[0-9.]* img/s extracted' "$OUT/extract-$name.txt" | head -n 1 | cut -d' ' -f1)
  accs=()
  for s in $(seq 0 $((SEEDS - 1))); do
    run="$name-$TAG-seed$s"
    if [[ ! -f "$OUT/runs/$run/metrics.csv" ]]; then
      # shellcheck disable=SC2086
      "$BIN" train-head --features "$cache" --runs-dir "$OUT/runs" --name "$run" --seed "$s" $HEAD_ARGS \
        > "$OUT/train-$run.txt" 2>&1
    fi
    # the kept epoch's val accuracy (the head the run saved)
    accs+=("$(python3 -c 'import csv,sys; r=[x for x in csv.DictReader(open(sys.argv[1])) if x["best"]=="1"]; print("%.3f" % float(r[0]["val_acc"]))' "$OUT/runs/$run/metrics.csv")")
  done
  cmp="$OUT/compare-$name-$TAG"
  if [[ ! -f "$cmp/compare.json" ]]; then
    "$BIN" compare-baselines --features "$cache" --head "$OUT/runs/$name-$TAG-seed0" --out "$cmp" > "$cmp.txt" 2>&1
  fi
  logit=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["rows"]; print("%.3f" % next(x["accuracy"] for x in r if x["name"].startswith("linfa")))' "$cmp/compare.json")
  med=$(printf '%s\n' "${accs[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "| $name ($TAG) | $rate | ${accs[*]} | $med | $logit |"
done
