#!/usr/bin/env bash
# The GPU check of `vggcache extract` (issue 6), run ON the GPU machine from the repo root:
#   bash scripts/gpu/gpu-check.sh            (what scripts/gpu/gpu-pack.sh prepared, in .gpu/ and .gpu2/)
#   GPU_STAGE=setup bash scripts/gpu/gpu-check.sh   first call: unpack ONNX Runtime from .gpu/ into $GPU_WORK
#                                         and make the trunk; a second call (same warm
#                                         machine) carries .gpu2/ and runs the rest. Two calls because one
#                                         call carries at most 64 MiB and the CUDA provider alone is 58 MiB.
# Checks that the CUDA execution provider is really used (--device cuda refuses to fall back to the
# CPU), compares CUDA features with CPU features of the same images, and times end-to-end extraction
# for batch 16/64/256 beside PyTorch's own VGG16 (torchvision, same weights, same GPU) in the same call.
# Needs there: nvidia driver, python3 with torch + torchvision + onnx + pyarrow + pillow (the device image).
# .gpu/ holds: ortpack.tar.zst (onnxruntime-gpu 1.31.1's libonnxruntime + CUDA provider, other GPU
# architectures than sm_90 zeroed by scripts/gpu/prune_fatbin.py), vggcache (release build), vggcache-before
# (optional: the previous build, to measure a change), trunk-bench (cargo bench --bench trunk --no-run),
# images.tar (real JPEGs, replicated here to GPU_IMAGES files).
set -u -o pipefail
# A carried file, from .gpu/ or .gpu2/ (whichever call brought it).
g() { for d in .gpu .gpu2; do [ -f "$d/$1" ] && { echo "$d/$1"; return; }; done; echo "/nonexistent/$1"; }
W=${GPU_WORK:-/tmp/vgg-gpu}
OUT=${OUT:-$W/out}
N=${GPU_IMAGES:-8192}
BATCHES=${GPU_BATCHES:-16 64 256}
DEV=${GPU_DEVICE:-cuda}        # cpu: a dry run of this script on a machine without a GPU
SMALL=${GPU_SMALL:-64}         # images in the CPU/GPU agreement check
mkdir -p "$W" "$OUT"
say() { echo "== $*"; }
T0=$(date +%s)

say "device"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv,noheader
nproc; python3 -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, torch.cuda.get_device_name(0))'

say "ONNX Runtime GPU libraries"
if [ ! -f "$W/ort/libonnxruntime.so.1.31.1" ]; then
  mkdir -p "$W/ort"
  if command -v zstd >/dev/null; then zstd -dc "$(g ortpack.tar.zst)" | tar -C "$W/ort" -xf - ; else
    python3 -c 'import pyarrow as pa, sys
with pa.CompressedInputStream(pa.OSFile(sys.argv[1]), "zstd") as f:
    while (c := f.read(1 << 24)): sys.stdout.buffer.write(c)' "$(g ortpack.tar.zst)" | tar -C "$W/ort" -xf - ; fi
fi
ls -la "$W/ort"
export ORT_DYLIB_PATH="$W/ort/libonnxruntime.so.1.31.1"
SP=$(python3 -c 'import site; print(site.getsitepackages()[0])')
VGGCACHE_CUDA_LIBS=$(find "$SP/nvidia" -maxdepth 3 -type d -name lib | tr '\n' ':')
export VGGCACHE_CUDA_LIBS LD_LIBRARY_PATH="$VGGCACHE_CUDA_LIBS${LD_LIBRARY_PATH:-}"
for b in vggcache vggcache-before trunk-bench; do
  z=$(g "$b.zst")
  if [ -f "$z" ] && [ ! -x "$W/$b" ]; then
    zstd -dc "$z" > "$W/$b" 2>/dev/null || python3 -c 'import pyarrow as pa, sys
with pa.CompressedInputStream(pa.OSFile(sys.argv[1]), "zstd") as f: sys.stdout.buffer.write(f.read())' "$z" > "$W/$b"
    chmod +x "$W/$b"
  fi
