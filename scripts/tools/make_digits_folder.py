#!/usr/bin/env python3
"""Writes scikit-learn's handwritten digits as an ImageFolder: OUT/{train,val}/<digit>/<i>.png.

The set ships inside the scikit-learn wheel (sklearn/datasets/data/digits.csv.gz: 1,797 8x8
grayscale images of the digits 0-9, UCI "Optical Recognition of Handwritten Digits", 16 grey
levels). It is read out of the wheel file (a zip) with the standard library, so scikit-learn is
never installed: the wheel is `--wheel`, else the newest scikit_learn-*.whl in `--wheel-dir`, else
downloaded there with `pip download scikit-learn==VERSION --no-deps`. Each image is scaled to
0-255 and enlarged 4x (nearest neighbour) to a 32x32 PNG; a stratified, seeded split puts
`--val-fraction` of each digit in val/ (the same split as `sklearn.datasets.load_digits` gives).
The folder appears whole or not at all (written beside OUT, then renamed); a second call with the
same arguments reuses it.

Usage: make_digits_folder.py OUT [--per-class N] [--val-fraction 0.3] [--seed 0]
                              [--wheel FILE | --wheel-dir DIR] [--sklearn-version 1.9.1]
"""
from __future__ import annotations

import argparse
import gzip
import io
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

MEMBER = "sklearn/datasets/data/digits.csv.gz"
MARKER = ".source"  # hidden: vggcache's discovery ignores it
ROOT = Path(__file__).resolve().parents[2]


def find_wheel(a: argparse.Namespace) -> Path:
    """The scikit-learn wheel to read: --wheel, one already in --wheel-dir, or one pip downloads there."""
    if a.wheel:
        return a.wheel
    pattern = f"scikit_learn-{a.sklearn_version}-*.whl"
    found = sorted(a.wheel_dir.glob(pattern))
    if not found:
        a.wheel_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
               "--only-binary=:all:", f"scikit-learn=={a.sklearn_version}", "-d", str(a.wheel_dir)]
        print(f"downloading the scikit-learn {a.sklearn_version} wheel (its data only; not installed): "
              f"{' '.join(cmd[2:])}", flush=True)
        if subprocess.run(cmd).returncode != 0:
            sys.exit(f"error: pip could not download scikit-learn=={a.sklearn_version} into {a.wheel_dir}; "
                     "download a scikit_learn-*.whl by hand and pass it with --wheel FILE")
        found = sorted(a.wheel_dir.glob(pattern))
        if not found:
            sys.exit(f"error: pip ran but no {pattern} is in {a.wheel_dir}")
    return found[-1]


def read_digits(wheel: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 8, 8) in 0..16, targets (n,)) from the wheel's digits.csv.gz."""
    try:
        with zipfile.ZipFile(wheel) as z:
            raw = gzip.decompress(z.read(MEMBER))
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        sys.exit(f"error: {wheel}: cannot read {MEMBER} ({e}); expected a scikit-learn wheel")
    table = np.loadtxt(io.StringIO(raw.decode("ascii")), delimiter=",")
    if table.ndim != 2 or table.shape[1] != 65:
        sys.exit(f"error: {wheel}:{MEMBER}: expected rows of 64 pixels and a label, found shape {table.shape}")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(int)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--val-fraction", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-class", type=int, default=0, help="at most N images a digit (0: all)")
    ap.add_argument("--wheel", type=Path, help="a scikit-learn wheel file to read the set from")
    ap.add_argument("--wheel-dir", type=Path, default=ROOT / ".demo" / "wheels",
                    help="where a downloaded wheel is kept (default .demo/wheels)")
    ap.add_argument("--sklearn-version", default="1.9.1")
    a = ap.parse_args()

    wheel = find_wheel(a)
    images, target = read_digits(wheel)
    what = (f"scikit-learn's handwritten digits (UCI Optical Recognition of Handwritten Digits: "
            f"{len(target):,} 8x8 grayscale images, {len(set(target.tolist()))} classes), read from "
            f"{MEMBER} inside {wheel.name}")
    recipe = f"per_class={a.per_class} val_fraction={a.val_fraction} seed={a.seed} size=32x32"
    marker = a.out / MARKER
    if marker.is_file() and marker.read_text().splitlines()[:1] == [recipe]:
        print(f"data set: {what}\n  already written to {a.out} ({marker.read_text().splitlines()[1]})")
        return 0
    if a.out.exists() and any(a.out.iterdir()):
        sys.exit(f"error: {a.out} exists and is not this set ({recipe}): remove it or choose another OUT")

    rng = np.random.default_rng(a.seed)
    tmp = a.out.with_name(a.out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    counts = {"train": 0, "val": 0}
    for digit in range(10):
        idx = np.flatnonzero(target == digit)
        rng.shuffle(idx)
        if a.per_class:
            idx = idx[: a.per_class]
        n_val = int(round(a.val_fraction * len(idx)))
        for k, i in enumerate(idx):
            split = "val" if k < n_val else "train"
            px = (images[i] * (255.0 / 16.0)).round().astype(np.uint8)
            img = Image.fromarray(px, mode="L").resize((32, 32), Image.NEAREST)
            dst = tmp / split / str(digit)
            dst.mkdir(parents=True, exist_ok=True)
            img.save(dst / f"{i:04d}.png")
            counts[split] += 1
    summary = f"{counts['train']} train, {counts['val']} val, 32x32 PNG"
    (tmp / MARKER).write_text(f"{recipe}\n{summary}\n{what}\n")
    if a.out.exists():
        a.out.rmdir()  # empty (checked above)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(a.out)
    print(f"data set: {what}\n  wrote {summary} to {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
