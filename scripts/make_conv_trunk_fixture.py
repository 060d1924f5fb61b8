"""Makes tests/fixtures/baseline/conv_trunk.onnx: a tiny trunk for the export tests.

input "image" [N, 3, 8, 8] float -> Conv(3->4, 3x3, pad 1) -> Relu -> "conv_features" [N, 4, 8, 8].
The output is left 4-D on purpose, so the exported trunk+head must Flatten it (D = 256). Opset 13 and
IR 7, older than the head's own opset 17 / IR 8, so the merge is checked against another version.
Weights from numpy's default_rng(5). Run with the main venv (numpy + onnx):

    .venv/bin/python scripts/make_conv_trunk_fixture.py
"""
import json, os
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(5)
w = (rng.normal(size=(4, 3, 3, 3)) * 0.4).astype(np.float32)
b = (rng.normal(size=(4,)) * 0.1).astype(np.float32)
graph = helper.make_graph(
    [helper.make_node("Conv", ["image", "conv.w", "conv.b"], ["conv.out"], pads=[1, 1, 1, 1]),
     helper.make_node("Relu", ["conv.out"], ["conv_features"])],
    "conv_trunk",
    [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 8, 8])],
    [helper.make_tensor_value_info("conv_features", TensorProto.FLOAT, ["N", 4, 8, 8])],
    [numpy_helper.from_array(w, "conv.w"), numpy_helper.from_array(b, "conv.b")],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=7,
                          producer_name="scripts/make_conv_trunk_fixture.py")
spec = {"width": 8, "height": 8, "channel_order": "rgb", "scale": 1 / 255, "mean": [0.5] * 3,
        "std": [0.25] * 3, "resize": "bilinear-antialias"}
helper.set_model_props(model, {"vggcache.preprocess": json.dumps(spec), "vggcache.source": "tests"})
onnx.checker.check_model(model, full_check=True)
out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "baseline", "conv_trunk.onnx")
onnx.save(model, out)
print(out, os.path.getsize(out), "bytes")