done
V="$W/vggcache"

say "trunk (torchvision vgg16 random init -> ONNX with vggcache's converter)"
[ -f "$W/vgg16_trunk.onnx" ] || python3 scripts/gpu/gpu_torch.py make-trunk "$W" || exit 1
ls -la "$W"; echo "CUDA lib dirs: $VGGCACHE_CUDA_LIBS"; command -v zstd || echo "no zstd CLI (pyarrow used)"
if [ "${GPU_STAGE:-all}" = setup ]; then
  say "setup done in $(( $(date +%s) - T0 )) s"; exit 0
fi
[ -f "$W/ort/libonnxruntime.so.1.31.1" ] && [ -x "$V" ] || { echo "setup missing (cold machine?): run GPU_STAGE=setup first"; exit 3; }
"$V" doctor --model "$W/vgg16_trunk.onnx" 2>&1 | tee "$OUT/doctor.txt"

say "images"
if [ ! -d "$W/big" ]; then
  mkdir -p "$W/src" && tar -C "$W/src" -xf "$(g images.tar)"
  python3 - "$W/src" "$W/big" "$W/small" "$N" "$SMALL" <<'EOF'
import os, shutil, sys
src, big, small, n, k = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
files = sorted(os.path.join(r, f) for r, _, fs in os.walk(src) for f in fs if f.endswith(".jpg"))
for i in range(n):  # replicas of real JPEGs: the same decode work per file as distinct photos
    f = files[i % len(files)]; cls = "cat" if "cat" in os.path.basename(f) else "dog"
    os.makedirs(os.path.join(big, cls), exist_ok=True)
    shutil.copyfile(f, os.path.join(big, cls, f"{cls}.{i}.jpg"))
for f in files[:k]:
    cls = "cat" if "cat" in os.path.basename(f) else "dog"
    os.makedirs(os.path.join(small, cls), exist_ok=True); shutil.copyfile(f, os.path.join(small, cls, os.path.basename(f)))
print(len(files), "source JPEGs ->", n, "files in", big)
EOF
fi

say "CUDA provider really used, and agreement with CPU ($SMALL images; $(( $(date +%s) - T0 )) s in)"
if [ -z "${GPU_SKIP_AGREE:-}" ]; then
rm -rf "$W/c-cpu" "$W/c-cuda"
"$V" extract --model "$W/vgg16_trunk.onnx" --device cpu --images "$W/small" --out "$W/c-cpu" 2>&1 | tail -4
"$V" extract --model "$W/vgg16_trunk.onnx" --device "$DEV" --images "$W/small" --out "$W/c-cuda" 2>&1 | tee "$OUT/cuda-small.txt" | grep -E "provider|img/s|error" | tail -4
grep -q "provider CUDA" "$OUT/cuda-small.txt" && echo "CUDA provider confirmed in use" || echo "CUDA PROVIDER NOT CONFIRMED"
python3 scripts/gpu/gpu_torch.py agree "$W/c-cuda" "$W/c-cpu" | tee "$OUT/agree.json"
fi

