"""Per-image cosine similarity of two vggcache caches' features (e.g. int8 trunk vs fp32 trunk), matched by path.

usage: python scripts/bench/feature_cosine.py REFERENCE_CACHE OTHER_CACHE
Prints one JSON line: images matched, cosine min / 1st percentile / median / mean, relative L2 error median,
and the worst image's path. Reads the Parquet shards with pyarrow (only committed shards: those the
manifest lists, when it lists them; otherwise every shard-*.parquet).
"""
import glob
import json
import os
import sys

import numpy as np
import pyarrow.parquet as pq


def read(cache):
    rows = {}
    for f in sorted(glob.glob(os.path.join(cache, "*.parquet"))):
        t = pq.read_table(f, columns=["path", "features"])
        paths = t.column("path").to_pylist()
        col = t.column("features").combine_chunks()
        d = col.type.list_size
        feats = col.values.to_numpy(zero_copy_only=False).reshape(-1, d)
        for p, x in zip(paths, feats):
            rows[p] = x
    return rows


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = read(sys.argv[1]), read(sys.argv[2])
    common = sorted(set(a) & set(b))
    if not common:
        sys.exit("no image path is in both caches")
    x = np.stack([a[p] for p in common]).astype(np.float64)
    y = np.stack([b[p] for p in common]).astype(np.float64)
    cos = (x * y).sum(1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
    rel = np.linalg.norm(x - y, axis=1) / np.linalg.norm(x, axis=1)
    print(json.dumps({"images": len(common), "only_in_one": len(set(a) ^ set(b)),
                      "cos_min": round(float(cos.min()), 5), "cos_p01": round(float(np.percentile(cos, 1)), 5),
                      "cos_median": round(float(np.median(cos)), 5), "cos_mean": round(float(cos.mean()), 5),
                      "rel_l2_median": round(float(np.median(rel)), 5), "worst": common[int(cos.argmin())]}))


if __name__ == "__main__":
    main()
