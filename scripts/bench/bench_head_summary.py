"""Summary of a scripts/bench/bench_head.sh run: median epoch seconds per side, same-run ratios, GFLOP/s, peak RSS, val accuracy.

Usage: python3 scripts/bench/bench_head_summary.py OUT_DIR THREADS
"""
import csv, glob, json, os, re, statistics, sys
out, threads = sys.argv[1], sys.argv[2]
H, C = 4096, 2

def rss_mib(name):
    t = open(os.path.join(out, name + ".time")).read()
    return int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1)) / 1024

def ours(name):
    rows = list(csv.DictReader(open(os.path.join(out, "runs", name, "metrics.csv"))))
    return [float(r["seconds"]) for r in rows], float(rows[-1]["val_acc"])

def peer(name):
    j = json.loads(open(os.path.join(out, name + ".out")).read().strip().splitlines()[-1])
    return [e["sec"] for e in j["epochs"]], j["epochs"][-1]["val_acc"], j["n_train"]

def rows(name):
    j = json.loads(open(os.path.join(out, name + ".out")).read().strip().splitlines()[-1])
    return j["n_train"], j["n_val"]

loads = [l.split() for l in open(os.path.join(out, "log.txt"))]
print(f"threads {threads}; load average (1 min) during the runs: "
      f"min {min(float(l[2]) for l in loads):.2f}, max {max(float(l[2]) for l in loads):.2f}")
for cache in ("synth", "real"):
    runs = sorted({os.path.basename(p)[:-5] for p in glob.glob(os.path.join(out, cache + "-*.time"))})
    if not runs:
        continue
    n, n_val = rows(next(r for r in runs if "-fused-" in r))
    d = 25088
    params = d * H + H + H * H + H + H * C + C
    mib = 1024 * 1024
    feat_mib, param_mib = (n + n_val) * d * 4 / mib, params * 4 / mib
    target_mib = 1.2 * (feat_mib + 4 * param_mib)
    # one epoch: forward (3 layers) + weight gradients (3 layers) + input gradients of layers 2, 3
    flop = n * 2 * (2 * (d * H + H * H + H * C) + (H * H + H * C))
    sides = {}
    for side in ("ours", "oursstd", "fused", "default"):
        names = [r for r in runs if f"-{side}-" in r]
        if not names:
            continue
        secs, accs, rss = [], [], []
        for nm in names:
            if side.startswith("ours"):
                s, a = ours(nm)
            else:
                s, a, _ = peer(nm)
            secs += s; accs.append(a); rss.append(rss_mib(nm))
        sides[side] = (statistics.median(secs), secs, accs, max(rss))
    print(f"\n{cache}: {n} train rows x {d}, batch 64, {flop / 1e9:.0f} GFLOP per epoch; memory target "
          f"(features {feat_mib:.0f} + 4 x parameters {param_mib:.0f}) x 1.2 = {target_mib:.0f} MiB")
    label = {"ours": "vggcache (raw features)", "oursstd": "vggcache (--standardize true)",
             "fused": "PyTorch Adam(fused=True)", "default": "PyTorch Adam (default)"}
    print(f"  {'side':<30} {'median s/epoch':>14} {'GFLOP/s':>8} {'peak RSS MiB':>12}  val acc per run   all epoch seconds")
    for side, (med, secs, accs, rss) in sides.items():
        print(f"  {label[side]:<30} {med:14.2f} {flop / med / 1e9:8.1f} {rss:12.0f}  "
              f"{' '.join(f'{a:.3f}' for a in accs):<16} {' '.join(f'{s:.1f}' for s in secs)}")
    if "ours" in sides:
        for side in ("fused", "default"):
            if side in sides:
                # per round too: each round ran the sides back to back
                per = []
                for r in sorted({nm.rsplit("-", 1)[1] for nm in runs}):
                    o, p = f"{cache}-ours-{r}", f"{cache}-{side}-{r}"
                    if o in runs and p in runs:
                        per.append(statistics.median(ours(o)[0]) / statistics.median(peer(p)[0]))
                print(f"  ratio ours / {label[side]}: {sides['ours'][0] / sides[side][0]:.2f}x "
                      f"(per round: {' '.join(f'{x:.2f}' for x in per)})")
