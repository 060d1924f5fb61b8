"""Synthetic parity check of vggcache's linfa logistic baseline against scikit-learn.

Writes a few synthetic train/val sets to OUT_DIR (raw little-endian float32 features, uint32 labels,
meta.json), fits scikit-learn's LogisticRegression(C, lbfgs, max_iter=1000) on each -- the same call as
`peers.py logreg` (the peers script, scripts/testdata.py) -- and records its val accuracy, log loss and fit time in meta.json.
The Rust side then reads the same files and fits linfa with l2 = 1/C:

    python3 scripts/reference/logreg_parity.py /tmp/parity          # needs numpy + scikit-learn
    VGGCACHE_PARITY_DIR=/tmp/parity cargo test --test it baseline::sklearn_parity -- --nocapture

`--small` writes the CI-sized cases instead (seconds on both sides); tests/it/baseline.rs
`sklearn_parity` runs the script with it into a temp dir when VGGCACHE_PARITY_DIR is not set.
scikit-learn's val probabilities go to NAME.sk_proba_val.bin (float32, (n_val, classes)).

Real features instead of synthetic ones (needs pyarrow too):

    python3 scripts/reference/logreg_parity.py OUT --cache CACHE [--cache MORE_TRAIN ...] [--train-rows N]
        [--C 1.0] [--repeats 3]
    cargo bench --locked --bench logreg       # reads OUT from VGGCACHE_PARITY_DIR (scripts/bench/logreg_parity.sh)

writes two cases on the same split, `cache_raw` and `cache_std` (StandardScaler fitted on the train
rows, then the same LogisticRegression; its fit time includes the scaler's, as vggcache's includes
its standardisation): train = the `train` rows of the first --cache and every labelled row of the
others (a seeded sample of N of them with --train-rows), val = the `val` rows of the first. Fit times are medians of --repeats fits.
Every case records `standardize`; the synthetic ones are raw.
"""
import json, os, statistics, sys, time
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def make(rng, n, d, k, spread, relu):
    """k Gaussian classes in d dims, class means ~ N(0, spread^2), unit noise; optionally ReLU'd."""
    means = rng.normal(0.0, spread, size=(k, d))
    y = rng.integers(0, k, size=n)
    x = means[y] + rng.normal(size=(n, d))
    if relu:
        x = np.maximum(x, 0.0)
    return x.astype(np.float32), y.astype(np.uint32)


CASES = [
    # name, n_train, n_val, d, classes, spread, relu, C
    ("binary_d256", 1000, 500, 256, 2, 0.08, False, 1.0),
    ("multi4_d128", 1200, 600, 128, 4, 0.12, False, 1.0),
    ("binary_d4096_relu_C0.01", 800, 400, 4096, 2, 0.03, True, 0.01),
    ("multi3_d2048_relu", 900, 450, 2048, 3, 0.04, True, 1.0),
]

SMALL = [
    ("binary_d64", 600, 300, 64, 2, 0.15, False, 1.0),
    ("multi4_d128", 800, 400, 128, 4, 0.15, False, 1.0),
    ("binary_d512_relu_C0.01", 500, 250, 512, 2, 0.08, True, 0.01),
    ("multi3_d256_relu_C0.1", 600, 300, 256, 3, 0.12, True, 0.1),
]


def read_cache(cache):
    """`(x: (n, d) float32, y: (n,) int64 or -1 unlabelled, split: (n,) str)` of a vggcache cache:
    the shards its manifest lists (the only ones a reader may trust), in manifest order."""
    import pyarrow as pa, pyarrow.parquet as pq
    with open(os.path.join(cache, "manifest.json")) as f:
        files = [os.path.join(cache, s["file"]) for s in json.load(f)["shards"]]
    if not files:
        sys.exit(f"no shards listed in {cache}/manifest.json")
    # Caches written before the writer unified view columns may mix shards with and without them.
    t = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
    fcol = next(n for n in t.column_names if pa.types.is_fixed_size_list(t.schema.field(n).type))
    col = t.column(fcol).combine_chunks()
    x = col.values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, col.type.list_size)
    y = np.array([-1 if v is None else v for v in t.column("label").to_pylist()], dtype=np.int64)
    return x, y, np.array(t.column("split").to_pylist())


def write_case(out, name, xtr, ytr, xva, yva):
    for arr, f in ((xtr, "x_train"), (ytr, "y_train"), (xva, "x_val"), (yva, "y_val")):
        arr.astype(arr.dtype.newbyteorder("<")).tofile(os.path.join(out, f"{name}.{f}.bin"))


