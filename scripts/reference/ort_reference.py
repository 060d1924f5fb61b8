"""Reference trunk output with onnxruntime-python, for tests/it/trunk.rs.

usage: python scripts/reference/ort_reference.py MODEL IN.f32 N OUT.f32
IN.f32: raw little-endian float32 (N,3,H,W); OUT.f32 gets the model's first output, raw float32.
"""
import sys

import numpy as np
import onnxruntime as ort

model, src, n, dst = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
inp = s.get_inputs()[0]
x = np.fromfile(src, dtype="<f4").reshape(n, 3, inp.shape[2], inp.shape[3])
y = s.run(None, {inp.name: x})[0]
y.astype("<f4").tofile(dst)
