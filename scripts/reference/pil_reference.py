"""PIL reference outputs for vggcache's decode + resize (tests/it/dataset.rs compares against them).

The seed recipe's `Resize([224, 224])` on a PIL image is `Image.resize((224, 224), BILINEAR)`:
a triangle filter whose support grows with the downscale factor (antialiased). vggcache resizes
with fast_image_resize's convolution bilinear; these files let the tests measure the difference.

  python scripts/reference/pil_reference.py fixtures [OUT]     small committed fixtures (default tests/fixtures/dataset):
      resize_*.png inputs + resize_*_WxH_pil.png = PIL resize(BILINEAR) of them; cmyk.jpg (+ its PIL RGB)
  python scripts/reference/pil_reference.py dump IMAGES OUT [--full-every K]
      for every image under IMAGES (sorted relative paths): OUT/list.tsv (index, rel_path, width,
      height, exif orientation), OUT/resized/I.rgb = PIL open -> exif_transpose -> convert("RGB") ->
      resize((224,224), BILINEAR) as raw (224,224,3) uint8, and for every K-th image OUT/full/I.rgb =
      the decoded RGB before resizing, raw (height,width,3) uint8.

Run with the project's python (numpy + pillow), e.g. .venv/bin/python from the project root.
"""
import argparse
import os
import sys

import numpy as np
from PIL import Image, ImageOps

EXT = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


def synthetic(w, h, seed):
    """An image with edges, gradients and mild noise that compresses well as PNG."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 127 + 120 * np.sin(x / 5.0 + seed) * np.cos(y / 9.0)
    g = np.where(((x // 7) + (y // 7)) % 2 == 0, 230, 20).astype(np.float32)
    b = 255 * x / max(w - 1, 1) * 0.5 + 255 * y / max(h - 1, 1) * 0.5
    img = np.stack([r, g, b], axis=-1) + rng.integers(-3, 4, size=(h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def fixtures(out):
    os.makedirs(out, exist_ok=True)
    cases = {"resize_a": (300, 200, [(224, 224), (64, 48)]),   # downscale, non-uniform factors
             "resize_b": (97, 61, [(224, 224)]),              # upscale
             "resize_c": (451, 377, [(224, 224)]),            # odd sizes, ~2x downscale
             "resize_d": (131, 300, [(224, 224), (100, 90)])}  # tall: Pillow >= 13 runs the vertical pass first
    for i, (name, (w, h, targets)) in enumerate(cases.items()):
        im = synthetic(w, h, i)
        im.save(os.path.join(out, f"{name}.png"), optimize=True)
        for tw, th in targets:
            im.resize((tw, th), Image.BILINEAR).save(os.path.join(out, f"{name}_{tw}x{th}_pil.png"), optimize=True)
    cmyk = synthetic(40, 30, 7).convert("CMYK")
    cmyk.save(os.path.join(out, "cmyk.jpg"), quality=95)
    Image.open(os.path.join(out, "cmyk.jpg")).convert("RGB").save(os.path.join(out, "cmyk_pil_rgb.png"))
    print("wrote", sorted(os.listdir(out)))


def dump(images, out, full_every):
    paths = []
    for root, dirs, files in os.walk(images):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        paths += [os.path.join(root, f) for f in files if f.lower().endswith(EXT) and not f.startswith(".")]
    rel = sorted(os.path.relpath(p, images).replace(os.sep, "/") for p in paths)
    os.makedirs(os.path.join(out, "resized"), exist_ok=True)
    os.makedirs(os.path.join(out, "full"), exist_ok=True)
    rotated = 0
    with open(os.path.join(out, "list.tsv"), "w") as f:
        for i, r in enumerate(rel):
            im = Image.open(os.path.join(images, r))
            orient = im.getexif().get(0x0112, 1)
            rotated += orient not in (1, None)
            im = ImageOps.exif_transpose(im).convert("RGB")
            f.write(f"{i}\t{r}\t{im.width}\t{im.height}\t{orient}\n")
            np.asarray(im.resize((224, 224), Image.BILINEAR), dtype=np.uint8).tofile(os.path.join(out, "resized", f"{i}.rgb"))
            if full_every > 0 and i % full_every == 0:
                np.asarray(im, dtype=np.uint8).tofile(os.path.join(out, "full", f"{i}.rgb"))
    print(f"dumped {len(rel)} images ({rotated} with an EXIF orientation other than 1) to {out}", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", choices=["fixtures", "dump"])
    ap.add_argument("args", nargs="*")
    ap.add_argument("--full-every", type=int, default=10)
    a = ap.parse_args()
    if a.cmd == "fixtures":
        fixtures(a.args[0] if a.args else os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "dataset"))
    else:
        if len(a.args) != 2:
            sys.exit("usage: pil_reference.py dump IMAGES OUT")
        dump(a.args[0], a.args[1], a.full_every)


if __name__ == "__main__":
    main()