def fit_sklearn(xtr, ytr, xva, yva, C, standardize, repeats):
    """sklearn's lbfgs fit `repeats` times: (scores of the last fit, its val probabilities)."""
    secs = []
    for _ in range(repeats):
        lr = LogisticRegression(C=C, max_iter=1000)
        m = make_pipeline(StandardScaler(), lr) if standardize else lr
        t = time.perf_counter()
        m.fit(xtr, ytr)
        secs.append(time.perf_counter() - t)
    p = m.predict_proba(xva)
    k = p.shape[1]
    return {"val_acc": float((p.argmax(1) == yva).mean()),
            "val_log_loss": float(log_loss(yva, p, labels=list(range(k)))),
            "fit_sec": statistics.median(secs), "fit_secs": secs,
            "n_iter": int(np.max(lr.n_iter_))}, p


def cache_cases(out, caches, train_rows, C, repeats):
    parts = [read_cache(c) for c in caches]
    x0, y0, s0 = parts[0]
    va = (s0 == "val") & (y0 >= 0)
    xva, yva = x0[va], y0[va]
    # The first cache's train rows, then every labelled row of the others (extra training images).
    keep = [(s == "train") & (y >= 0) if i == 0 else y >= 0 for i, (x, y, s) in enumerate(parts)]
    xtr = np.concatenate([x[k] for (x, _, _), k in zip(parts, keep)])
    ytr = np.concatenate([y[k] for (_, y, _), k in zip(parts, keep)])
    if train_rows:
        keep = np.sort(np.random.default_rng(0).choice(len(ytr), size=train_rows, replace=False))
        xtr, ytr = xtr[keep], ytr[keep]
    k = int(max(ytr.max(), yva.max())) + 1
    write_case(out, "cache", xtr, ytr.astype(np.uint32), xva, yva.astype(np.uint32))
    meta = []
    for standardize in (False, True):
        name = "cache_std" if standardize else "cache_raw"
        sk, p = fit_sklearn(xtr, ytr, xva, yva, C, standardize, repeats)
        p.astype("<f4").tofile(os.path.join(out, f"{name}.sk_proba_val.bin"))
        meta.append({"name": name, "files": "cache", "n_train": len(ytr), "n_val": len(yva),
                     "d": xtr.shape[1], "n_classes": k, "C": C, "standardize": standardize,
                     "caches": caches, "sklearn": sk})
        print(json.dumps(meta[-1]))
    return meta


def main():
    argv = sys.argv[1:]
    opts = {"--cache": [], "--train-rows": None, "--C": "1.0", "--repeats": "1"}
    args = []
    while argv:
        a = argv.pop(0)
        if a == "--cache":
            opts[a].append(argv.pop(0))
        elif a in opts:
            opts[a] = argv.pop(0)
        elif a != "--small":
            args.append(a)
    cases = SMALL if "--small" in sys.argv[1:] else CASES
    out = args[0] if args else "/tmp/parity"
    os.makedirs(out, exist_ok=True)
    if opts["--cache"]:
        rows = int(opts["--train-rows"]) if opts["--train-rows"] else None
        meta = cache_cases(out, opts["--cache"], rows, float(opts["--C"]), int(opts["--repeats"]))
        with open(os.path.join(out, "meta.json"), "w") as f:
            json.dump({"sklearn_version": __import__("sklearn").__version__, "cases": meta}, f, indent=1)
        return
    meta = []
    for i, (name, ntr, nva, d, k, spread, relu, C) in enumerate(cases):
        rng = np.random.default_rng(1234 + i)
        x, y = make(rng, ntr + nva, d, k, spread, relu)
        xtr, ytr, xva, yva = x[:ntr], y[:ntr], x[ntr:], y[ntr:]
        write_case(out, name, xtr, ytr, xva, yva)
        for standardize in (False, True):
            case = name + ("_std" if standardize else "")
            sk, p = fit_sklearn(xtr, ytr.astype(np.int64), xva, yva.astype(np.int64), C, standardize,
                                int(opts["--repeats"]))
            p.astype("<f4").tofile(os.path.join(out, f"{case}.sk_proba_val.bin"))
            meta.append({"name": case, "files": name, "n_train": ntr, "n_val": nva, "d": d,
                         "n_classes": k, "C": C, "standardize": standardize, "sklearn": sk})
            print(json.dumps(meta[-1]))
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump({"sklearn_version": __import__("sklearn").__version__, "cases": meta}, f, indent=1)


if __name__ == "__main__":
    main()
