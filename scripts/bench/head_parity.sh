#!/usr/bin/env bash
# Accuracy parity of `vggcache train-head` with the PyTorch peer head, over several seeds.
#
# Usage: scripts/bench/head_parity.sh CACHE [SEEDS] [OUT_DIR]
#   CACHE  a vggcache cache with train and val rows (e.g. the catsdogs VGG16 cache)
#   SEEDS  how many seeds per side (default 10: seeds 0..SEEDS-1)
# Environment: PY (python with torch, numpy, pyarrow; default /tmp/torchvenv/bin/python),
#   PEERS (default: scripts/testdata.py --peers), BIN (the vggcache binary; default target/release/vggcache),
#   EPOCHS (5), BATCH (64), THREADS (2).
#
# Both sides train the same head the same way: raw features (`--standardize false`), Adam 1e-3,
# batch 64, 5 epochs, dropout 0.5, the cache's train split, scored on its val split at the last epoch.
# peers.py fixes `torch.manual_seed(0)`; to give the peer other seeds without editing it, this script
# runs it through `runpy` with `torch.manual_seed` pinned to the wanted seed (its code is unchanged).
# One seed is one sample of a noisy quantity (raw VGG16 features reach ~1,000, the first epoch's loss
# is in the hundreds), so the comparison is between the two seed distributions: mean, std, and a
# Welch 95% interval for the difference of means. Printed at the end and saved as OUT_DIR/summary.txt.
set -euo pipefail
CACHE=${1:?usage: scripts/bench/head_parity.sh CACHE [SEEDS] [OUT_DIR]}
SEEDS=${2:-10}
OUT=${3:-$(mktemp -d /tmp/head_parity.XXXXXX)}
PY=${PY:-/tmp/torchvenv/bin/python}
PEERS=${PEERS:-$(python3 "$(dirname "$0")/../testdata.py" --peers)}
BIN=${BIN:-target/release/vggcache}
EPOCHS=${EPOCHS:-5}
BATCH=${BATCH:-64}
THREADS=${THREADS:-2}
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS
[[ -f "$PEERS" ]] || { echo "skip: needs $PEERS"; exit 0; }
[[ -x "$BIN" ]] || { echo "build first: cargo build --release (or set BIN)"; exit 1; }
mkdir -p "$OUT"

for s in $(seq 0 $((SEEDS - 1))); do
  "$BIN" train-head --features "$CACHE" --runs-dir "$OUT/runs" --name "seed$s" --standardize false \
    --epochs "$EPOCHS" --batch-size "$BATCH" --seed "$s" > "$OUT/ours-$s.out" 2>&1
  "$PY" - "$PEERS" "$s" "$CACHE" "$EPOCHS" "$BATCH" > "$OUT/peer-$s.json" <<'EOF'
import runpy, sys, torch
peers, seed, cache, epochs, batch = sys.argv[1:]
pin = torch.manual_seed
torch.manual_seed = lambda _ignored: pin(int(seed))  # peers.py calls torch.manual_seed(0)
sys.argv = [peers, "head", cache, "--epochs", epochs, "--batch", batch, "--adam", "fused"]
runpy.run_path(peers, run_name="__main__")
EOF
  echo "seed $s: ours $(tail -n 1 "$OUT/runs/seed$s/metrics.csv" | cut -d, -f5) peer $(
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["epochs"][-1]["val_acc"])' "$OUT/peer-$s.json")"
done

python3 - "$OUT" "$SEEDS" <<'EOF' | tee "$OUT/summary.txt"
import csv, json, math, statistics as st, sys
out, n = sys.argv[1], int(sys.argv[2])
ours, kept, peer = [], [], []
for s in range(n):
    rows = list(csv.DictReader(open(f"{out}/runs/seed{s}/metrics.csv")))
    ours.append(float(rows[-1]["val_acc"]))
    kept.append(float(next(r for r in rows if r["best"] == "1")["val_acc"]))
    peer.append(json.load(open(f"{out}/peer-{s}.json"))["epochs"][-1]["val_acc"])
print("| seed | vggcache, last epoch | vggcache, kept epoch | PyTorch peer, last epoch |")
print("|---:|---:|---:|---:|")
for s in range(n):
    print(f"| {s} | {ours[s]:.3f} | {kept[s]:.3f} | {peer[s]:.3f} |")
def ms(x): return st.mean(x), (st.stdev(x) if len(x) > 1 else float("nan"))
for name, x in (("vggcache last", ours), ("vggcache kept", kept), ("PyTorch last", peer)):
    m, sd = ms(x)
    print(f"{name}: mean {m:.4f}, std {sd:.4f}, median {st.median(x):.4f}, min {min(x):.3f}, max {max(x):.3f}")
(mo, so), (mp, sp) = ms(ours), ms(peer)
se = math.sqrt(so**2 / n + sp**2 / n)
# Welch-Satterthwaite degrees of freedom; t quantile 0.975 from a small table (df >= 30: 2.04)
df = se**4 / ((so**2 / n) ** 2 / (n - 1) + (sp**2 / n) ** 2 / (n - 1)) if se > 0 else 1e9
t = next(v for d, v in ((4, 2.776), (6, 2.447), (8, 2.306), (10, 2.228), (12, 2.179), (16, 2.120),
                        (20, 2.086), (30, 2.042), (1e12, 1.960)) if df <= d)
d = mo - mp
print(f"difference of means (vggcache - PyTorch), last epoch: {d * 100:+.2f} points, "
      f"95% interval [{(d - t * se) * 100:+.2f}, {(d + t * se) * 100:+.2f}] (Welch, df {df:.1f})")
EOF
