"""Makes tests/fixtures/tiny_trunk.onnx: a small conv net with the trunk contract, and its expected output.

input [N,3,16,16] -> Conv3x3(3->4,pad1) ReLU MaxPool2 -> Conv3x3(4->8,pad1) ReLU MaxPool2 -> Flatten -> [N,128].
The expected output for a fixed input is computed here with plain numpy loops (independent of ONNX
Runtime) and written as tiny_trunk_io.json. Run from the repo root with the project venv:
    .venv/bin/python scripts/make_tiny_trunk.py
"""
import json
import os
import sys

import numpy as np
import onnx

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "models"))
from vgg16_onnx import set_metadata  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
rng = np.random.default_rng(7)
w1 = rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32)
b1 = rng.normal(0, 0.1, 4).astype(np.float32)
w2 = rng.normal(0, 0.3, (8, 4, 3, 3)).astype(np.float32)
b2 = rng.normal(0, 0.1, 8).astype(np.float32)


def conv(x, w, b):  # x (C,H,W), w (O,C,3,3), pad 1, cross-correlation as ONNX Conv
    c, h, wd = x.shape
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    y = np.zeros((w.shape[0], h, wd), np.float64)
    for o in range(w.shape[0]):
        for i in range(h):
            for j in range(wd):
                y[o, i, j] = np.sum(p[:, i:i + 3, j:j + 3] * w[o]) + b[o]
    return y


def pool(x):
    c, h, w = x.shape
    return x.reshape(c, h // 2, 2, w // 2, 2).max(axis=(2, 4))


def forward(x):
    y = pool(np.maximum(conv(x, w1, b1), 0))
    y = pool(np.maximum(conv(y, w2, b2), 0))
    return y.reshape(-1)


nodes = [
    helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    helper.make_node("Relu", ["c1"], ["r1"]),
    helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
    helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
    helper.make_node("Relu", ["c2"], ["r2"]),
    helper.make_node("MaxPool", ["r2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
    helper.make_node("Flatten", ["p2"], ["features"], axis=1),
]
inits = [numpy_helper.from_array(a, n) for a, n in [(w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2")]]
graph = helper.make_graph(nodes, "tiny_trunk",
                          [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 16, 16])],
                          [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", 128])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="vggcache-tests")
model.ir_version = 8
pre = {"width": 16, "height": 16, "channel_order": "rgb", "scale": 1.0 / 255.0,
       "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "resize": "bilinear-antialias"}
set_metadata(model, pre, "tiny random conv net made by scripts/make_tiny_trunk.py (tests only)", "tests")
onnx.checker.check_model(model, full_check=True)
onnx.save(model, os.path.join(OUT, "tiny_trunk.onnx"))

x = rng.normal(0, 1, (2, 3, 16, 16)).astype(np.float32)
y = np.stack([forward(x[i].astype(np.float64)) for i in range(2)]).astype(np.float32)
with open(os.path.join(OUT, "tiny_trunk_io.json"), "w") as f:
    json.dump({"input_shape": list(x.shape), "input": x.reshape(-1).tolist(),
               "output_shape": list(y.shape), "output": y.reshape(-1).tolist()}, f)
print("wrote tests/fixtures/tiny_trunk.onnx and tiny_trunk_io.json")
