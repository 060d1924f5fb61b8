"""Real VGG16 trunk features for benches/cache.rs: N images of the real catsdogs set through the
ONNX trunk (onnxruntime, CPU), caffe-BGR preprocessing, written as raw little-endian float32 (N, D).

    python scripts/bench/bench_features.py MODEL.onnx IMAGES_DIR OUT.f32 [N]
    VGGCACHE_BENCH_FEATURES=OUT.f32 cargo bench --bench cache
"""
import os, sys
import numpy as np
import onnxruntime as ort
from PIL import Image

model, images, out = sys.argv[1:4]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 256
paths = sorted(os.path.join(r, f) for r, _, fs in os.walk(images) for f in fs if f.lower().endswith(".jpg"))
paths = paths[:: max(1, len(paths) // n)][:n]
s = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
name = s.get_inputs()[0].name
mean = np.array([104.00699, 116.66877, 122.67892], np.float32).reshape(3, 1, 1)
with open(out, "wb") as f:
    for i in range(0, len(paths), 16):
        x = np.stack([(np.asarray(Image.open(p).convert("RGB").resize((224, 224), Image.BILINEAR), np.float32)
                       [:, :, ::-1].transpose(2, 0, 1) - mean) for p in paths[i:i + 16]])
        y = s.run(None, {name: np.ascontiguousarray(x)})[0].reshape(len(x), -1).astype("<f4")
        f.write(y.tobytes())
print(f"{len(paths)} images -> {out}, dim {y.shape[1]}, zero fraction {(y == 0).mean():.3f}")
