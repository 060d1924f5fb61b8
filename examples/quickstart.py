# %% [markdown]
# # vggcache quick start (a notebook as a script: run it with `python examples/quickstart.py`,
# # or open it in Jupyter / VS Code, where each `# %%` is a cell)
#
# Extract features of an image folder once with the frozen VGG16 trunk, read them as numpy
# arrays, train a small head on them in seconds and predict with it.
#
# Settings: IMAGES is a folder of class folders (train/cat/x.jpg, val/dog/y.jpg, or cat/x.jpg);
# MODEL an ONNX trunk file (default: the installed vgg16 trunk, `vggcache models install vgg16`).

# %%
import os

import numpy as np

import vggcache

IMAGES = os.environ.get("VGGCACHE_IMAGES", "data/catsdogs")
MODEL = os.environ.get("VGGCACHE_MODEL")  # None: the trunk named "vgg16"
WORK = os.environ.get("VGGCACHE_WORK", ".")

# %% [markdown]
# ## 1. Extract: one feature vector per image, cached as Parquet (resumable; re-runs are instant)

# %%
summary = vggcache.extract(IMAGES, cache=f"{WORK}/cache", model=MODEL)
print(f"{summary.extracted} extracted, {summary.reused} reused, {summary.skipped} skipped "
      f"({summary.images_per_second:.1f} img/s on {summary.provider})")

# %% [markdown]
# ## 2. Read the features: X (N, D) float32, y (N,) int64, paths

# %%
cache = vggcache.open_cache(f"{WORK}/cache")
print(cache)
X, y, paths = cache.features("train")
print(X.shape, X.dtype, np.bincount(y), paths[:2])

# %% [markdown]
# ## 3. Train a head on the cached features (the run folder keeps the head and its report)

# %%
run = vggcache.train_head(f"{WORK}/cache", name="quickstart", runs_dir=f"{WORK}/runs", epochs=5,
                          hidden=[256])
for m in run.metrics:
    print(f"epoch {m['epoch']}: val loss {m['val_loss']:.3f}, val acc {m['val_acc']:.3f}")
print("kept epoch", run.best_epoch, "->", run.path)

# %% [markdown]
# ## 4. Predict: on features (the head's scaler is applied for you) or straight on images

# %%
head = vggcache.load_head(run)
Xv, yv, _ = cache.features("val")
proba = head.predict_features(Xv)
print("val accuracy", float((proba.argmax(axis=1) == yv).mean()))

folder = os.path.join(IMAGES, "val") if os.path.isdir(os.path.join(IMAGES, "val")) else IMAGES
some_paths, some_proba = head.predict_images(folder, model=MODEL, cache=f"{WORK}/predict-cache")
print(list(zip(some_paths[:3], some_proba[:3].round(3).tolist())))

# %% [markdown]
# ## 5. The head beside a logistic regression and the majority class

# %%
for row in vggcache.compare_baselines(f"{WORK}/cache", head=run, out=f"{WORK}/compare"):
    print(f"{row['name']:<50} accuracy {row['accuracy']:.3f}  log loss {row['log_loss']:.3f}")
