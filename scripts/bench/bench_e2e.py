"""Time from a folder of images to a trained head: vggcache against the PyTorch recipes it replaces.

One run, the same images, the same trunk weights (the default trunk `vgg16` of the model store, its conv
weights copied into a torchvision-style VGG16 `features` in PyTorch and checked against onnxruntime),
the same head (25,088 -> 4,096 -> 4,096 -> C, ReLU, dropout .5, Adam lr 1e-3, batch 64, raw features,
the last epoch kept: the seed recipe's settings) and the same epochs, recipe after recipe:

  (a) seed     PyTorch, the trunk re-run on every train image every epoch (and on val to score)
  (b) keras    PyTorch, the trunk run once over train and val, features in memory, then the head
  (c) vggcache `vggcache extract` + `vggcache train-head`, fp32 trunk `vgg16`, and the int8 trunk
               `vgg16-int8` (installed into the bench's own model store, calibrated on the train images;
               its one-time install is timed and reported apart)
  (d) rerun    vggcache's second run: the cache is there, `train-head` only

For (a) and (b) the 5- and 20-epoch figures come from one 20-epoch training: the time at epoch E is the
training up to E plus one scoring of val (scorings at earlier epochs are not counted). vggcache runs
`train-head --epochs E` for each E. Walls include everything after `import torch` (building the trunk,
decoding, resizing, the trunk, the head, scoring, saving the head) and, for vggcache, the whole command.

Usage (`make bench-e2e` runs it with .bench-venv's Python; BENCH_E2E_ARGS passes flags):
  python scripts/bench/bench_e2e.py [--train-per-class 40] [--val-per-class 40] [--set catsdogs|big]
                                    [--epochs 5,20] [--repeats 1] [--out bench-out/e2e] [--no-int8]
  --set big: catsdogs' train images, their horizontal flips (JPEG q95) and catsdogs-gray's train images
  (up to 2,147 train images); val is catsdogs' val. --train-per-class 0 takes every image of the set.
Env: VGGCACHE (binary, default target/release/vggcache), VGGCACHE_STORE (model store holding vgg16,
default .vggcache), TOOLS_PY (Python that builds the int8 trunk, default .venv/bin/python),
ORT_DYLIB_PATH (default: onnxruntime's library from .venv or this Python), VGGCACHE_TEST_DATA.
Writes OUT/results.jsonl and OUT/e2e.md (the Markdown table, also printed).
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import testdata  # noqa: E402

# The default trunk's preprocessing (its metadata `vggcache.preprocess`): 224x224 bilinear with
# antialias (PIL's resize), BGR, minus the caffe means, no scaling.
MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32).reshape(3, 1, 1)
VGG16_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
LR, BATCH, TRUNK_BATCH, SEED = 1e-3, 64, 16, 0


def log(*a):
    print(*a, flush=True)


def load_image(path):
    from PIL import Image
    im = Image.open(path).convert("RGB").resize((224, 224), Image.BILINEAR)
    x = np.asarray(im, dtype=np.float32).transpose(2, 0, 1)[::-1]  # RGB -> BGR
    return x - MEAN_BGR


# ---------------------------------------------------------------- images

def build_set(args, work: Path):
    """Fill work/img/{train,val}/{class}/ (links, flips written as JPEG) and return its lists."""
    from PIL import Image, ImageOps
    src = testdata.data("catsdogs")
    img = work / "img"
    if img.exists():
        shutil.rmtree(img)
    classes = sorted(p.name for p in (src / "train").iterdir() if p.is_dir())
    for c in classes:
        tr = sorted((src / "train" / c).glob("*.jpg"))
        extra = []
        if args.set == "big":
            gray = testdata.data_root() / "catsdogs-gray" / "train" / c
            extra = [("flip", p) for p in tr] + [("gray", p) for p in sorted(gray.glob("*.jpg"))]
        items = [("orig", p) for p in tr] + extra
        if args.train_per_class:
            items = items[: args.train_per_class]
        va = sorted((src / "val" / c).glob("*.jpg"))
        if args.val_per_class:
            va = va[: args.val_per_class]
        for split, its in (("train", items), ("val", [("orig", p) for p in va])):
            d = img / split / c
            d.mkdir(parents=True, exist_ok=True)
            for kind, p in its:
                dst = d / f"{kind}-{p.name}"
                if kind == "flip":
                    ImageOps.mirror(Image.open(p).convert("RGB")).save(dst, quality=95)
                else:
                    os.symlink(p.resolve(), dst)
    lists = {}
    for split in ("train", "val"):
        ps, ys = [], []
        for k, c in enumerate(classes):
            for p in sorted((img / split / c).iterdir()):
                ps.append(str(p)); ys.append(k)
        lists[split] = (ps, np.array(ys, dtype=np.int64))
    return img, classes, lists


# ---------------------------------------------------------------- PyTorch side

def torch_trunk(onnx_path):
    """torchvision's VGG16 `features` (conv 3x3 pad 1 + ReLU, max-pool 2) with the ONNX file's conv weights."""
    import onnx
    import torch
    from onnx import numpy_helper
    m = onnx.load(str(onnx_path))
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    ops = [n.op_type for n in m.graph.node]
    expect = []
    for v in VGG16_CFG:
        expect += ["MaxPool"] if v == "M" else ["Conv", "Relu"]
    if ops != expect + ["Flatten"]:
        sys.exit(f"{onnx_path}: expected torchvision VGG16 features' ops {expect + ['Flatten']}, found {ops}")
    layers, i, cin = [], 0, 3
    for v in VGG16_CFG:
        if v == "M":
            layers.append(torch.nn.MaxPool2d(2, 2))
            continue
        conv = torch.nn.Conv2d(cin, v, 3, padding=1)
        w, b = init[convs[i].input[1]], init[convs[i].input[2]]
        if w.shape != tuple(conv.weight.shape):
            sys.exit(f"{onnx_path}: conv {i} weight {w.shape}, expected {tuple(conv.weight.shape)}")
        with torch.no_grad():
            conv.weight.copy_(torch.from_numpy(w.copy())); conv.bias.copy_(torch.from_numpy(b.copy()))
        layers += [conv, torch.nn.ReLU(inplace=True)]
        i, cin = i + 1, v
    return torch.nn.Sequential(*layers, torch.nn.Flatten(1)).eval()


def trunk_features(trunk, paths):
    import torch
    out = []
    with torch.inference_mode():
        for i in range(0, len(paths), TRUNK_BATCH):
            x = torch.from_numpy(np.stack([load_image(p) for p in paths[i:i + TRUNK_BATCH]]))
            out.append(trunk(x))
    return torch.cat(out)


def check_trunk(trunk, onnx_path, paths):
    """Max |torch - onnxruntime| over a few images, relative to the largest feature; exits above 1e-4."""
    import onnxruntime as ort
    s = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    x = np.stack([load_image(p) for p in paths])
    ref = s.run(None, {s.get_inputs()[0].name: x})[0]
    got = trunk_features(trunk, paths).numpy()
    diff = float(np.abs(got - ref).max()); scale = float(np.abs(ref).max())
    res = {"images": len(paths), "max_abs_diff": diff, "max_abs_feature": scale, "rel": diff / scale,
           "zero_fraction_ort": float((ref == 0).mean()), "zero_fraction_torch": float((got == 0).mean())}
    log(f"trunk check, PyTorch vs onnxruntime on {len(paths)} images: max |diff| {diff:.3g} "
        f"(largest feature {scale:.4g}, relative {diff / scale:.2g})")
    if not diff <= 1e-4 * scale:
        sys.exit(f"PyTorch's trunk differs from {onnx_path} (relative {diff / scale:.3g} > 1e-4): weights not mapped right")
    return res


def pytorch_recipe(recipe, onnx_path, lists, n_classes, epochs, save_dir):
    """Recipe (a) 'seed' or (b) 'keras'; returns one result per epoch count in `epochs`. The head is saved
    (`torch.save` of its state dict) at each of them, as `train-head` saves its head file."""
    import torch
    t0 = time.perf_counter()
    trunk = torch_trunk(onnx_path)
    (ptr, ytr), (pva, yva) = lists["train"], lists["val"]
    ytr_t, yva_t = torch.from_numpy(ytr), torch.from_numpy(yva)
    torch.manual_seed(SEED)
    g = torch.Generator().manual_seed(SEED)
    head = torch.nn.Sequential(
        torch.nn.Linear(25088, 4096), torch.nn.ReLU(), torch.nn.Dropout(0.5),
        torch.nn.Linear(4096, 4096), torch.nn.ReLU(), torch.nn.Dropout(0.5),
        torch.nn.Linear(4096, n_classes))
    opt = torch.optim.Adam(head.parameters(), lr=LR, fused=True)
    lf = torch.nn.CrossEntropyLoss()
    ftr = fva = None
    trunk_s = 0.0
    if recipe == "keras":
        t = time.perf_counter()
        ftr = trunk_features(trunk, ptr); fva = trunk_features(trunk, pva)
        trunk_s = time.perf_counter() - t
    scoring_s, out = 0.0, []
    for ep in range(1, max(epochs) + 1):
        head.train()
        perm = torch.randperm(len(ptr), generator=g)
        for i in range(0, len(perm), BATCH):
            idx = perm[i:i + BATCH]
            if recipe == "seed":
                t = time.perf_counter()
                x = trunk_features(trunk, [ptr[j] for j in idx.tolist()])
                trunk_s += time.perf_counter() - t
            else:
                x = ftr[idx]
            opt.zero_grad()
            loss = lf(head(x), ytr_t[idx])
            loss.backward()
            opt.step()
        log(f"  {recipe} epoch {ep}: {time.perf_counter() - t0 - scoring_s:.1f} s so far")
        if ep in epochs:
            ts = time.perf_counter()
            head.eval()
            with torch.inference_mode():
                xv = trunk_features(trunk, pva) if recipe == "seed" else fva
                logits = head(xv)
                acc = float((logits.argmax(1) == yva_t).float().mean()); vloss = float(lf(logits, yva_t))
            torch.save(head.state_dict(), save_dir / f"{recipe}-head.pt")
            now = time.perf_counter()
            wall = now - t0 - scoring_s  # earlier scorings are not part of a run that stops at `ep`
            scoring_s += now - ts
            out.append({"recipe": recipe, "trunk": "vgg16 (PyTorch)", "epochs": ep, "wall_s": wall,
                        "val_acc": acc, "val_loss": vloss, "trunk_s_train": trunk_s})
            log(f"  {recipe} {ep} epochs: {wall:.1f} s, val acc {acc:.3f}, loss {vloss:.4f}")
    return out


# ---------------------------------------------------------------- vggcache side

def run_cmd(cmd, env, logf):
    t = time.perf_counter()
    with open(logf, "w") as f:
        r = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(map(str, cmd))}\n" + Path(logf).read_text()[-2000:])
    return dt


def last_metrics(run_dir):
    with open(Path(run_dir) / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["val_acc"]), float(rows[-1]["val_loss"]), len(rows)


def train_head(v, env, cache, runs, name, epochs, logs):
    if (runs / name).exists():
        shutil.rmtree(runs / name)
    dt = run_cmd([v, "train-head", "--features", cache, "--runs-dir", runs, "--name", name,
                  "--epochs", str(epochs), "--batch-size", str(BATCH), "--lr", str(LR), "--hidden", "4096,4096",
                  "--dropout", "0.5", "--standardize", "false", "--select-fraction", "0", "--seed", str(SEED)],
                 env, logs / f"{name}.log")
    acc, loss, n = last_metrics(runs / name)
    if n != epochs:
        sys.exit(f"{runs / name}/metrics.csv has {n} epochs, expected {epochs}")
    # Each head file is ~400 MB: keep the metrics, drop the rest (after the timing).
    for f in (runs / name).iterdir():
        if f.name != "metrics.csv":
            shutil.rmtree(f) if f.is_dir() else f.unlink()
    return dt, acc, loss


def vggcache_recipe(v, env, trunk, img, work, epochs, tag):
    """(c) extract + train-head per epoch count, then (d) train-head again on the same cache."""
    cache, runs, logs = work / f"cache-{trunk}", work / "runs", work / "logs"
    if cache.exists():
        shutil.rmtree(cache)
    ext = run_cmd([v, "extract", "--images", img, "--out", cache, "--trunk", trunk, "--device", "cpu"],
                  env, logs / f"extract-{trunk}-{tag}.log")
    out = []
    for e in epochs:
        h, acc, loss = train_head(v, env, cache, runs, f"{trunk}-{tag}-e{e}", e, logs)
        out.append({"recipe": "vggcache", "trunk": trunk, "epochs": e, "wall_s": ext + h, "extract_s": ext,
                    "train_head_s": h, "val_acc": acc, "val_loss": loss})
        log(f"  vggcache {trunk} {e} epochs: extract {ext:.1f} s + train-head {h:.1f} s, val acc {acc:.3f}")
    for e in epochs:
        h, acc, loss = train_head(v, env, cache, runs, f"{trunk}-{tag}-rerun-e{e}", e, logs)
        out.append({"recipe": "rerun", "trunk": trunk, "epochs": e, "wall_s": h, "val_acc": acc, "val_loss": loss})
        log(f"  vggcache {trunk} second run, {e} epochs: train-head {h:.1f} s, val acc {acc:.3f}")
    return out


def ort_dylib():
    if os.environ.get("ORT_DYLIB_PATH"):
        return os.environ["ORT_DYLIB_PATH"]
    pats = [str(ROOT / ".venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so*")]
    try:
        import onnxruntime
        pats.append(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so*"))
    except ImportError:
        pass
    for p in pats:
        hits = sorted(glob.glob(p))
        if hits:
            return hits[-1]
    sys.exit("no libonnxruntime.so found: run `make setup` or set ORT_DYLIB_PATH")


# ---------------------------------------------------------------- table

LABEL = {"seed": "(a) seed recipe, PyTorch: trunk every epoch", "keras": "(b) Keras-style, PyTorch: features once in memory",
         "vggcache": "(c) vggcache extract + train-head", "rerun": "(d) vggcache second run: train-head only"}


def table(results, meta, epochs):
    med = lambda xs: float(np.median(xs))  # noqa: E731
    keys = list(dict.fromkeys((r["recipe"], r["trunk"]) for r in results))
    lines = [f"| recipe | trunk | " + " | ".join(f"{e} ep: wall s | {e} ep: val acc | {e} ep: seed / this" for e in epochs) + " |",
             "|---|---|" + "---:|---:|---:|" * len(epochs)]
    for k in keys:
        cells = []
        for e in epochs:
            rs = [r for r in results if (r["recipe"], r["trunk"]) == k and r["epochs"] == e]
            seed = [r for r in results if r["recipe"] == "seed" and r["epochs"] == e]
            # ratio per repeat (the seed run of the same repeat), then the median
            ratios = [s["wall_s"] / r["wall_s"] for s, r in zip(seed, rs)]
            cells.append(f"{med([r['wall_s'] for r in rs]):.1f} | {med([r['val_acc'] for r in rs]):.3f} | "
                         f"{med(ratios):.1f}x" if ratios else "n/a")
        lines.append(f"| {LABEL[k[0]]} | {k[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", choices=["catsdogs", "big"], default="catsdogs")
    ap.add_argument("--train-per-class", type=int, default=40, help="train images a class (0: all)")
    ap.add_argument("--val-per-class", type=int, default=40, help="val images a class (0: all)")
    ap.add_argument("--epochs", default="5,20")
    ap.add_argument("--repeats", type=int, default=1, help="the recipes run in turn, this many times")
    ap.add_argument("--out", default=str(ROOT / "bench-out" / "e2e"))
    ap.add_argument("--no-int8", action="store_true", help="leave out the int8 trunk")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="PyTorch's threads")
    args = ap.parse_args()
    epochs = sorted({int(e) for e in args.epochs.split(",")})

    import torch
    torch.set_num_threads(args.threads)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    v = os.environ.get("VGGCACHE", str(ROOT / "target" / "release" / "vggcache"))
    if not os.access(v, os.X_OK):
        sys.exit(f"{v} not found: cargo build --release --locked (or set VGGCACHE)")
    store = Path(os.environ.get("VGGCACHE_STORE", ROOT / ".vggcache"))
    fp32 = store / "models" / "vgg16.onnx"
    if not fp32.is_file():
        sys.exit(f"{fp32} absent: make model (or set VGGCACHE_STORE to a store holding vgg16)")
    # The bench's own store: the fp32 trunk linked in, the int8 one built there (never in the user's store).
    home = out / "home"
    (home / "models").mkdir(parents=True, exist_ok=True)
    for f in ("vgg16.onnx", "vgg16.json"):
        dst = home / "models" / f
        if dst.is_symlink() or dst.exists():
            dst.unlink()
        os.symlink((store / "models" / f).resolve(), dst)
    env = dict(os.environ, VGGCACHE_HOME=str(home), ORT_DYLIB_PATH=ort_dylib())

    img, classes, lists = build_set(args, out)
    ntr, nva = len(lists["train"][0]), len(lists["val"][0])
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "set": args.set, "train": ntr, "val": nva,
            "epochs": epochs, "repeats": args.repeats, "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "load_before": os.getloadavg()}
    try:
        meta["cpu"] = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    log(f"images: {ntr} train / {nva} val ({args.set}), classes {classes}; epochs {epochs}; load {meta['load_before']}")
    check = check_trunk(torch_trunk(fp32), fp32, lists["val"][0][:2] + lists["val"][0][-2:])

    trunks = ["vgg16"]
    int8 = {"installed": False}
    if not args.no_int8:
        t = time.perf_counter()
        py = os.environ.get("TOOLS_PY", str(ROOT / ".venv" / "bin" / "python"))
        r = subprocess.run([v, "models", "install", "vgg16-int8", "--force", "--calib", str(img / "train"), "--python", py],
                           env=env, capture_output=True, text=True)
        int8 = {"installed": r.returncode == 0, "install_s": time.perf_counter() - t}
        if r.returncode == 0:
            trunks.append("vgg16-int8")
            log(f"vgg16-int8 installed in {int8['install_s']:.1f} s (calibrated on the train images)")
        else:
            int8["error"] = (r.stdout + r.stderr)[-800:]
            log(f"vgg16-int8 left out: its install failed:\n{int8['error']}")

    results = []
    for rep in range(1, args.repeats + 1):
        log(f"repeat {rep}/{args.repeats}, load {os.getloadavg()[0]:.1f}")
        for recipe in ("seed", "keras"):
            for r in pytorch_recipe(recipe, fp32, lists, len(classes), epochs, out):
                results.append(dict(r, repeat=rep, load=os.getloadavg()[0]))
        for tr in trunks:
            for r in vggcache_recipe(v, env, tr, img, out, epochs, f"r{rep}"):
                results.append(dict(r, repeat=rep, load=os.getloadavg()[0]))
    for recipe in ("seed", "keras"):
        (out / f"{recipe}-head.pt").unlink(missing_ok=True)
    meta["load_after"] = os.getloadavg()
    with open(out / "results.jsonl", "w") as f:
        for r in [{"meta": meta, "trunk_check": check, "int8": int8}] + results:
            f.write(json.dumps(r) + "\n")
    md = [f"{ntr} train / {nva} val images ({args.set}), {meta['cpu']}, {meta['cores']} cores, torch {meta['torch']} "
          f"({meta['torch_threads']} threads), {meta['date']}, load average {meta['load_before'][0]:.1f} before, "
          f"{meta['load_after'][0]:.1f} after; median of {args.repeats} repeat(s); ratio = seed recipe's wall / this row's "
          f"wall in the same repeat.", "", table(results, meta, epochs), ""]
    if int8["installed"]:
        md.append(f"vgg16-int8's one-time install (calibration on the train images, not in the walls above): "
                  f"{int8['install_s']:.1f} s.")
    md.append(f"Trunk check: PyTorch's VGG16 features against onnxruntime on {check['images']} images, max |diff| "
              f"{check['max_abs_diff']:.2g} (relative {check['rel']:.1g}); exact zeros {check['zero_fraction_ort']:.2f}.")
    text = "\n".join(md)
    (out / "e2e.md").write_text(text + "\n")
    log("\n" + text)


if __name__ == "__main__":
    main()