say "vggcache extract end to end, $N images, --device cuda ($(( $(date +%s) - T0 )) s in)"
: > "$OUT/ours.txt"
# Runs: BIN:BATCH[:OPTS], OPTS comma-separated: nhwc (VGGCACHE_CUDA_NHWC=1), s1/s2/s3 (--sessions),
# null (the null trunk: the pipeline's ceiling without VGG16's work). vggcache-before is the previous
# build, measured in the same call (it has no --sessions and no "last row written" line).
RUNS=${GPU_RUNS:-"vggcache:16 vggcache:64 vggcache:256 vggcache:64:s2 vggcache:256:s2 vggcache:64:nhwc vggcache:64:null vggcache:256:null vggcache-before:64 vggcache-before:256"}
for run in $RUNS; do
  IFS=: read -r bin b opt <<< "$run"
  [ -x "$W/$bin" ] || continue
  model="$W/vgg16_trunk.onnx"; nhwc=0; extra=()
  for o in ${opt//,/ }; do
    case $o in
      nhwc) nhwc=1 ;;
      null) model="$W/null_trunk.onnx" ;;
      s[0-9]) extra+=(--sessions "${o#s}") ;;
    esac
  done
  rm -rf "$W/c-big"
  s=$(date +%s.%N)
  VGGCACHE_CUDA_NHWC=$nhwc "$W/$bin" extract --model "$model" --device "$DEV" --batch-size "$b" --shard-rows 512 \
    "${extra[@]}" --images "$W/big" --out "$W/c-big" > "$W/run.out" 2> "$W/run.err"
  rc=$?; e=$(date +%s.%N)
  steady=$(grep -E "^$N/$N images" "$W/run.err" | tail -1 | sed -E 's/.*, ([0-9.]+) img\/s.*/\1/')
  written=$(grep -E "^last row written" "$W/run.out" | sed -E 's/.*s: ([0-9.]+) img\/s.*/\1/')
  summary=$(grep -E "img/s extracted" "$W/run.out" | sed -E 's/.*s, ([0-9.]+) img\/s.*/\1/')
  busy=$(grep -oE "extraction phase \([0-9.]+%[^)]*\)" "$W/run.out")
  prov=$(grep -oE "provider [A-Za-z]+" "$W/run.out" | head -1)
  echo "$bin batch=$b ${opt:-default} rc=$rc process_wall_s=$(awk "BEGIN{printf \"%.1f\", $e - $s}") command_img_s=$summary to_last_row_img_s=${written:-n/a} to_last_inference_img_s=$steady $prov $busy" | tee -a "$OUT/ours.txt"
  { echo "--- $run"; grep -vE "^[0-9]+/[0-9]+ images" "$W/run.err" | tail -4; cat "$W/run.out"; } >> "$OUT/runs.log"
  [ $rc -eq 0 ] || tail -5 "$W/run.err"
done

say "vggcache trunk only (random input already in host memory; H2D + D2H copies included; $(( $(date +%s) - T0 )) s in)"
: > "$OUT/trunk.txt"
if [ -x "$W/trunk-bench" ] && [ -z "${GPU_SKIP_TRUNK:-}" ]; then
  for v in "1 0" "2 0" "1 1"; do
    read -r ses nhwc <<< "$v"
    echo "sessions=$ses nhwc=$nhwc:" | tee -a "$OUT/trunk.txt"
    VGGCACHE_CUDA_NHWC=$nhwc VGGCACHE_BENCH_SESSIONS=$ses VGGCACHE_BENCH_DEVICE="$DEV" VGGCACHE_BENCH_MODEL="$W/vgg16_trunk.onnx" \
      VGGCACHE_BENCH_BATCHES="${BATCHES// /,}" VGGCACHE_BENCH_IMAGES="${GPU_BENCH_IMAGES:-2048}" VGGCACHE_BENCH_REPEATS=3 \
      "$W/trunk-bench" 2>&1 | grep -E "^\||provider" | tee -a "$OUT/trunk.txt"
  done
fi

say "PyTorch peer (same weights, same GPU, same images; $(( $(date +%s) - T0 )) s in)"
: > "$OUT/torch.jsonl"
[ -n "${GPU_SKIP_PEER:-}" ] || PEER_WORKERS=$(nproc) python3 scripts/gpu/gpu_torch.py peer "$W" "$W/big" $BATCHES 2>&1 | grep -v Warning | tee "$OUT/torch.jsonl"

say "summary (total $(( $(date +%s) - T0 )) s)"
cat "$OUT/ours.txt"
cat "$OUT/trunk.txt"
grep -h "img_per_s" "$OUT/torch.jsonl"
cat "$OUT/agree.json"
say "ratios (vggcache / PyTorch, this call)"
python3 scripts/gpu/gpu_ratios.py "$OUT" | tee "$OUT/ratios.md"
