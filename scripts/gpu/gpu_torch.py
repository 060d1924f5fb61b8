"""The PyTorch side of scripts/gpu/gpu-check.sh (runs on the GPU machine, whose python3 has torch + torchvision).

  gpu_torch.py make-trunk DIR          torchvision vgg16(weights=None, seed 0).features -> DIR/vgg16_features.pt
                                       and the same weights as a vggcache ONNX trunk DIR/vgg16_trunk.onnx (built by
                                       models/vgg16_onnx.py, the converter of the offline trunk; TORCHVISION_RGB
                                       preprocessing). Random weights: speed and CPU/GPU agreement only.
                                       Also DIR/null_trunk.onnx: the same contract ([N,3,224,224] -> [N,25088]) from
                                       one 32x32/32 conv, ~1% of VGG16's work: `extract` with it measures what
                                       decoding, copies and Parquet writing alone allow (the pipeline's ceiling).
  gpu_torch.py peer DIR IMAGES B...    PyTorch's own VGG16 features on the GPU, one JSON line per measurement:
                                       trunk-only (input already on the GPU; cudnn.benchmark off = default, and on),
                                       trunk-only with host copies (pageable host input copied in, features
                                       copied back: what vggcache's trunk bench times)
                                       and end to end (DataLoader(num_workers=W, pin_memory) PIL decode + resize 224
                                       + normalise -> GPU -> features back to host memory), for each batch size B.
  gpu_torch.py agree CACHE_A CACHE_B   per-image relative error max|a-b| / max|b| of two vggcache caches (pyarrow)

Timing: CUDA synchronised before the clock is read; warm-up first; medians of repeats.
"""
import glob, json, os, statistics, sys, time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
EXT = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def vgg_features():
    import torch, torchvision
    torch.manual_seed(0)
    return torchvision.models.vgg16(weights=None).features.eval()


def make_trunk(d):
    import torch
    sys.path.insert(0, os.path.join(HERE, "..", "..", "models"))
    from vgg16_onnx import TORCHVISION_RGB, build
    import onnx
    f = vgg_features()
    torch.save(f.state_dict(), os.path.join(d, "vgg16_features.pt"))
    convs = [(m.weight.detach().numpy().transpose(2, 3, 1, 0), m.bias.detach().numpy())
             for m in f if isinstance(m, torch.nn.Conv2d)]  # OIHW -> HWIO
    m = build(convs, TORCHVISION_RGB, "torchvision vgg16 .features, random init (seed 0): speed and CPU/GPU "
              "agreement only, features meaningless", "torchvision-random")
    onnx.save(m, os.path.join(d, "vgg16_trunk.onnx"))
    onnx.save(null_trunk(), os.path.join(d, "null_trunk.onnx"))
    print(json.dumps({"made": d, "convs": len(convs)}))


def null_trunk():
    """The trunk contract at ~1% of VGG16's FLOPs: Conv 3->512, kernel 32, stride 32, ReLU, Flatten."""
    sys.path.insert(0, os.path.join(HERE, "..", "..", "models"))
    from vgg16_onnx import TORCHVISION_RGB, set_metadata
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((512, 3, 32, 32)) * 0.02).astype(np.float32)
    b = np.zeros(512, np.float32)
    nodes = [helper.make_node("Conv", ["input", "w", "b"], ["c"], kernel_shape=[32, 32], strides=[32, 32]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["features"], axis=1)]
    g = helper.make_graph(nodes, "null_trunk",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
                          [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 25088])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="vggcache")
    m.ir_version = 8
    set_metadata(m, TORCHVISION_RGB, "pipeline-ceiling probe: one strided conv, not a feature extractor",
                 "null-trunk")
    onnx.checker.check_model(m, full_check=True)
    return m


def images(d):
    out = []
    for root, _, files in os.walk(d):
        out += [os.path.join(root, f) for f in files if f.lower().endswith(EXT)]
    return sorted(out)


