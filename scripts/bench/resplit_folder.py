#!/usr/bin/env python3
"""Copies a labelled ImageFolder (SRC/{train,val}/<class>/*) into OUT with the train/val split drawn
anew: every class's images pooled, shuffled with --seed, and the same per-class val count as SRC
(or --val-fraction). A second labelled set from the same images, for checking that defaults tuned
on one split hold on another.

Usage: resplit_folder.py SRC OUT [--seed 1] [--val-fraction F]
"""
from __future__ import annotations

import argparse
import random
import shutil
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--val-fraction", type=float, default=None)
    a = ap.parse_args()
    if a.out.exists() and any(a.out.iterdir()):
        print(f"{a.out} exists and is not empty: nothing written", file=sys.stderr)
        return 0
    rng = random.Random(a.seed)
    classes = sorted(p.name for p in (a.src / "train").iterdir() if p.is_dir())
    for c in classes:
        pooled = sorted(p for s in ("train", "val") for p in (a.src / s / c).glob("*") if p.is_file())
        n_val = len(list((a.src / "val" / c).glob("*")))
        if a.val_fraction is not None:
            n_val = round(a.val_fraction * len(pooled))
        rng.shuffle(pooled)
        for k, p in enumerate(pooled):
            dst = a.out / ("val" if k < n_val else "train") / c
            dst.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dst / p.name)
        print(f"{c}: {len(pooled) - n_val} train, {n_val} val")
    return 0


if __name__ == "__main__":
    sys.exit(main())
