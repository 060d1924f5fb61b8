"""The table of scripts/bench/bench_views.sh from its WORK folder (docs/BENCHMARKS.md section 21).

    python3 scripts/bench/views_table.py WORK

Head rows: val accuracy of each seed's kept epoch (train-head's summary) and, where the run had --tta,
the same head scored by test-time augmentation; medians over the seeds. linfa-logistic rows: the
accuracy in compare-baselines' compare.json (one fit: the C search and the fit are deterministic).
Costs: each extract's wall (`/usr/bin/time -v`), what it extracted, and the cache sizes.
"""
from __future__ import annotations

import glob
import json
import os
import re
import statistics
import sys


def head_runs(work: str, name: str) -> tuple[list[float], list[float]]:
    """(kept-epoch val accuracies, TTA val accuracies) of logs/NAME-s*.log, seed order."""
    plain, tta = [], []
    for f in sorted(glob.glob(os.path.join(work, "logs", f"{name}-s*.log"))):
        text = open(f, encoding="utf-8").read()
        m = re.search(r"^val accuracy\s+([0-9.]+)", text, re.M)
        if m:
            plain.append(float(m.group(1)))
        m = re.search(r"^val accuracy with TTA .*?([0-9.]+)\s*$", text, re.M)
        if m:
            tta.append(float(m.group(1)))
    return plain, tta


def linfa(work: str, name: str) -> str:
    p = os.path.join(work, "cmp", name, "compare.json")
    if not os.path.exists(p):
        return "-"
    rows = json.load(open(p, encoding="utf-8"))["rows"]
    return f"{next(r['accuracy'] for r in rows if r['name'] == 'linfa-logistic'):.4f}"


def cell(vals: list[float]) -> str:
    if not vals:
        return "-"
    seeds = ", ".join(f"{v:.3f}" for v in vals)
    return f"{seeds} (**{statistics.median(vals):.3f}**)"


def extract_cost(work: str, name: str) -> str:
    p = os.path.join(work, "logs", f"extract-{name}.log")
    if not os.path.exists(p):
        return "-"
    text = open(p, encoding="utf-8").read()
    wall = re.search(r"Elapsed \(wall clock\) time.*?: (\S+)", text)
    views = re.search(r"views: (\d+) to extract, (\d+) reused", text)
    rows = re.search(r"(\d+) to extract, (\d+) cached", text)
    what = f"{views.group(1)} view rows" if views else (f"{rows.group(1)} images" if rows else "")
    return f"{wall.group(1) if wall else '?'} ({what})"


def main() -> None:
    work = sys.argv[1]
    ks = sorted(int(d[1:]) for d in os.listdir(work) if re.fullmatch(r"k\d+", d))
    print("| training rows | head, kept epoch: seeds (median) | head + TTA | linfa-logistic | linfa + TTA |")
    print("|---|---|---|---|---|")
    p, t = head_runs(work, "plain")
    print(f"| plain | {cell(p)} | {cell(t)} | {linfa(work, 'plain')} | {linfa(work, 'plain-tta')} |")
    for k in ks:
        p, t = head_runs(work, f"k{k}")
        print(
            f"| plain + {k} augmented views (head: one view an image an epoch; linfa: all) | {cell(p)} | "
            f"{cell(t)} | {linfa(work, f'k{k}-all')} | {linfa(work, f'k{k}-all-tta')} |"
        )
    if os.path.isdir(os.path.join(work, "eff")):
        p, _ = head_runs(work, "eff")
        print(f"| EfficientNet-Lite0 alone (D 1,280) | {cell(p)} | - | {linfa(work, 'eff')} | - |")
        p, _ = head_runs(work, "vggeff")
        print(
            f"| VGG16 + EfficientNet-Lite0 joined (D 26,368) | {cell(p)} | - | {linfa(work, 'vggeff')} "
            f"(standardized: {linfa(work, 'vggeff-std')}) | - |"
        )
    print()
    print("| extract | wall (what it extracted) |")
    print("|---|---|")
    for name in ["plain"] + [f"k{k}" for k in ks] + ["eff"]:
        print(f"| {name} | {extract_cost(work, name)} |")
    sizes = os.path.join(work, "logs", "sizes.txt")
    if os.path.exists(sizes):
        print()
        for line in open(sizes, encoding="utf-8"):
            size, path = line.split()
            print(f"- {os.path.relpath(path, work)}: {int(size) / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
