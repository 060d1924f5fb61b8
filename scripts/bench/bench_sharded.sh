#!/usr/bin/env bash
# Sharded extraction against a one-machine run, alternating in one run (docs/BENCHMARKS.md § 12):
#   one   vggcache extract, one process, 2 ONNX Runtime threads
#   local vggcache plan --shards 2, both shards at once (1 thread each), cache commit; root on local disk
#   s3    the same with the root on a real S3 server (moto's, started here on 127.0.0.1)
# each over the same N real images, the default trunk, whole commands timed (plan and commit included).
# Usage: scripts/bench/bench_sharded.sh [N_IMAGES] [REPEATS]        (default 48 3)
# Env: VGGCACHE (default $CARGO_TARGET_DIR or target, release/vggcache), MODEL (${VGGCACHE_HOME:-.vggcache}/models/vgg16.onnx).
# Prints one line per measurement, then medians and each mode's median ratio to `one` in the same repeat.
set -u -o pipefail
cd "$(dirname "$0")/../.."
N=${1:-48}
REPEATS=${2:-3}
V=${VGGCACHE:-${CARGO_TARGET_DIR:-target}/release/vggcache}
M=${MODEL:-${VGGCACHE_HOME:-.vggcache}/models/vgg16.onnx}
PY=.venv/bin/python
SRC=$(python3 scripts/testdata.py catsdogs)
[ -d "$SRC" ] || { echo "skip: needs $SRC"; exit 0; }
[ -x "$V" ] || { echo "build first: cargo build --release (or set VGGCACHE)"; exit 1; }
[ -x .venv/bin/moto_server ] || { echo "run make setup first (moto[server])"; exit 1; }
W=$(mktemp -d)
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
.venv/bin/moto_server -H 127.0.0.1 -p "$PORT" > "$W/moto.log" 2>&1 &
MOTO=$!
trap 'kill $MOTO 2>/dev/null; rm -rf "$W"' EXIT
export AWS_ENDPOINT=http://127.0.0.1:$PORT AWS_ALLOW_HTTP=true AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1
for _ in $(seq 100); do $PY -c "import socket; socket.create_connection(('127.0.0.1',$PORT))" 2>/dev/null && break; sleep 0.2; done
$PY -c "import boto3; boto3.client('s3', endpoint_url='$AWS_ENDPOINT', region_name='us-east-1', aws_access_key_id='x', aws_secret_access_key='x').create_bucket(Bucket='bench')"
for c in cat dog; do
  mkdir -p "$W/img/$c"
  find "$SRC/train/$c" -name '*.jpg' | sort | head -n $((N / 2)) | xargs -I{} cp {} "$W/img/$c/"
done
N=$(find "$W/img" -name '*.jpg' | wc -l)
echo "images: $N; $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
now() { date +%s.%N; }
: > "$W/nums"
for r in $(seq "$REPEATS"); do
  rm -rf "$W/one"
  t0=$(now)
  "$V" extract --images "$W/img" --out "$W/one" --device cpu --threads 2 --model "$M" > /dev/null 2> "$W/err" || { cat "$W/err"; exit 1; }
  one=$(echo "$(now) - $t0" | bc)
  echo "repeat $r one: $one s"
  for mode in local s3; do
    if [ $mode = local ]; then root="$W/root-$r"; else root="s3://bench/run-$r"; fi
    t0=$(now)
    "$V" plan --images "$W/img" --out "$root" --shards 2 --device cpu --model "$M" > /dev/null 2> "$W/err" || { cat "$W/err"; exit 1; }
    "$V" extract --plan "$root" --shard 0/2 --device cpu --threads 1 --model "$M" > "$W/s0" 2>&1 & p0=$!
    "$V" extract --plan "$root" --shard 1/2 --device cpu --threads 1 --model "$M" > "$W/s1" 2>&1 & p1=$!
    wait $p0 || { cat "$W/s0"; exit 1; }
    wait $p1 || { cat "$W/s1"; exit 1; }
    tc=$(now)
    "$V" cache commit "$root" > "$W/commit" 2>&1 || { cat "$W/commit"; exit 1; }
    t1=$(now)
    dt=$(echo "$t1 - $t0" | bc); commit=$(echo "$t1 - $tc" | bc)
    echo "repeat $r $mode: $dt s (commit $commit s)"
    echo "$r $mode $dt $one $commit" >> "$W/nums"
  done
done
$PY - "$W/nums" "$N" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1])]
n = int(sys.argv[2])
ones = sorted({(r[0], float(r[3])) for r in rows})
print(f"\nmode   median s   img/s   median ratio to one (same repeat)   commit s")
o = st.median(v for _, v in ones)
print(f"one    {o:8.1f}  {n/o:6.2f}   1.00")
for mode in ("local", "s3"):
    sel = [r for r in rows if r[1] == mode]
    t = st.median(float(r[2]) for r in sel)
    ratio = st.median(float(r[3]) / float(r[2]) for r in sel)
    c = st.median(float(r[4]) for r in sel)
    print(f"{mode:6} {t:8.1f}  {n/t:6.2f}   {ratio:.2f} (one's time / {mode}'s)          {c:.2f}")
PY
