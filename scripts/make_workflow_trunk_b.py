"""Makes tests/fixtures/workflow/tiny_trunk_b.onnx: tests/fixtures/tiny_trunk.onnx with other weights.

Same graph, input/output contract and preprocessing metadata as the shared tiny trunk; every weight and
bias redrawn from another seed (8 instead of 7) with the same distributions, and the provenance says
so. Its fingerprint (sha256 of the file) differs, so a head trained on its features must be refused on
a cache of the shared tiny trunk (tests/it/workflow.rs). Run from the repo root with the project venv:
    .venv/bin/python scripts/make_workflow_trunk_b.py
"""
import os

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = os.path.join(os.path.dirname(__file__), "..")
SRC = os.path.join(ROOT, "tests", "fixtures", "tiny_trunk.onnx")
OUT = os.path.join(ROOT, "tests", "fixtures", "workflow", "tiny_trunk_b.onnx")

model = onnx.load(SRC)
rng = np.random.default_rng(8)
scales = {"w1": 0.5, "b1": 0.1, "w2": 0.3, "b2": 0.1}  # as scripts/make_tiny_trunk.py
for init in model.graph.initializer:
    old = numpy_helper.to_array(init)
    new = rng.normal(0, scales[init.name], old.shape).astype(np.float32)
    init.CopyFrom(numpy_helper.from_array(new, init.name))
for prop in model.metadata_props:
    if prop.key == "vggcache.provenance":
        prop.value = "tiny random conv net B (seed 8) made by scripts/make_workflow_trunk_b.py (tests only)"
onnx.checker.check_model(model, full_check=True)
os.makedirs(os.path.dirname(OUT), exist_ok=True)
onnx.save(model, OUT)
print(f"wrote {os.path.relpath(OUT, ROOT)} ({os.path.getsize(OUT)} bytes)")
