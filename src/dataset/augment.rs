//! Views of one decoded image: the recipe (flip, crop, colour jitter) a cache row records, the
//! seeded training recipes and the fixed test-time ones, and [`apply`] on an RGB image.
//!
//! Pure functions: a recipe is a function of (content hash, view index, view seed), and applying
//! it is a function of (image, recipe), so a re-run makes the same view bit for bit.

use image::{imageops, RgbImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Which family a view belongs to: a random training augmentation or a fixed test-time view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewKind {
    /// A seeded random augmentation of a training image ([`train_recipe`]).
    Aug,
    /// A deterministic test-time view ([`tta_recipe`]).
    Tta,
}

/// How one view is made from the decoded image, as recorded (JSON) in the cache's
/// `view_recipe` column. Applied in this order: crop, flip, colour jitter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewRecipe {
    /// Training augmentation or test-time view.
    pub kind: ViewKind,
    /// The view seed the recipe was drawn with (`--view-seed`; 0 for test-time views).
    pub seed: u64,
    /// Crop box as fractions of the image `[x, y, w, h]`, each in `[0, 1]`, `x + w <= 1`,
    /// `y + h <= 1`; `None` keeps the whole image.
    pub crop: Option<[f32; 4]>,
    /// Mirror left to right.
    pub flip: bool,
    /// Brightness factor (1 = unchanged): every channel times this.
    pub brightness: f32,
    /// Contrast factor (1 = unchanged): blend with the image's mean grey.
    pub contrast: f32,
    /// Saturation factor (1 = unchanged): blend with the pixel's grey.
    pub saturation: f32,
}

/// The random resized crop's area range, a fraction of the image. torchvision's
/// `RandomResizedCrop` default is (0.08, 1); a milder (0.35, 1) keeps the object in view for a
/// frozen trunk whose features are pooled over the whole frame.
pub const CROP_SCALE: (f32, f32) = (0.35, 1.0);
/// The random resized crop's aspect-ratio range (torchvision's default, 3/4 to 4/3).
pub const CROP_RATIO: (f32, f32) = (3.0 / 4.0, 4.0 / 3.0);
/// Mild colour jitter: brightness, contrast and saturation factors drawn from `1 ± JITTER`
/// (torchvision's `ColorJitter(0.2, 0.2, 0.2)`).
pub const JITTER: f32 = 0.2;
/// Side of each of the five test-time crops, a fraction of the image's side (224 of 256, as the
/// usual `Resize(256) + FiveCrop(224)`).
pub const TTA_CROP: f32 = 0.875;
/// Number of test-time views besides the plain one: a flip and five crops.
pub const TTA_VIEWS: u32 = 6;

impl ViewRecipe {
    /// The plain view: whole image, no flip, no jitter.
    pub fn identity(kind: ViewKind, seed: u64) -> ViewRecipe {
        ViewRecipe {
            kind,
            seed,
            crop: None,
            flip: false,
            brightness: 1.0,
            contrast: 1.0,
            saturation: 1.0,
        }
    }

    /// The recipe as the one-line JSON a cache row records.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a recipe serialises to JSON")
    }

    /// A recipe read back from [`ViewRecipe::to_json`]'s text.
    pub fn from_json(text: &str) -> Result<ViewRecipe, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The crop box in pixels of a `width x height` image: `(x, y, w, h)`, always inside the
    /// image and at least 1x1 (the whole image when there is no crop).
    pub fn crop_box(&self, width: u32, height: u32) -> (u32, u32, u32, u32) {
        let Some([fx, fy, fw, fh]) = self.crop else {
            return (0, 0, width, height);
        };
        let side = |f: f32, n: u32| ((f.clamp(0.0, 1.0) * n as f32).round() as u32).clamp(1, n);
        let (w, h) = (side(fw, width), side(fh, height));
        let at =
            |f: f32, n: u32, len: u32| ((f.clamp(0.0, 1.0) * n as f32).floor() as u32).min(n - len);
        (at(fx, width, w), at(fy, height, h), w, h)
    }
}

