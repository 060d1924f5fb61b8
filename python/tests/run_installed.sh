#!/bin/sh
# Installs the wheel $1 into a fresh virtual environment outside the checkout (pip's cache
# used; onnxruntime and numpy from PyPI) and runs python/tests with pytest from a temporary
# folder, with the checkout on no search path: the checkout is reached only through the data
# paths below. Called by `make test-python`; further arguments go to pytest (e.g. -k doctor). PYTHON picks the interpreter (default python3).
set -eu
wheel=$1
shift
checkout=$(cd "$(dirname "$0")/../.." && pwd)
py=${PYTHON:-python3}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vggcache-pytest.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
$py -m venv "$tmp/venv" 2>/dev/null || $py -m virtualenv -q "$tmp/venv"
start=$(date +%s)
"$tmp/venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel" \
    -r "$checkout/python/requirements-test.txt"
echo "test-python: installed $(basename "$wheel") and the test requirements in $(( $(date +%s) - start )) s"
cp -R "$checkout/python/tests" "$tmp/tests"
cd "$tmp"
# The model store is an empty temporary one (make exports the checkout's .vggcache as VGGCACHE_HOME).
env -u PYTHONPATH -u ORT_DYLIB_PATH -u VIRTUAL_ENV \
    VGGCACHE_HOME="$tmp/store" \
    VGGCACHE_CHECKOUT="$checkout" \
    VGGCACHE_TEST_FIXTURES="$checkout/tests/fixtures" \
    VGGCACHE_EXAMPLES="$checkout/examples" \
    VGGCACHE_TEST_DATA="${VGGCACHE_TEST_DATA:-$checkout/../shared/data}" \
    "$tmp/venv/bin/python" -m pytest -q -rs -p no:cacheprovider tests "$@"
