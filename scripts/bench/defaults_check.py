#!/usr/bin/env python3
"""Runs vggcache's defaults on every labelled set at hand and prints them beside scikit-learn.

For each set (an ImageFolder with train/ and val/): `vggcache extract` with the default trunk (the
cache is kept under WORK and reused), `vggcache compare-baselines` with its defaults (the head
trained with train-head's defaults, linfa-logistic with its C chosen by cross-validation on train),
the same with `--C 1` (linfa at scikit-learn's default C, the same head), and scikit-learn on the
same cached features: `LogisticRegression()` on raw features (max_iter 1000 so it converges),
`make_pipeline(StandardScaler(), LogisticRegression())`, and `LogisticRegressionCV(cv=5)` on raw
features (scikit-learn's defaults, as linfa's default now is: raw features). Every model is scored once on the
set's val split, which none of them chose anything on. Prints a Markdown table (accuracy; chosen C)
for docs/BENCHMARKS.md and writes it to WORK/defaults.md.

Sets: `--set NAME=DIR` (repeatable). Default: the two real sets of scripts/testdata.py (VGGCACHE_TEST_DATA) when present, plus
WORK/digits (scikit-learn's handwritten digits, made by scripts/tools/make_digits_folder.py) and
WORK/catsdogs-resplit (catsdogs re-split with seed 1, scripts/bench/resplit_folder.py), both made here.

Usage: defaults_check.py [--bin target/release/vggcache] [--work /tmp/vggcache-defaults]
                         [--set NAME=DIR ...]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import testdata  # noqa: E402  (scripts/testdata.py: where real data lives)

sys.path.insert(0, str(ROOT / "scripts/reference"))
from logreg_parity import read_cache  # noqa: E402  (the cache reader the parity tests use)


def sklearn_rows(cache: Path) -> dict[str, str]:
    from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y, split = read_cache(cache)
    tr, va = (split == "train") & (y >= 0), (split == "val") & (y >= 0)
    out = {}
    models = {
        "sklearn LR() raw": LogisticRegression(max_iter=1000),
        "sklearn LR() std": make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)),
        "sklearn LRCV(cv=5) raw": LogisticRegressionCV(cv=5, max_iter=1000),
    }
    for name, m in models.items():
        t = time.perf_counter()
        m.fit(x[tr], y[tr])
        acc = float((m.predict(x[va]) == y[va]).mean())
        extra = ""
        if name.startswith("sklearn LRCV"):
            extra = f" (C = {float(m.C_[0]):.3g})"
        out[name] = f"{acc:.4f}{extra}"
        print(f"  {name}: {acc:.4f}{extra} ({time.perf_counter() - t:.1f} s)", flush=True)
    out["n"] = f"{int(tr.sum())} / {int(va.sum())}"
    return out


def run(cmd: list[str], cwd: Path) -> str:
    print("  $ " + " ".join(cmd), flush=True)
    p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stdout}\n{p.stderr}")
    return p.stdout


def compare(bin_: Path, work: Path, cache: Path, out: str, extra: list[str]) -> dict:
    run([str(bin_), "compare-baselines", "--features", str(cache), "--out", out, *extra], work)
    return json.loads((work / out / "compare.json").read_text())


def acc(report: dict, prefix: str) -> float:
    return next(r["accuracy"] for r in report["rows"] if r["name"].startswith(prefix))


def chosen_c(report: dict) -> str:
    for s in report.get("sections", []):
        for r in s["rows"]:
            if r[-1].startswith("chosen"):
                return f"{float(r[0]):.3g}"
    return "-"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", type=Path, default=ROOT / "target/release/vggcache")
    ap.add_argument("--work", type=Path, default=Path("/tmp/vggcache-defaults"))
    ap.add_argument("--set", action="append", default=[], metavar="NAME=DIR")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    bin_ = a.bin.resolve()
    sets: list[tuple[str, Path]] = [tuple(s.split("=", 1)) for s in a.set]  # type: ignore[misc]
    sets = [(n, Path(d).resolve()) for n, d in sets]
    if not sets:
        real = testdata.data_root()
        for name in ("catsdogs", "catsdogs-gray"):
            if (real / name).is_dir():
                sets.append((name, real / name))
        py = sys.executable
        digits = a.work / "data/digits"
        run([py, str(ROOT / "scripts/tools/make_digits_folder.py"), str(digits)], a.work)
        sets.append(("digits", digits))
        if (real / "catsdogs").is_dir():
            resplit = a.work / "data/catsdogs-resplit"
            run([py, str(ROOT / "scripts/bench/resplit_folder.py"), str(real / "catsdogs"), str(resplit),
                 "--seed", "1"], a.work)
            sets.append(("catsdogs re-split (seed 1)", resplit))
    rows = []
    for name, images in sets:
        print(f"{name}: {images}", flush=True)
        # One folder per set, named after the whole set name (two sets may share a first word).
        work = a.work / "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        work.mkdir(parents=True, exist_ok=True)
        cache = work / "cache"
        run([str(bin_), "extract", "--images", str(images), "--out", str(cache)], work)
        default = compare(bin_, work, cache, f"cmp-{int(time.time())}", [])
        head = next(r["name"] for r in default["rows"] if r["name"].startswith("mlp head"))
        run_dir = head[len("mlp head ("):-1]
        c1 = compare(bin_, work, cache, f"cmp-c1-{int(time.time())}", ["--head", run_dir, "--C", "1"])
        sk = sklearn_rows(cache)
        rows.append({
            "set": name,
            "train / val": sk.pop("n"),
            "head": f"{acc(default, 'mlp head'):.4f}",
            "linfa default": f"{acc(default, 'linfa'):.4f} (C = {chosen_c(default)})",
            "linfa C = 1": f"{acc(c1, 'linfa'):.4f}",
            **sk,
        })
        print(json.dumps(rows[-1]), flush=True)
    header = list(rows[0])
    table = "\n".join(
        ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        + ["| " + " | ".join(r[h] for h in header) + " |" for r in rows]
    )
    print(table)
    (a.work / "defaults.md").write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
