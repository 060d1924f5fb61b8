"""Read a vggcache feature cache back with pyarrow, polars and DuckDB; print one JSON object.

    python scripts/reference/check_cache.py CACHE_DIR

Finds shards the way the peers script (peers.py) does (every **/*.parquet under CACHE_DIR) and reports,
for each library that is installed: the feature column's type, and per row (keyed by path) the
split, label, class, content_hash, number of features and every feature value (float32 widened to
float64, so the JSON numbers convert back to the same float32 exactly).
A library that is missing is reported as {"missing": "..."}; one that fails as {"error": "..."}.
Used by tests/it/cache.rs (test `python_readers_agree`) to check the numbers against the Rust reader.
"""
import glob
import json
import os
import sys


def rows_from(paths, splits, labels, classes, hashes, feats):
    out = {}
    for p, s, l, c, h, f in zip(paths, splits, labels, classes, hashes, feats):
        out[p] = {"split": s, "label": None if l is None else int(l), "class": c, "content_hash": h,
                  "n": int(len(f)), "features": [float(x) for x in f]}
    return out


def with_pyarrow(files):
    import pyarrow as pa
    import pyarrow.parquet as pq
    t = pa.concat_tables([pq.read_table(f) for f in files])
    ftype = t.schema.field("features").type
    col = t.column("features").combine_chunks()
    X = col.values.to_numpy(zero_copy_only=False).reshape(-1, ftype.list_size)
    out = {"features_type": str(ftype), "label_type": str(t.schema.field("label").type),
           "fixed_size_list": pa.types.is_fixed_size_list(ftype), "rows": {}}
    for i, p in enumerate(t.column("path").to_pylist()):
        out["rows"][p] = {"split": t.column("split")[i].as_py(), "label": t.column("label")[i].as_py(),
                          "class": t.column("class")[i].as_py(), "content_hash": t.column("content_hash")[i].as_py(),
                          "n": int(X.shape[1]), "features": [float(x) for x in X[i]]}
    return out


def with_polars(files):
    import polars as pl
    df = pl.read_parquet(files)
    feats = df["features"].to_list()
    out = {"features_type": str(df.schema["features"]), "label_type": str(df.schema["label"])}
    out["rows"] = rows_from(df["path"].to_list(), df["split"].to_list(), df["label"].to_list(),
                            df["class"].to_list(), df["content_hash"].to_list(), feats)
    return out


def with_duckdb(files):
    import duckdb
    con = duckdb.connect()
    rel = con.sql(f"select path, split, label, class, content_hash, features from read_parquet({files!r})")
    types = dict(zip(rel.columns, [str(t) for t in rel.types]))
    r = rel.fetchall()
    out = {"features_type": types["features"], "label_type": types["label"]}
    out["rows"] = rows_from(*zip(*r)) if r else {}
    return out


def main():
    cache = sys.argv[1]
    files = sorted(glob.glob(os.path.join(cache, "**", "*.parquet"), recursive=True))
    report = {"files": [os.path.relpath(f, cache) for f in files]}
    for name, fn, mod in (("pyarrow", with_pyarrow, "pyarrow"), ("polars", with_polars, "polars"),
                          ("duckdb", with_duckdb, "duckdb")):
        try:
            __import__(mod)
        except ImportError as e:
            report[name] = {"missing": str(e)}
            continue
        try:
            report[name] = fn(files)
        except Exception as e:  # report, don't hide
            report[name] = {"error": f"{type(e).__name__}: {e}"}
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
