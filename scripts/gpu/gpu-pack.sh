#!/usr/bin/env bash
# Prepares what scripts/gpu/gpu-check.sh needs on the GPU machine, in two ignored folders of at most
# 64 MiB each (one device call carries one of them):
#   .gpu/   ortpack.tar.zst: onnxruntime-gpu 1.31.1's libonnxruntime.so + CUDA provider, with the GPU
#           code of other architectures than sm_90 (H100/H200) zeroed by prune_fatbin.py (58 MiB)
#   .gpu2/  vggcache.zst (release build), trunk-bench.zst (cargo bench --bench trunk --no-run),
#           vggcache-before.zst (optional: BEFORE=path/to/an/older/binary), images.tar (64 real JPEGs)
# Usage: bash scripts/gpu/gpu-pack.sh   (needs pip, zstd and the real catsdogs images, scripts/testdata.py; ~10 min on 2 cores)
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$(python3 scripts/testdata.py catsdogs)
ARCH=${GPU_ARCH:-90}
PY=${PYTHON:-python3}
mkdir -p .gpu .gpu2
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || printf '/.gpu/\n/.gpu2/\n' >> .git/info/exclude
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 -d "$W" onnxruntime-gpu==1.31.1
(cd "$W" && unzip -q -o onnxruntime_gpu-*.whl 'onnxruntime/capi/*.so*')
mkdir -p "$W/pack"
cp "$W"/onnxruntime/capi/libonnxruntime.so.1.31.1 "$W"/onnxruntime/capi/libonnxruntime_providers_shared.so "$W/pack/"
"$PY" scripts/gpu/prune_fatbin.py "$W/onnxruntime/capi/libonnxruntime_providers_cuda.so" \
  "$W/pack/libonnxruntime_providers_cuda.so" --keep-arch "$ARCH"
tar -C "$W/pack" -cf - . | zstd -T0 -19 --long=27 -q -f -o .gpu/ortpack.tar.zst

cargo build --release --locked --bin vggcache
cargo bench --locked --bench trunk --no-run 2> "$W/bench.log"
bench=$(grep -oE '[^ (]*/deps/trunk-[0-9a-f]+' "$W/bench.log" | tail -1)
strip -o "$W/vggcache" "${CARGO_TARGET_DIR:-target}/release/vggcache"
strip -o "$W/trunk-bench" "$bench"
zstd -19 -T0 -q -f "$W/vggcache" -o .gpu2/vggcache.zst
zstd -19 -T0 -q -f "$W/trunk-bench" -o .gpu2/trunk-bench.zst
if [ -n "${BEFORE:-}" ]; then strip -o "$W/before" "$BEFORE" && zstd -19 -T0 -q -f "$W/before" -o .gpu2/vggcache-before.zst; fi

mkdir -p "$W/img"
for c in cat dog; do
  find "$SRC"/val/$c -name '*.jpg' | sort | head -32 | while read -r f; do cp "$f" "$W/img/$c.$(basename "$f")"; done
done
tar -C "$W/img" -cf .gpu2/images.tar .
du -sh .gpu .gpu2
echo "then: device run 'GPU_STAGE=setup bash scripts/gpu/gpu-check.sh' carrying .gpu, and at once 'bash scripts/gpu/gpu-check.sh' carrying .gpu2"