def peer(d, imgdir, batches, workers):
    import torch
    from torch.utils.data import DataLoader, Dataset
    from PIL import Image
    dev = torch.device("cuda")
    f = vgg_features()
    f.load_state_dict(torch.load(os.path.join(d, "vgg16_features.pt")))
    f = f.to(dev)
    name = torch.cuda.get_device_name(0)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    ps = images(imgdir)

    class D(Dataset):
        def __len__(self):
            return len(ps)

        def __getitem__(self, i):
            im = Image.open(ps[i]).convert("RGB").resize((224, 224), Image.BILINEAR)
            x = torch.from_numpy(np.asarray(im, dtype=np.float32).transpose(2, 0, 1).copy()) / 255.0
            return (x - mean) / std

    def trunk_only(b, bench, copies, reps=5, n_batches=None):
        """img/s of the trunk alone. copies=False: input already on the GPU, output left there.
        copies=True: like vggcache's trunk-only bench, random input in pageable host memory copied to
        the device for every batch and the features copied back (`.cpu()`)."""
        torch.backends.cudnn.benchmark = bench
        x = torch.rand(b, 3, 224, 224) if copies else torch.rand(b, 3, 224, 224, device=dev)
        nb = n_batches or max(4, 2048 // b)

        def step():
            y = f(x.to(dev) if copies else x).flatten(1)
            return y.cpu() if copies else y

        with torch.inference_mode():
            for _ in range(3):
                step()
            torch.cuda.synchronize()
            rates = []
            for _ in range(reps):
                t = time.perf_counter()
                for _ in range(nb):
                    step()
                torch.cuda.synchronize()
                rates.append(nb * b / (time.perf_counter() - t))
        return statistics.median(rates)

    def end_to_end(b, bench):
        torch.backends.cudnn.benchmark = bench
        dl = DataLoader(D(), batch_size=b, num_workers=workers, pin_memory=True, prefetch_factor=4,
                        persistent_workers=False)
        n = 0
        t = time.perf_counter()
        with torch.inference_mode():
            for x in dl:
                y = f(x.to(dev, non_blocking=True)).flatten(1).cpu()
                n += len(y)
        return n / (time.perf_counter() - t), n

    for b in batches:
        for copies in (False, True):
            for bench in (False, True):
                r = trunk_only(b, bench, copies)
                print(json.dumps({"peer": "torch trunk-only" + (", host copies" if copies else ""), "gpu": name,
                                  "batch": b, "cudnn_benchmark": bench, "host_copies": copies,
                                  "img_per_s": round(r, 1)}), flush=True)
        # One warm pass of the images (page cache, cudnn plans), then the timed one.
        end_to_end(b, True)
        r, n = end_to_end(b, True)
        print(json.dumps({"peer": "torch DataLoader e2e", "gpu": name, "batch": b, "workers": workers,
                          "images": n, "cudnn_benchmark": True, "img_per_s": round(r, 1)}), flush=True)


def read(cache):
    import pyarrow as pa, pyarrow.parquet as pq
    files = sorted(glob.glob(os.path.join(cache, "**", "*.parquet"), recursive=True))
    t = pa.concat_tables([pq.read_table(f, columns=["path", "features"]) for f in files])
    col = t.column("features").combine_chunks()
    x = col.values.to_numpy(zero_copy_only=False).reshape(-1, col.type.list_size)
    paths = t.column("path").to_pylist()
    order = np.argsort(paths)
    return [paths[i] for i in order], x[order]


def agree(a, b):
    pa_, xa = read(a)
    pb, xb = read(b)
    assert pa_ == pb, f"the caches hold different images ({len(pa_)} vs {len(pb)})"
    rel = np.abs(xa - xb).max(1) / np.maximum(np.abs(xb).max(1), 1e-30)
    fro = float(np.linalg.norm(xa - xb) / np.linalg.norm(xb))
    print(json.dumps({"agree": [a, b], "images": len(pa_), "rel_max_median": float(np.median(rel)),
                      "rel_max_worst": float(rel.max()), "rel_fro": fro}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "make-trunk":
        make_trunk(args[0])
    elif cmd == "peer":
        peer(args[0], args[1], [int(b) for b in args[2:]], int(os.environ.get("PEER_WORKERS", "16")))
    elif cmd == "agree":
        agree(args[0], args[1])
    else:
        sys.exit(__doc__)
