"""Reference EfficientNet-Lite0 trunk output with torch (eager), for tests/it/efficientnet.rs.

usage: .venv-torch/bin/python scripts/reference/effnet_reference.py X.npy Y.npy
X.npy: float32 (N,3,224,224), already preprocessed by vggcache; Y.npy gets the torch trunk's (N,1280)
features: the same module models/export_efficientnet_lite0.py exports, run by torch instead of ONNX.
"""
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
from export_efficientnet_lite0 import load_trunk  # noqa: E402

src, dst = sys.argv[1], sys.argv[2]
x = np.load(src)
assert x.dtype == np.float32 and x.ndim == 4, f"{src}: expected float32 (N,3,H,W), got {x.dtype} {x.shape}"
with torch.no_grad():
    y = load_trunk()(torch.from_numpy(x)).numpy()
np.save(dst, y.astype(np.float32))
