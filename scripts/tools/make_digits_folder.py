#!/usr/bin/env python3
"""Writes scikit-learn's handwritten digits as an ImageFolder: OUT/{train,val}/<digit>/<i>.png.

The set ships inside the scikit-learn wheel (`sklearn.datasets.load_digits`: 1,797 8x8 grayscale
images of the digits 0-9, UCI "Optical Recognition of Handwritten Digits", 16 grey levels), so it
needs no download. Each image is scaled to 0-255 and enlarged 4x (nearest neighbour) to 32x32 PNG;
a stratified, seeded split puts `--val-fraction` of each digit in val/.

Usage: make_digits_folder.py OUT [--val-fraction 0.3] [--seed 0] [--per-class N]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--val-fraction", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-class", type=int, default=0, help="at most N images a digit (0: all)")
    a = ap.parse_args()
    if a.out.exists() and any(a.out.iterdir()):
        print(f"{a.out} exists and is not empty: nothing written", file=sys.stderr)
        return 0
    d = load_digits()
    rng = np.random.default_rng(a.seed)
    counts = {"train": 0, "val": 0}
    for digit in range(10):
        idx = np.flatnonzero(d.target == digit)
        rng.shuffle(idx)
        if a.per_class:
            idx = idx[: a.per_class]
        n_val = int(round(a.val_fraction * len(idx)))
        for k, i in enumerate(idx):
            split = "val" if k < n_val else "train"
            px = (d.images[i] * (255.0 / 16.0)).round().astype(np.uint8)
            img = Image.fromarray(px, mode="L").resize((32, 32), Image.NEAREST)
            dst = a.out / split / str(digit)
            dst.mkdir(parents=True, exist_ok=True)
            img.save(dst / f"{i:04d}.png")
            counts[split] += 1
    print(
        f"wrote scikit-learn's handwritten digits (1,797 8x8 images, 10 classes) to {a.out}: "
        f"{counts['train']} train, {counts['val']} val"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
