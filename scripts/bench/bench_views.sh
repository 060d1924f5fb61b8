#!/usr/bin/env bash
# Augmented views, test-time augmentation and two trunks on one labelled image set (issue 34; docs/views.md,
# docs/BENCHMARKS.md section 21): the head (3 seeds, train-head's defaults) and linfa-logistic (the
# default C rule) on plain rows, K augmented views, with and without TTA, and VGG16 + EfficientNet-Lite0.
#
# Usage: scripts/bench/bench_views.sh IMAGES WORK [K ...]      (K default: 2 4 8, ascending)
# Env: BIN (default target/release/vggcache), SEEDS (default "0 1 2"), EFFNET (default 1: the two-trunk
#   rows; needs `vggcache models install efficientnet-lite0`, which needs torch), PYTHON (python3).
# Layout under WORK: plain/ (the plain cache), k$K/ (a copy of the previous cache with --views K
#   --tta-views added: only the new views are extracted), eff/, runs/, cmp/, logs/. Every extract goes
#   through /usr/bin/time -v (wall, peak RSS) into logs/. The table: scripts/bench/views_table.py WORK.
set -euo pipefail
IMAGES=${1:?usage: scripts/bench/bench_views.sh IMAGES WORK [K ...]}
WORK=${2:?usage: scripts/bench/bench_views.sh IMAGES WORK [K ...]}
shift 2
KS=("$@")
[ ${#KS[@]} -gt 0 ] || KS=(2 4 8)
BIN=${BIN:-target/release/vggcache}
SEEDS=${SEEDS:-0 1 2}
mkdir -p "$WORK/logs" "$WORK/runs" "$WORK/cmp"
log() { echo "$(date -u +%H:%M:%S) $*"; }
timed() { local name=$1; shift; /usr/bin/time -v "$@" > "$WORK/logs/$name.log" 2>&1; }
head_runs() { # NAME CACHE FLAGS...: train-head once per seed, its summary in logs/NAME-sSEED.log
  local name=$1 cache=$2; shift 2
  for s in $SEEDS; do
    "$BIN" train-head --features "$cache" --runs-dir "$WORK/runs" --name "$name-s$s" --seed "$s" "$@" \
      > "$WORK/logs/$name-s$s.log" 2>&1
  done
}
linfa() { # NAME HEAD_RUN FLAGS...: compare-baselines with a given head (so no head is trained)
  local name=$1 run=$2; shift 2
  "$BIN" compare-baselines --head "$WORK/runs/$run" --out "$WORK/cmp/$name" "$@" > "$WORK/logs/cmp-$name.log" 2>&1
}

log "plain cache"
[ -f "$WORK/plain/cache/manifest.json" ] || timed extract-plain "$BIN" extract --images "$IMAGES" --out "$WORK/plain/cache"
prev=$WORK/plain/cache
for K in "${KS[@]}"; do
  log "views K=$K (+ test-time views)"
  if [ ! -f "$WORK/k$K/cache/manifest.json" ]; then
    mkdir -p "$WORK/k$K" && cp -a "$prev" "$WORK/k$K/cache"
    timed "extract-k$K" "$BIN" extract --images "$IMAGES" --out "$WORK/k$K/cache" --views "$K" --tta-views
  fi
  prev=$WORK/k$K/cache
done
first=$WORK/k${KS[0]}/cache
log "heads"
head_runs plain "$first" --views plain --tta
for K in "${KS[@]}"; do head_runs "k$K" "$WORK/k$K/cache" --tta; done
log "linfa-logistic"
first_seed=${SEEDS%% *}
linfa plain plain-s"$first_seed" --features "$first"
linfa plain-tta plain-s"$first_seed" --features "$first" --tta
for K in "${KS[@]}"; do
  linfa "k$K-all" "k$K-s$first_seed" --features "$WORK/k$K/cache" --logistic-views all
  linfa "k$K-all-tta" "k$K-s$first_seed" --features "$WORK/k$K/cache" --logistic-views all --tta
done
if [ "${EFFNET:-1}" = 1 ]; then
  log "two trunks: VGG16 + EfficientNet-Lite0"
  [ -f "$WORK/eff/cache/manifest.json" ] || timed extract-eff "$BIN" extract --trunk efficientnet-lite0 --images "$IMAGES" --out "$WORK/eff/cache"
  head_runs eff "$WORK/eff/cache"
  head_runs vggeff "$WORK/plain/cache" --features "$WORK/eff/cache"
  linfa eff eff-s"$first_seed" --features "$WORK/eff/cache"
  linfa vggeff vggeff-s"$first_seed" --features "$WORK/plain/cache" --features "$WORK/eff/cache"
  linfa vggeff-std vggeff-s"$first_seed" --features "$WORK/plain/cache" --features "$WORK/eff/cache" --logistic-standardize
fi
du -sbD "$WORK"/*/cache > "$WORK/logs/sizes.txt"
log "done"
"${PYTHON:-python3}" "$(dirname "$0")/views_table.py" "$WORK"
