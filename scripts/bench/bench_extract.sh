#!/usr/bin/env bash
# End-to-end `vggcache extract` (CPU) beside its peers from peers.py (scripts/testdata.py), alternating in one run:
#   A  vggcache extract --device cpu           decode + preprocess + trunk + Parquet write, N real images
#   B  peers.py trunk                           onnxruntime-python inference only, pre-decoded tensors
#   C  peers.py pipeline                        PyTorch DataLoader(num_workers=2) PIL decode -> onnxruntime
#   D  peers.py decode / vggcache decode bench  decode + resize only (1 process)
# Usage: scripts/bench/bench_extract.sh [N_IMAGES|all] [REPEATS]   (all: the whole data set, train and val;
# env PEER_PY: a python with the peers' requirements, incl. torch for C; VGGCACHE: the release binary;
# default target/release/vggcache)
# Prints one line per measurement and a median table; ratios are A / peer from the same run.
# A is reported over the whole extraction phase and after its first batch (the inference-only peer
# times after one warm-up run, so that pair compares like with like), with the trunk's busy share.
set -u -o pipefail
cd "$(dirname "$0")/../.."
N=${1:-64}
REPEATS=${2:-3}
PY=${PEER_PY:-.venv/bin/python}
V=${VGGCACHE:-target/release/vggcache}
PEERS=$(python3 scripts/testdata.py --peers)
MODEL=${VGGCACHE_HOME:-.vggcache}/models/vgg16.onnx
SRC=$(python3 scripts/testdata.py catsdogs)
[ -f "$PEERS" ] && [ -d "$SRC" ] || { echo "skip: needs $PEERS and $SRC"; exit 0; }
[ -x "$V" ] || { echo "build first: cargo build --release (or set VGGCACHE)"; exit 1; }
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
if [ "$N" = all ]; then
  # The whole data set as it is (ImageFolder: train/ and val/ splits).
  cp -r "$SRC" "$W/img"
  N=$(find "$W/img" -name '*.jpg' | wc -l)
else
  # The same N images for everyone: the first N/2 of each class of the train split.
  for c in cat dog; do
    mkdir -p "$W/img/$c"
    find "$SRC/train/$c" -name '*.jpg' | sort | head -n $((N / 2)) | xargs -I{} cp {} "$W/img/$c/"
  done
fi
echo "images: $(find "$W/img" -name '*.jpg' | wc -l); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
: > "$W/results"
for r in $(seq "$REPEATS"); do
  rm -rf "$W/cache"
  "$V" extract --images "$W/img" --out "$W/cache" --device cpu --batch-size 16 > "$W/a.out" 2> "$W/a.err"
  a=$(grep -E "^$N/$N images" "$W/a.err" | sed -E 's/.*, ([0-9.]+) img\/s.*/\1/')
  aw=$(grep -E "img/s extracted" "$W/a.out" | sed -E 's/.*s, ([0-9.]+) img\/s.*/\1/')
  # "trunk busy T s of the P s extraction phase (..%); K batches, first F s (done at D s, B images)"
  read -r tb ph fd fb < <(grep -E "^trunk busy" "$W/a.out" |
    sed -E 's/trunk busy ([0-9.]+) s of the ([0-9.]+) s .*done at ([0-9.]+) s, ([0-9]+) images.*/\1 \2 \3 \4/')
  # after the first batch, like the inference-only peer (which times after a warm-up run)
  as=$(python3 -c "print(f'{($N - $fb) / ($ph - $fd):.3f}')")
  busy=$(python3 -c "print(f'{100 * $tb / $ph:.1f}')")
  b=$("$PY" "$PEERS" trunk "$MODEL" --batch 16 --n "$N" | sed -E 's/.*"img_per_s": ([0-9.]+).*/\1/')
  c=$("$PY" "$PEERS" pipeline "$MODEL" "$W/img" --batch 16 2>/dev/null | sed -E 's/.*"img_per_s": ([0-9.]+).*/\1/')
  echo "repeat $r: vggcache extraction $a img/s (whole command $aw; after the first batch $as; trunk busy $busy%) | ort-python inference-only $b | DataLoader(2)+ORT ${c:-n/a} | load $(cut -d' ' -f1 /proc/loadavg)" | tee -a "$W/results"
  echo "$a $aw $b ${c:-nan} $as $busy" >> "$W/nums"
done
python3 - "$W/nums" <<'EOF'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
med = [statistics.median(c) for c in zip(*rows)]
a, aw, b, c, a_s, busy = med
print("| measure (median of %d) | img/s | vggcache / peer |" % len(rows))
print("|---|---:|---:|")
print(f"| vggcache extract, extraction phase | {a:.2f} | |")
print(f"| vggcache extract, whole command (session load, hashing, fsync) | {aw:.2f} | |")
print(f"| vggcache extract, after the first batch (the peer below times after a warm-up run) | {a_s:.2f} | {a_s / b:.3f} |")
print(f"| trunk busy share of the extraction phase | {busy:.1f}% | |")
print(f"| onnxruntime-python inference only, batch 16 | {b:.2f} | {a / b:.3f} |")
print(f"| DataLoader(2) + onnxruntime | {c:.2f} | {a / c:.3f} |")
EOF
