"""Lower-precision copies of a vggcache trunk for CPU: a static int8 (QDQ) trunk calibrated on your images, or fp16.

int8: onnxruntime.quantization.quantize_static, QDQ format, per-channel symmetric int8 weights, per-tensor
uint8 activations (U8S8, what ONNX Runtime's CPU kernels run with AVX-512 VNNI / AVX-VNNI), calibrated on
COUNT images sampled evenly from the sorted image paths under CALIB. Each calibration image is preprocessed
exactly as vggcache preprocesses it for this trunk: the fp32 model's `vggcache.preprocess` metadata (PIL open,
EXIF transpose, RGB, `resize((w, h), BILINEAR)` = the antialiased bilinear vggcache matches, then
`(pixel[channel_order] * scale - mean) / std`, CHW).
fp16: every float initializer stored as float16, the input cast to float16 and the output back to float32
(ONNX Runtime runs fp16 ops its CPU provider lacks through inserted casts). bf16 is not offered: ONNX Conv
does not take bfloat16 (ONNX Runtime rejects such a graph), so the conv trunk cannot run in bf16.

The output keeps the trunk contract (float32 `input` [N,3,H,W] -> float32 `features` [N,D]) and every
`vggcache.*` metadata key of the fp32 model, so `vggcache extract --model OUT` / `--trunk NAME` loads it;
`vggcache.quantization` (JSON) says what was done: format, the fp32 model's file name and sha256, the
calibration (folder, count, method, sample rule) and the onnxruntime version. Its sha256 differs from the
fp32 file's, so vggcache's caches and heads made with one are refused by the other.

usage: python models/quantize_trunk.py FP32.onnx OUT.onnx --calib DIR [--count 32]
           [--method minmax|entropy|percentile] [--keep-fp32 first,last] [--format int8|fp16]
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

EXT = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def cpu_flags():
    """The CPU feature flags of /proc/cpuinfo (empty set where there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def vnni_note():
    flags = cpu_flags()
    found = sorted(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    if found:
        return True, f"CPU has {', '.join(found)}: ONNX Runtime runs the int8 convs with VNNI dot products"
    return False, ("CPU has no VNNI (avx512_vnni / avx_vnni not in /proc/cpuinfo): U8S8 convs sum uint8 x int8 "
                   "pairs in 16 bits here and saturate with 8-bit weights (vggcache refuses an 8-bit int8 trunk "
                   "on such a CPU); expect less speed-up than with VNNI")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def image_paths(folder):
    paths = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        paths += [os.path.join(root, f) for f in files if f.lower().endswith(EXT) and not f.startswith(".")]
    return sorted(paths, key=lambda p: os.path.relpath(p, folder))


def sample(paths, count):
    """`count` paths spread evenly over the sorted list (all classes of a class-folder layout)."""
    if count >= len(paths):
        return paths
    idx = np.linspace(0, len(paths) - 1, count).round().astype(int)
    return [paths[i] for i in sorted(set(idx.tolist()))]


def preprocess(path, spec):
    """One image as vggcache makes its tensor for `spec`: float32 (1, 3, h, w)."""
    from PIL import Image, ImageOps

    im = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    im = im.resize((spec["width"], spec["height"]), Image.BILINEAR)
    x = np.asarray(im, dtype=np.float32)
    if spec["channel_order"] == "bgr":
        x = x[:, :, ::-1]
    x = (x * np.float32(spec["scale"]) - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)


def conv_names(model):
    return [n.name for n in model.graph.node if n.op_type == "Conv"]


def named(model):
    """Gives every unnamed node a name (quantize_static's nodes_to_exclude matches names)."""
    for i, n in enumerate(model.graph.node):
        if not n.name:
            n.name = f"{n.op_type.lower()}_{i}"
    return model


def to_fp16(model):
    g = model.graph
    for init in g.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))
    inp, out = g.input[0].name, g.output[0].name
    for n in g.node:
        n.input[:] = [f"{inp}_fp16" if i == inp else i for i in n.input]
        n.output[:] = [f"{out}_fp16" if o == out else o for o in n.output]
    g.node.insert(0, helper.make_node("Cast", [inp], [f"{inp}_fp16"], to=TensorProto.FLOAT16, name="cast_in_fp16"))
    g.node.append(helper.make_node("Cast", [f"{out}_fp16"], [out], to=TensorProto.FLOAT, name="cast_out_fp32"))
    del g.value_info[:]
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fp32")
    ap.add_argument("out")
    ap.add_argument("--format", default="int8", choices=["int8", "fp16"])
    ap.add_argument("--calib", help="image folder to calibrate on (int8; searched recursively)")
    ap.add_argument("--count", type=int, default=32, help="calibration images (default 32)")
    ap.add_argument("--method", default="minmax", choices=["minmax", "entropy", "percentile"])
    ap.add_argument("--keep-fp32", default="", help="convs left in fp32: comma list of first, last")
    ap.add_argument("--reduce-range", default="auto", choices=["auto", "on", "off"],
                    help="7-bit weights (onnxruntime's reduce_range), which keeps U8S8 convs from saturating on "
                         "CPUs without VNNI; auto (default): on when this CPU has no VNNI")
    a = ap.parse_args()

    src = onnx.load(a.fp32)
    meta = {p.key: p.value for p in src.metadata_props}
    if "vggcache.preprocess" not in meta:
        sys.exit(f"{a.fp32}: no vggcache.preprocess metadata: not a vggcache trunk (build it with models/)")
    spec = json.loads(meta["vggcache.preprocess"])
    info = {"format": a.format, "from_model": os.path.basename(a.fp32), "from_sha256": sha256(a.fp32)}
    import onnxruntime

    info["onnxruntime"] = onnxruntime.__version__
    has_vnni, note = vnni_note()
    reduce_range = {"on": True, "off": False, "auto": not has_vnni}[a.reduce_range]
    note += f"; weights: {'7' if reduce_range else '8'}-bit (--reduce-range {a.reduce_range})"

    if a.format == "fp16":
        model = to_fp16(src)
        info["scheme"] = "fp16 weights and activations, float32 input/output through Cast"
        what = "fp16"
    else:
        from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                              quantize_static)

        if not a.calib:
            sys.exit("--calib DIR is needed for int8: a folder of your images to calibrate on")
        paths = sample(image_paths(a.calib), a.count)
        if not paths:
            sys.exit(f"--calib {a.calib}: no images ({', '.join(EXT)}) found")
        print(f"{note}", file=sys.stderr)
        print(f"calibrating on {len(paths)} images from {a.calib} ({a.method})", file=sys.stderr)
        input_name = src.graph.input[0].name

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter(paths)

            def get_next(self):
                p = next(self.it, None)
                return None if p is None else {input_name: preprocess(p, spec)}

        named(src)
        convs = conv_names(src)
        keep = [k for k in a.keep_fp32.split(",") if k]
        exclude = [convs[{"first": 0, "last": -1}[k]] for k in keep]
        method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "percentile": CalibrationMethod.Percentile}[a.method]
        with tempfile.TemporaryDirectory() as tmp:
            named_path = os.path.join(tmp, "named.onnx")
            onnx.save(src, named_path)
            quantize_static(named_path, a.out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=method, nodes_to_exclude=exclude, reduce_range=reduce_range,
                            extra_options={"CalibTensorRangeSymmetric": False})
        model = onnx.load(a.out)
        info["scheme"] = ("static QDQ int8: per-channel symmetric int8 weights, per-tensor asymmetric uint8 "
                          "activations (onnxruntime.quantization.quantize_static)")
        info["calibration"] = {"images": os.path.abspath(a.calib), "count": len(paths), "method": a.method,
                               "sample": "evenly spaced over the sorted image paths"}
        info["kept_fp32"] = keep
        info["cpu_vnni_at_build"] = has_vnni
        info["reduce_range"] = reduce_range
        what = (f"int8 (static QDQ, {len(paths)} {a.method} calibration images"
                f"{', ' + '+'.join(keep) + ' conv fp32' if keep else ''}{', 7-bit weights' if reduce_range else ''})")

    meta["vggcache.provenance"] = f"{what} quantization of {info['from_model']} (sha256 {info['from_sha256'][:12]}…): " \
        + meta.get("vggcache.provenance", "")
    meta["vggcache.quantization"] = json.dumps(info)
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
    onnx.save(model, a.out)
    print(f"wrote {a.out} ({os.path.getsize(a.out) / 1e6:.1f} MB, {what}) from {a.fp32}")
    if a.format == "int8":
        print(f"cpu: {note}")


if __name__ == "__main__":
    main()
