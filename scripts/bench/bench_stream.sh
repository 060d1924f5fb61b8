#!/usr/bin/env bash
# Issue 19's measurements: train-head streaming vs in memory, and f16 vs f32 caches.
#
# Usage: scripts/bench/bench_stream.sh F32_CACHE F16_CACHE SYNTH_CACHE [OUT_DIR]
#   F32_CACHE   catsdogs extracted as f32: vggcache extract --images CATSDOGS --out F32_CACHE
#   F16_CACHE   the same with --feature-dtype f16
#   SYNTH_CACHE a synthetic cache of 10,000 x 25,088 (ReLU-of-Gaussian, 9,091 train / 909 val);
#               written first if missing, by `HEAD_BENCH_ROWS=9091 HEAD_BENCH_WRITE_CACHE=SYNTH_CACHE
#               cargo bench --bench head`
# Environment: BIN (the vggcache binary; default: cargo build --release), REPS (alternation
#   rounds, default 3), SEEDS (head seeds for the f16/f32 accuracy, default "0 1 2").
# Every run goes through /usr/bin/time -v (peak RSS) and is stamped with /proc/loadavg; runs of
# the compared sides alternate within each round. The summary (medians) is printed at the end by
# the python block below and saved as OUT_DIR/summary.txt.
set -euo pipefail
F32=${1:?usage: scripts/bench/bench_stream.sh F32_CACHE F16_CACHE SYNTH_CACHE [OUT_DIR]}
F16=${2:?usage: scripts/bench/bench_stream.sh F32_CACHE F16_CACHE SYNTH_CACHE [OUT_DIR]}
SYNTH=${3:?usage: scripts/bench/bench_stream.sh F32_CACHE F16_CACHE SYNTH_CACHE [OUT_DIR]}
OUT=${4:-$(mktemp -d /tmp/bench_stream.XXXXXX)}
REPS=${REPS:-3}
SEEDS=${SEEDS:-0 1 2}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
mkdir -p "$OUT"

if [[ -z "${BIN:-}" ]]; then
  cargo build --release --bin vggcache >&2
  BIN=$OUT/vggcache
  cp "$CARGO_TARGET_DIR/release/vggcache" "$BIN" # a private copy: other builds may replace it
fi
if [[ ! -f "$SYNTH/manifest.json" ]]; then
  HEAD_BENCH_ROWS=9091 HEAD_BENCH_WRITE_CACHE=$SYNTH cargo bench --bench head >&2
fi

# run NAME CMD...: one timed run; stdout/stderr in OUT/NAME.{out,err}, load in OUT/NAME.load
run() {
  local name=$1; shift
  cat /proc/loadavg > "$OUT/$name.load"
  /usr/bin/time -v "$@" > "$OUT/$name.out" 2> "$OUT/$name.err"
  cat /proc/loadavg >> "$OUT/$name.load"
}

rm -rf "$OUT/runs"
# 1. Epoch time and peak RSS: in memory, streamed with a buffer of every row, streamed with a
#    small buffer; catsdogs (default head, 2 epochs) and the synthetic cache (hidden 64, 2 epochs).
for r in $(seq 1 "$REPS"); do
  for mode in memory stream-all stream-256; do
    case $mode in
      memory) flags=() ;;
      stream-all) flags=(--stream --shuffle-buffer-rows 4096) ;;
      stream-256) flags=(--stream --shuffle-buffer-rows 256) ;;
    esac
    run "cd-$mode-$r" "$BIN" train-head --features "$F32" --runs-dir "$OUT/runs" \
      --name "cd-$mode-$r" --epochs 2 "${flags[@]}"
  done
  for mode in memory stream-1024; do
    case $mode in
      memory) flags=() ;;
      stream-1024) flags=(--stream --shuffle-buffer-rows 1024) ;;
    esac
    run "syn-$mode-$r" "$BIN" train-head --features "$SYNTH" --runs-dir "$OUT/runs" \
      --name "syn-$mode-$r" --epochs 2 --hidden 64 --lr 1e-3 "${flags[@]}"
  done
done
# 2. f16 vs f32: read speed (cache verify decodes every row; open hashes every shard first).
for r in $(seq 1 "$REPS"); do
  for dt in f32 f16; do
    cache=$F32; [[ $dt == f16 ]] && cache=$F16
    run "verify-$dt-$r" "$BIN" cache verify --features "$cache"
  done