/// A seed per (image, view, view seed): FNV-1a over the content hash, then SplitMix64 mixing.
fn view_stream(content_hash: &str, view: u32, view_seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in content_hash.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut z = h ^ view_seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (u64::from(view) << 32);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The random training recipe of view `view` (1-based) of the image with `content_hash`:
/// a random resized crop ([`CROP_SCALE`], [`CROP_RATIO`]; torchvision's 10 tries, then the
/// whole image), a flip with probability 1/2, colour jitter of ±[`JITTER`]. The same inputs give
/// the same recipe on every machine.
pub fn train_recipe(content_hash: &str, view: u32, view_seed: u64) -> ViewRecipe {
    let mut rng = StdRng::seed_from_u64(view_stream(content_hash, view, view_seed));
    let mut crop = None;
    for _ in 0..10 {
        let area = rng.random_range(CROP_SCALE.0..=CROP_SCALE.1);
        let log_ratio = rng.random_range(CROP_RATIO.0.ln()..=CROP_RATIO.1.ln());
        let ratio = log_ratio.exp();
        // Fractions of a unit square: w * h = area, w / h = ratio.
        let (w, h) = ((area * ratio).sqrt(), (area / ratio).sqrt());
        if w <= 1.0 && h <= 1.0 {
            let x = rng.random_range(0.0..=1.0 - w);
            let y = rng.random_range(0.0..=1.0 - h);
            crop = Some([x, y, w, h]);
            break;
        }
    }
    let flip = rng.random_bool(0.5);
    let mut jitter = || rng.random_range(1.0 - JITTER..=1.0 + JITTER);
    ViewRecipe {
        kind: ViewKind::Aug,
        seed: view_seed,
        crop,
        flip,
        brightness: jitter(),
        contrast: jitter(),
        saturation: jitter(),
    }
}

/// The fixed test-time view `view` (1..=[`TTA_VIEWS`]): 1 the flipped image, 2..=6 the five
/// crops of side [`TTA_CROP`] (top-left, top-right, bottom-left, bottom-right, centre).
/// `None` for any other index.
pub fn tta_recipe(view: u32) -> Option<ViewRecipe> {
    let mut r = ViewRecipe::identity(ViewKind::Tta, 0);
    let s = TTA_CROP;
    let far = 1.0 - s;
    let mid = far / 2.0;
    match view {
        1 => r.flip = true,
        2 => r.crop = Some([0.0, 0.0, s, s]),
        3 => r.crop = Some([far, 0.0, s, s]),
        4 => r.crop = Some([0.0, far, s, s]),
        5 => r.crop = Some([far, far, s, s]),
        6 => r.crop = Some([mid, mid, s, s]),
        _ => return None,
    }
    Some(r)
}

/// Horizontal mirror of `img`.
pub fn flip(img: &RgbImage) -> RgbImage {
    imageops::flip_horizontal(img)
}

/// The pixels of `img` inside `(x, y, w, h)` (see [`ViewRecipe::crop_box`]; callers keep the
/// box inside the image).
pub fn crop(img: &RgbImage, (x, y, w, h): (u32, u32, u32, u32)) -> RgbImage {
    imageops::crop_imm(img, x, y, w, h).to_image()
}

/// Colour jitter: brightness (scale), contrast (blend with the mean grey of the image),
/// saturation (blend with each pixel's grey, ITU-R 601 weights), each factor 1 = unchanged,
/// values rounded and clamped to 0..=255.
pub fn jitter(img: &RgbImage, brightness: f32, contrast: f32, saturation: f32) -> RgbImage {
    if brightness == 1.0 && contrast == 1.0 && saturation == 1.0 {
        return img.clone();
    }
    let grey = |p: [f32; 3]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let n = (img.width() as f64 * img.height() as f64).max(1.0);
    let mean = img
        .pixels()
        .map(|p| f64::from(grey(p.0.map(|v| f32::from(v) * brightness))))
        .sum::<f64>()
        / n;
    let mean = mean as f32;
    let mut out = img.clone();
    for p in out.pixels_mut() {
        let mut v = p.0.map(|c| f32::from(c) * brightness);
        v = v.map(|c| mean + (c - mean) * contrast);
        let g = grey(v);
        v = v.map(|c| g + (c - g) * saturation);
        p.0 = v.map(|c| c.round().clamp(0.0, 255.0) as u8);
    }
    out
}

/// The view of `img` that `recipe` describes: crop, then flip, then colour jitter.
pub fn apply(img: &RgbImage, recipe: &ViewRecipe) -> RgbImage {
    let mut out = match recipe.crop {
        Some(_) => crop(img, recipe.crop_box(img.width(), img.height())),
        None => img.clone(),
    };
    if recipe.flip {
        out = flip(&out);
    }
    jitter(&out, recipe.brightness, recipe.contrast, recipe.saturation)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([
                (x * 37 % 256) as u8,
                (y * 91 % 256) as u8,
                ((x + y) * 13 % 256) as u8,
            ])
        })
    }

    #[test]
    fn flip_twice_is_the_identity_and_flip_once_mirrors() {
        let img = image(7, 5);
        assert_eq!(flip(&flip(&img)), img);
        let once = flip(&img);
        assert_eq!(once.get_pixel(0, 2), img.get_pixel(6, 2));
        assert_ne!(once, img);
    }

    #[test]
    fn the_identity_recipe_returns_the_image_unchanged() {
        let img = image(9, 4);
        assert_eq!(apply(&img, &ViewRecipe::identity(ViewKind::Aug, 3)), img);
    }

    #[test]
    fn crop_boxes_stay_inside_the_image_for_any_seed_and_size() {
        for (w, h) in [(1, 1), (2, 3), (17, 5), (224, 224), (640, 31)] {
            for view in 1..=40 {
                let r = train_recipe(&format!("hash{w}x{h}"), view, 7);
                let (x, y, cw, ch) = r.crop_box(w, h);
                assert!(cw >= 1 && ch >= 1, "{r:?} on {w}x{h}");
                assert!(
                    x + cw <= w && y + ch <= h,
                    "{r:?} on {w}x{h}: {x},{y},{cw},{ch}"
                );
                let out = apply(&image(w, h), &r);
                assert_eq!((out.width(), out.height()), (cw, ch));
                if let Some([fx, fy, fw, fh]) = r.crop {
                    assert!(
                        fx >= 0.0 && fy >= 0.0 && fx + fw <= 1.0 + 1e-6 && fy + fh <= 1.0 + 1e-6
                    );
                    let area = fw * fh;
                    assert!((CROP_SCALE.0 - 1e-4..=CROP_SCALE.1 + 1e-4).contains(&area));
                }
                for f in [r.brightness, r.contrast, r.saturation] {
                    assert!((1.0 - JITTER..=1.0 + JITTER).contains(&f));
                }
            }
        }
    }

    #[test]
    fn recipes_are_seeded_by_hash_view_and_view_seed() {
        let a = train_recipe("abc", 1, 0);
        assert_eq!(a, train_recipe("abc", 1, 0));
        assert_ne!(a, train_recipe("abc", 2, 0));
        assert_ne!(a, train_recipe("abd", 1, 0));
        assert_ne!(a, train_recipe("abc", 1, 1));
        let img = image(40, 30);
        assert_eq!(apply(&img, &a), apply(&img, &train_recipe("abc", 1, 0)));
        // Round-trips through the JSON the cache records.
        assert_eq!(ViewRecipe::from_json(&a.to_json()).unwrap(), a);
    }

    #[test]
    fn tta_views_are_a_flip_and_five_crops_in_the_corners_and_centre() {
        let img = image(16, 16);
        assert_eq!(apply(&img, &tta_recipe(1).unwrap()), flip(&img));
        let boxes: Vec<_> = (2..=6)
            .map(|v| tta_recipe(v).unwrap().crop_box(16, 16))
            .collect();
        assert_eq!(
            boxes,
            [
                (0, 0, 14, 14),
                (2, 0, 14, 14),
                (0, 2, 14, 14),
                (2, 2, 14, 14),
                (1, 1, 14, 14)
            ]
        );
        assert!(tta_recipe(0).is_none() && tta_recipe(TTA_VIEWS + 1).is_none());
    }

    #[test]
    fn jitter_moves_brightness_and_keeps_grey_grey_under_saturation() {
        let grey = RgbImage::from_pixel(3, 3, image::Rgb([100, 100, 100]));
        assert_eq!(jitter(&grey, 1.0, 1.0, 0.5), grey);
        assert_eq!(
            jitter(&grey, 1.2, 1.0, 1.0).get_pixel(1, 1).0,
            [120, 120, 120]
        );
        assert_eq!(
            jitter(&grey, 1.0, 0.8, 1.0),
            grey,
            "contrast about the mean of a flat image"
        );
    }
}
