"""Benchmark: `open_cache(CACHE).features(split)` beside pyarrow reading the same Parquet files
into one numpy array (the issue 32 bar: <= 1.1x pyarrow's time, one copy of the features).

    python python/benches/features.py CACHE [--split train] [--runs 7]

Run it in an environment with the installed wheel and pyarrow (e.g. the venv of
python/tests/run_installed.sh). Each method runs in its own subprocess per run (cold Python
objects, warm page cache after a first untimed read); the median wall time and the median peak
RSS growth over the run are reported. The pyarrow peer is its fast path: each file read, its
Float32 values viewed without a copy, the split's rows copied once into a preallocated array;
with pyarrow's threads (`pyarrow`) and without (`pyarrow-1t`, faster on a busy machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, resource, sys, time
import numpy as np
method, cache, split = sys.argv[1:4]
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if method == "vggcache":
    import vggcache
    c = vggcache.open_cache(cache)           # opens and verifies (sha256 of every shard)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    x, y, paths = c.features(split)
    dt = time.perf_counter() - t
else:
    import pyarrow.parquet as pq
    m = json.load(open(f"{cache}/manifest.json"))
    files = [f"{cache}/{s['file']}" for s in m["shards"]]
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    threads = method == "pyarrow"
    tables = [pq.read_table(f, columns=["split", "label", "path", "features"], use_threads=threads)
              for f in files]
    masks = [np.asarray(tb.column("split").to_numpy(zero_copy_only=False) == split) for tb in tables]
    dim = tables[0].schema.field("features").type.list_size
    x = np.empty((sum(int(k.sum()) for k in masks), dim), dtype=np.float32)
    at = 0
    for tb, k in zip(tables, masks):
        col = tb.column("features")
        start = 0
        for chunk in col.chunks:
            n = len(chunk)
            vals = chunk.values.to_numpy().reshape(n, dim)   # zero-copy view of the Float32 buffer
            kk = k[start:start + n]
            c = int(kk.sum())
            np.compress(kk, vals, axis=0, out=x[at:at + c])
            at += c
            start += n
    y = np.concatenate([np.asarray(tb.column("label").to_numpy(zero_copy_only=False))[k] for tb, k in zip(tables, masks)])
    paths = sum((np.asarray(tb.column("path").to_pylist(), dtype=object)[k].tolist() for tb, k in zip(tables, masks)), [])
    dt = time.perf_counter() - t
rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": dt, "peak_rss_growth_mb": (rss1 - rss0) / 1024, "shape": list(x.shape),
                  "feature_mb": x.nbytes / 2**20, "checksum": float(x[:, :64].sum(dtype=np.float64))}))
"""


def run(method: str, cache: str, split: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, method, cache, split], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cache")
    ap.add_argument("--split", default="train")
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    methods = ("vggcache", "pyarrow", "pyarrow-1t")
    for m in methods:
        run(m, a.cache, a.split)  # warm the page cache
    res = {m: [] for m in methods}
    for _ in range(a.runs):
        for m in res:  # interleaved, so drift hits both alike
            res[m].append(run(m, a.cache, a.split))
    assert len({rs[0]["checksum"] for rs in res.values()}) == 1, "different features"
    print(f"cache {a.cache}, split {a.split}: {res['vggcache'][0]['shape']} float32 "
          f"({res['vggcache'][0]['feature_mb']:.1f} MiB), median of {a.runs} runs, {os.cpu_count()} CPUs")
    med = {}
    for m, rs in res.items():
        med[m] = statistics.median(r["seconds"] for r in rs)
        rss = statistics.median(r["peak_rss_growth_mb"] for r in rs)
        print(f"  {m:<10} {med[m] * 1e3:8.1f} ms   peak RSS growth {rss:7.1f} MiB")
    best = min(med["pyarrow"], med["pyarrow-1t"])
    print(f"  ratio vggcache / fastest pyarrow: {med['vggcache'] / best:.2f}x")


if __name__ == "__main__":
    main()