done
# 3. f16 vs f32: val accuracy of the head (default settings, each seed) and of linfa-logistic.
for s in $SEEDS; do
  for dt in f32 f16; do
    cache=$F32; [[ $dt == f16 ]] && cache=$F16
    run "head-$dt-$s" "$BIN" train-head --features "$cache" --runs-dir "$OUT/runs" \
      --name "head-$dt-$s" --seed "$s"
  done
done
first=$(echo "$SEEDS" | awk '{print $1}')
for dt in f32 f16; do
  cache=$F32; [[ $dt == f16 ]] && cache=$F16
  run "compare-$dt" "$BIN" compare-baselines --features "$cache" --head "$OUT/runs/head-$dt-$first" \
    --out "$OUT/compare-$dt"
done

python3 - "$OUT" "$F32" "$F16" "$SYNTH" <<'EOF' | tee "$OUT/summary.txt"
import csv, glob, json, os, re, statistics, sys
out, f32, f16, synth = sys.argv[1:5]
med = statistics.median

def rss_mb(name):
    t = open(f"{out}/{name}.err").read()
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) * 1024 / 1e6

def wall(name):
    t = open(f"{out}/{name}.err").read()
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (?:(\d+):)?(\d+):([\d.]+)", t)
    return int(m.group(1) or 0) * 3600 + int(m.group(2)) * 60 + float(m.group(3))

def epochs(run):
    with open(f"{out}/runs/{run}/metrics.csv") as f:
        return [float(r["seconds"]) for r in csv.DictReader(f)]

def load(name):
    return open(f"{out}/{name}.load").read().split()[0]

def size(cache):
    m = json.load(open(f"{cache}/manifest.json"))
    return sum(s["bytes"] for s in m["shards"]), sum(s["rows"] for s in m["shards"]), m["dim"]

print("## epoch seconds (median over runs and epochs) and peak RSS (median over runs)")
print("| cache | mode | epoch s | vs memory | peak RSS MB | runs |")
print("|---|---|---|---|---|---|")
for tag, cache, modes in [("cd", "catsdogs f32 (800 train / 200 val), default head", ["memory", "stream-all", "stream-256"]),
                          ("syn", "synthetic 10,000 x 25,088, hidden 64", ["memory", "stream-1024"])]:
    base = None
    for mode in modes:
        names = sorted(os.path.basename(p)[:-4] for p in glob.glob(f"{out}/{tag}-{mode}-*.err"))
        if not names:
            continue
        ep = med([s for n in names for s in epochs(n)])
        base = base or ep
        print(f"| {cache} | {mode} | {ep:.2f} | {ep / base:.2f}x | {med([rss_mb(n) for n in names]):.0f} | {len(names)} |")

print("\n## f16 vs f32 (catsdogs)")
b32, rows, dim = size(f32)
b16, _, _ = size(f16)
print(f"shards: f32 {b32 / 1e6:.1f} MB, f16 {b16 / 1e6:.1f} MB: {b16 / b32:.3f}x ({rows} rows x {dim})")
for dt in ["f32", "f16"]:
    names = sorted(os.path.basename(p)[:-4] for p in glob.glob(f"{out}/verify-{dt}-*.err"))
    w = med([wall(n) for n in names])
    print(f"cache verify {dt}: median {w:.2f} s over {len(names)} runs = {rows * dim * 4 / w / 1e9:.2f} GB/s of f32 features (load {', '.join(load(n) for n in names)})")
for dt in ["f32", "f16"]:
    accs = []
    for p in sorted(glob.glob(f"{out}/runs/head-{dt}-*/metrics.csv")):
        rows_ = list(csv.DictReader(open(p)))
        best = min(rows_, key=lambda r: float(r["val_loss"]))
        accs.append(float(best["val_acc"]))
    cmp = open(f"{out}/compare-{dt}/compare.md").read()
    lg = re.search(r"\|\s*linfa-logistic[^|]*\|\s*([\d.]+)", cmp)
    print(f"{dt}: head val acc (best epoch) per seed {accs}, median {med(accs):.4f}; linfa-logistic {lg.group(1) if lg else '?'}")
EOF
