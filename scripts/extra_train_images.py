"""Extra real training images for the 2,000-row logistic benchmark (docs/BENCHMARKS.md section 5).

    python3 scripts/extra_train_images.py OUT [DATA]      # DATA: ../shared/data (default)

OUT/train/{cat,dog}/ gets a horizontal flip (PIL, JPEG quality 95) of every catsdogs train image and a
link to every catsdogs-gray train image; `vggcache extract --images OUT --out CACHE` then gives real
features of 1,347 images that are neither the catsdogs val images nor their flips.
"""
import glob, os, sys
from PIL import Image

out = sys.argv[1]
data = sys.argv[2] if len(sys.argv) > 2 else "../shared/data"
for c in ("cat", "dog"):
    os.makedirs(os.path.join(out, "train", c), exist_ok=True)
    for f in sorted(glob.glob(f"{data}/catsdogs/train/{c}/*.jpg")):
        o = os.path.join(out, "train", c, "flip_" + os.path.basename(f))
        if not os.path.exists(o):
            Image.open(f).convert("RGB").transpose(Image.FLIP_LEFT_RIGHT).save(o, quality=95)
    for f in sorted(glob.glob(f"{data}/catsdogs-gray/train/{c}/*.jpg")):
        o = os.path.join(out, "train", c, "gray_" + os.path.basename(f))
        if not os.path.exists(o):
            os.symlink(os.path.abspath(f), o)
