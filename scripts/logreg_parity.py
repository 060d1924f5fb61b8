"""Synthetic parity check of vggcache's linfa logistic baseline against scikit-learn.

Writes a few synthetic train/val sets to OUT_DIR (raw little-endian float32 features, uint32 labels,
meta.json), fits scikit-learn's LogisticRegression(C, lbfgs, max_iter=1000) on each -- the same call as
`../shared/bench/peers.py logreg` -- and records its val accuracy, log loss and fit time in meta.json.
The Rust side then reads the same files and fits linfa with l2 = 1/C:

    python3 scripts/logreg_parity.py /tmp/parity          # needs numpy + scikit-learn
    VGGCACHE_PARITY_DIR=/tmp/parity cargo test --test it baseline::sklearn_parity -- --nocapture

`--small` writes the CI-sized cases instead (seconds on both sides); tests/it/baseline.rs
`sklearn_parity` runs the script with it into a temp dir when VGGCACHE_PARITY_DIR is not set.
scikit-learn's val probabilities go to NAME.sk_proba_val.bin (float32, (n_val, classes)).
"""
import json, os, sys, time
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss


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


def main():
    args = [a for a in sys.argv[1:] if a != "--small"]
    cases = SMALL if "--small" in sys.argv[1:] else CASES
    out = args[0] if args else "/tmp/parity"
    os.makedirs(out, exist_ok=True)
    meta = []
    for i, (name, ntr, nva, d, k, spread, relu, C) in enumerate(cases):
        rng = np.random.default_rng(1234 + i)
        x, y = make(rng, ntr + nva, d, k, spread, relu)
        xtr, ytr, xva, yva = x[:ntr], y[:ntr], x[ntr:], y[ntr:]
        for arr, f in ((xtr, "x_train"), (ytr, "y_train"), (xva, "x_val"), (yva, "y_val")):
            arr.astype(arr.dtype.newbyteorder("<")).tofile(os.path.join(out, f"{name}.{f}.bin"))
        t = time.perf_counter()
        m = LogisticRegression(C=C, max_iter=1000).fit(xtr, ytr.astype(np.int64))
        fit_s = time.perf_counter() - t
        p = m.predict_proba(xva)
        p.astype("<f4").tofile(os.path.join(out, f"{name}.sk_proba_val.bin"))
        meta.append({"name": name, "n_train": ntr, "n_val": nva, "d": d, "n_classes": k, "C": C,
                     "sklearn": {"val_acc": float(m.score(xva, yva.astype(np.int64))),
                                 "val_log_loss": float(log_loss(yva, p, labels=list(range(k)))),
                                 "fit_sec": fit_s, "n_iter": int(np.max(m.n_iter_))}})
        print(json.dumps(meta[-1]))
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump({"sklearn_version": __import__("sklearn").__version__, "cases": meta}, f, indent=1)


if __name__ == "__main__":
    main()
