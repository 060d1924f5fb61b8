"""What the JPEG decoder difference (zune-jpeg in vggcache vs libjpeg in PIL) does to the features.

usage: python scripts/decoder_feature_effect.py CACHE IMAGES [--n 64]

For the first N cached images of the val split (sorted by path), preprocesses the image file with PIL (decode, RGB, the
same antialiased bilinear resize to the model's input size, the model's own normalisation from the cache
manifest), runs the trunk named in the manifest with onnxruntime-python, and compares with vggcache's
cached features of the same file. Prints per-image relative error max|a-b| / max|b| (median / worst),
cosine similarity (worst), the fraction of features whose zero/non-zero pattern differs (ReLU flips), and
how many of the N predictions of a logistic regression fitted on the cache's train split (scikit-learn,
C=1, standardised) change when it is given the PIL features instead of vggcache's.
The resize is bit-exact with PIL (docs/BENCHMARKS.md section 1), so all of the difference is the decoder.
"""
import argparse, glob, json, os

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cache"); ap.add_argument("images"); ap.add_argument("--n", type=int, default=64)
    a = ap.parse_args()
    m = json.load(open(os.path.join(a.cache, "manifest.json")))
    spec = m["preprocess"]
    t = pa.concat_tables([pq.read_table(f, columns=["path", "split", "label", "features"])
                          for f in sorted(glob.glob(os.path.join(a.cache, "*.parquet")))])
    paths = t.column("path").to_pylist()
    split = t.column("split").to_pylist()
    label = np.array(t.column("label").to_pylist(), dtype=object)
    order = sorted((i for i in range(len(paths)) if split[i] != "train"), key=lambda i: paths[i])[: a.n]
    col = t.column("features").combine_chunks()
    X = col.values.to_numpy(zero_copy_only=False).reshape(-1, col.type.list_size)
    ours = X[order]
    mean = np.array(spec["mean"], np.float32).reshape(3, 1, 1)
    std = np.array(spec["std"], np.float32).reshape(3, 1, 1)
    xs = []
    for i in order:
        im = Image.open(os.path.join(a.images, paths[i])).convert("RGB")
        im = im.resize((spec["width"], spec["height"]), Image.BILINEAR)
        x = np.asarray(im, np.float32).transpose(2, 0, 1)
        if spec["channel_order"] == "bgr":
            x = x[::-1]
        xs.append((x * spec["scale"] - mean) / std)
    s = ort.InferenceSession(m["model"]["path"], providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    pil = np.concatenate([s.run(None, {name: np.stack(xs[j:j + 16]).astype(np.float32)})[0]
                          for j in range(0, len(xs), 16)])
    rel = np.abs(ours - pil).max(1) / np.abs(pil).max(1)
    cos = (ours * pil).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(pil, axis=1))
    flips = ((ours > 0) != (pil > 0)).mean()
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    tr = [i for i in range(len(paths)) if split[i] == "train" and label[i] is not None]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    clf.fit(X[tr], label[tr].astype(int))
    changed = int((clf.predict(ours) != clf.predict(pil)).sum())
    dp = float(np.abs(clf.predict_proba(ours)[:, 1] - clf.predict_proba(pil)[:, 1]).max())
    print(json.dumps({"images": len(order), "predictions_changed": changed, "max_prob_change": dp, "model": m["model"]["path"], "rel_max_median": float(np.median(rel)),
                      "rel_max_worst": float(rel.max()), "rel_fro": float(np.linalg.norm(ours - pil) / np.linalg.norm(pil)),
                      "cosine_worst": float(cos.min()), "cosine_median": float(np.median(cos)),
                      "relu_pattern_flips": float(flips)}))


if __name__ == "__main__":
    main()
