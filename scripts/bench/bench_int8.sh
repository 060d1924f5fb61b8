#!/usr/bin/env bash
# Lower-precision trunks on CPU against the fp32 trunk, alternating in one run (docs/BENCHMARKS.md § 10):
#   vggcache extract --device cpu --batch-size 16, end to end (whole command: session load, decode,
#     preprocess, trunk, Parquet write), N real images, one run per trunk per repeat
#   onnxruntime-python inference only (peers.py trunk, scripts/testdata.py; random input, batch 16), same trunks
# Usage: scripts/bench/bench_int8.sh [N_IMAGES] [REPEATS]        (default 48 3)
# Env: MODELS (default: ${VGGCACHE_HOME:-.vggcache}/models/vgg16.onnx ${VGGCACHE_HOME:-.vggcache}/models/vgg16-int8.onnx ${VGGCACHE_HOME:-.vggcache}/models/vgg16-fp16.onnx, those that
#   exist; the first is the reference), VGGCACHE (default $CARGO_TARGET_DIR or target, release/vggcache),
#   PEER_PY (default .venv/bin/python).
# Build the trunks first: make model QUANT=int8 CALIB=CATSDOGS/train; make model QUANT=fp16
# Prints one line per measurement and a median table; ratios are the median of per-repeat ratios to the
# reference measured in the same repeat, so load from other processes hits both sides alike.
set -u -o pipefail
cd "$(dirname "$0")/../.."
N=${1:-48}
REPEATS=${2:-3}
PY=${PEER_PY:-.venv/bin/python}
V=${VGGCACHE:-${CARGO_TARGET_DIR:-target}/release/vggcache}
PEERS=$(python3 scripts/testdata.py --peers)
SRC=$(python3 scripts/testdata.py catsdogs)
MODELS=${MODELS:-${VGGCACHE_HOME:-.vggcache}/models/vgg16.onnx ${VGGCACHE_HOME:-.vggcache}/models/vgg16-int8.onnx ${VGGCACHE_HOME:-.vggcache}/models/vgg16-fp16.onnx}
[ -f "$PEERS" ] && [ -d "$SRC" ] || { echo "skip: needs $PEERS and $SRC"; exit 0; }
[ -x "$V" ] || { echo "build first: cargo build --release (or set VGGCACHE)"; exit 1; }
present=()
for m in $MODELS; do [ -f "$m" ] && present+=("$m") || echo "not built, left out: $m"; done
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
# The same N images for every trunk: the first N/2 of each class of the train split.
for c in cat dog; do
  mkdir -p "$W/img/$c"
  find "$SRC/train/$c" -name '*.jpg' | sort | head -n $((N / 2)) | xargs -I{} cp {} "$W/img/$c/"
done
N=$(find "$W/img" -name '*.jpg' | wc -l)
grep -o -m1 -E 'avx512_vnni|avx_vnni' /proc/cpuinfo >/dev/null && vnni=yes || vnni=no
echo "images: $N; cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, VNNI $vnni; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
: > "$W/nums"
for r in $(seq "$REPEATS"); do
  for m in "${present[@]}"; do
    rm -rf "$W/cache"
    "$V" extract --images "$W/img" --out "$W/cache" --device cpu --batch-size 16 --model "$m" > "$W/a.out" 2> "$W/a.err" ||
      { echo "extract with $m failed:"; tail -5 "$W/a.err"; exit 1; }
    a=$(grep -E "img/s extracted" "$W/a.out" | sed -E 's/.*s, ([0-9.]+) img\/s.*/\1/')
    b=$("$PY" "$PEERS" trunk "$m" --batch 16 --n "$N" | sed -E 's/.*"img_per_s": ([0-9.]+).*/\1/')
    echo "repeat $r $(basename "$m" .onnx): vggcache extract $a img/s | ort-python inference-only $b img/s | load $(cut -d' ' -f1 /proc/loadavg)"
    echo "$r $(basename "$m" .onnx) $a $b" >> "$W/nums"
  done
done
python3 - "$W/nums" <<'EOF2'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
models = list(dict.fromkeys(r[1] for r in rows))
ref = models[0]
by = {(r[0], r[1]): (float(r[2]), float(r[3])) for r in rows}
reps = sorted({r[0] for r in rows})
med = lambda xs: statistics.median(xs)
print(f"| trunk | vggcache extract img/s (median of {len(reps)}) | / {ref} extract | ort-python inference-only img/s | / {ref} ort-python | vggcache extract / ort-python {ref} |")
print("|---|---:|---:|---:|---:|---:|")
for m in models:
    a = med([by[(r, m)][0] for r in reps]); b = med([by[(r, m)][1] for r in reps])
    ra = med([by[(r, m)][0] / by[(r, ref)][0] for r in reps]); rb = med([by[(r, m)][1] / by[(r, ref)][1] for r in reps])
    rp = med([by[(r, m)][0] / by[(r, ref)][1] for r in reps])
    print(f"| {m} | {a:.2f} | {ra:.2f}x | {b:.2f} | {rb:.2f}x | {rp:.2f}x |")
EOF2
