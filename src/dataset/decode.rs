//! One image file → RGB 8-bit (`decode_rgb8`) → resized, normalised `(3, H, W)` tensor (`preprocess_into`).

use std::cell::RefCell;
use std::io::{Cursor, Read};
use std::path::Path;

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};

use super::resize::resize_rgb8_pil;
use super::DatasetError;
use crate::spec::{ChannelOrder, PreprocessSpec};

/// Guards against decompression bombs and absurd files. A file over any limit is skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted width in pixels. Default 32,768.
    pub max_width: u32,
    /// Largest accepted height in pixels. Default 32,768.
    pub max_height: u32,
    /// Largest accepted `width * height`. Default 178,956,970: twice PIL's `MAX_IMAGE_PIXELS`
    /// (89,478,485), where PIL raises `DecompressionBombError`.
    pub max_pixels: u64,
    /// Most bytes a decoder may allocate at once (`image::Limits::max_alloc`). Default 1 GiB.
    pub max_alloc_bytes: u64,
    /// Largest file read into memory. Default 256 MiB.
    pub max_file_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        Self {
            max_width: 32_768,
            max_height: 32_768,
            max_pixels: 2 * 89_478_485,
            max_alloc_bytes: 1 << 30,
            max_file_bytes: 256 << 20,
        }
    }
}

/// The resize named by [`PreprocessSpec::resize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeFilter {
    /// `"bilinear-antialias"`: Pillow's `Image.resize(size, BILINEAR)` bit for bit (triangle filter
    /// whose support grows with the downscale factor, 22-bit fixed point), see `resize.rs`.
    BilinearAntialias,
    /// `"bilinear-antialias-fir"`: the same filter through fast_image_resize's SIMD convolution
    /// (15-bit weights): faster, within 1 of Pillow per value.
    BilinearAntialiasFir,
}

impl ResizeFilter {
    /// The filter named `name` in a preprocessing spec.
    pub fn parse(name: &str) -> Result<Self, DatasetError> {
        match name {
            "bilinear-antialias" => Ok(Self::BilinearAntialias),
            "bilinear-antialias-fir" => Ok(Self::BilinearAntialiasFir),
            _ => Err(DatasetError::UnknownResize {
                name: name.to_string(),
            }),
        }
    }
}

/// Check what [`preprocess_into`] relies on: a known resize filter, non-zero size, finite scale and
/// mean, every `std > 0`. Call once before decoding; `preprocess_into` panics on a spec that fails it.
pub fn check_spec(spec: &PreprocessSpec) -> Result<(), DatasetError> {
    ResizeFilter::parse(&spec.resize)?;
    let bad = |reason: String| Err(DatasetError::BadSpec { reason });
    if spec.width == 0 || spec.height == 0 {
        return bad(format!(
            "input size must be non-zero, got {}x{}",
            spec.width, spec.height
        ));
    }
    if !spec.scale.is_finite() || spec.mean.iter().any(|m| !m.is_finite()) {
        return bad(format!(
            "scale and mean must be finite, got scale {} mean {:?}",
            spec.scale, spec.mean
        ));
    }
    if spec.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return bad(format!(
            "every std must be finite and > 0, got {:?}",
            spec.std
        ));
    }
    Ok(())
}

/// Decode an image file to RGB 8-bit, whatever its extension says (the format is sniffed from the
/// content), with its EXIF orientation applied.
///
/// Gray, gray+alpha, RGBA, CMYK (JPEG) and 16-bit inputs become RGB 8-bit: alpha is dropped (as
/// PIL's `convert("RGB")` does), 16-bit values are rounded to 8 bits. GIF: the first frame.
/// Every failure is an `Err` with a one-line reason for the skip list; this never panics on data.
pub fn decode_rgb8(path: &Path, limits: &DecodeLimits) -> Result<RgbImage, String> {
    let bytes = read_file(path, limits.max_file_bytes)?;
    decode_rgb8_bytes(&bytes, limits)
}

/// [`decode_rgb8`] on bytes already in memory.
pub fn decode_rgb8_bytes(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, String> {
    if bytes.is_empty() {
        return Err("empty file (0 bytes)".into());
    }
    let format = image::guess_format(bytes).map_err(|_| {
        let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!(
            "not an image: content is not JPEG, PNG, GIF, WebP or BMP (first bytes {})",
            head.join(" ")
        )
    })?;
    if !matches!(
        format,
        ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::Gif
            | ImageFormat::WebP
            | ImageFormat::Bmp
    ) {
        return Err(format!(
            "unsupported image format {format:?} (supported: JPEG, PNG, GIF, WebP, BMP)"
        ));
    }
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(bytes)?;
    }
    let name = format_name(format);

    let mut reader = ImageReader::new(Cursor::new(bytes));
    reader.set_format(format);
    let mut l = image::Limits::default();
    l.max_image_width = Some(limits.max_width);
    l.max_image_height = Some(limits.max_height);
    l.max_alloc = Some(limits.max_alloc_bytes);
    reader.limits(l);
    let mut decoder = reader.into_decoder().map_err(|e| describe(name, e))?;
    let (w, h) = decoder.dimensions();
    let pixels = u64::from(w) * u64::from(h);
    if pixels > limits.max_pixels {
        return Err(format!(
            "image too large: {w}x{h} = {pixels} pixels, limit {} (decompression-bomb guard)",
            limits.max_pixels
        ));
    }
    if w == 0 || h == 0 {
        return Err(format!("{name} has zero size ({w}x{h})"));
    }
    // A broken EXIF block should not lose an otherwise good image: fall back to no rotation.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder).map_err(|e| describe(name, e))?;
    img.apply_orientation(orientation);
    Ok(img.into_rgb8())
}

fn format_name(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Jpeg => "JPEG",
        ImageFormat::Png => "PNG",
        ImageFormat::Gif => "GIF",
        ImageFormat::WebP => "WebP",
        ImageFormat::Bmp => "BMP",
        _ => "image",
    }
}

fn describe(name: &str, e: ImageError) -> String {
    match e {
        ImageError::Limits(e) => {
            format!("{name} exceeds decoding limits (decompression-bomb guard): {e}")
        }
        ImageError::Unsupported(e) => format!("unsupported {name} variant: {e}"),
        ImageError::IoError(e) => format!("truncated or unreadable {name} data: {e}"),
        ImageError::Decoding(e) => format!("corrupt or truncated {name}: {e}"),
        e => format!("cannot decode {name}: {e}"),
    }
}

fn read_file(path: &Path, max_bytes: u64) -> Result<Vec<u8>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("unreadable: {e}"))?;
    let len = file
        .metadata()
        .map_err(|e| format!("unreadable: {e}"))?
        .len();
    if len > max_bytes {
        return Err(format!("file too large: {len} bytes, limit {max_bytes}"));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("unreadable: {e}"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!("file too large: over {max_bytes} bytes"));
    }
    Ok(bytes)
}

/// The JPEG decoder fills missing data with gray instead of failing, so a cut-off file would give a
/// half-gray image. Require a start-of-scan marker and an end-of-image marker after it (inside
/// entropy-coded data 0xFF is always stuffed, so `FF D9` there is the real marker).
fn check_jpeg_complete(b: &[u8]) -> Result<(), String> {
    let mut i = 2; // after SOI (guess_format checked FF D8 FF)
    let sos = loop {
        while i < b.len() && b[i] == 0xFF {
            i += 1; // fill bytes
        }
        if i >= b.len() || b[i - 1] != 0xFF {
            return Err("truncated or corrupt JPEG: headers end before the image data".into());
        }
        let marker = b[i];
        i += 1;
        match marker {
            0xDA => break i,
            0xD9 => return Err("corrupt JPEG: end-of-image marker before any image data".into()),
            0x01 | 0xD0..=0xD7 => continue,
            _ => {
                if i + 2 > b.len() {
                    return Err("truncated JPEG: headers end before the image data".into());
                }
                let len = usize::from(u16::from_be_bytes([b[i], b[i + 1]]));
                i += len;
            }
        }
    };
    if !b[sos..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err("truncated JPEG: end-of-image marker missing (file cut off?)".into());
    }
    Ok(())
}

/// Per-thread resize state: fast_image_resize's resizer (it keeps scratch buffers), the
/// Pillow-exact pass's scratch rows, and the resized output.
#[derive(Default)]
struct Scratch {
    fir: Resizer,
    tmp: Vec<u8>,
    out: Vec<u8>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Resize `img` to `width x height` with `filter` into `s.out`: `(height, width, 3)` bytes.
fn resize_into(img: &RgbImage, width: u32, height: u32, filter: ResizeFilter, s: &mut Scratch) {
    let n = width as usize * height as usize * 3;
    s.out.resize(n, 0);
    if img.width() == width && img.height() == height {
        s.out.copy_from_slice(img.as_raw()); // Pillow returns a copy too
        return;
    }
    match filter {
        ResizeFilter::BilinearAntialias => resize_rgb8_pil(
            img.as_raw(),
            (img.width() as usize, img.height() as usize),
            &mut s.out,
            (width as usize, height as usize),
            &mut s.tmp,
        ),
        ResizeFilter::BilinearAntialiasFir => {
            let src = ImageRef::new(img.width(), img.height(), img.as_raw(), PixelType::U8x3)
                .expect("an RgbImage buffer holds width * height * 3 bytes");
            let mut dst = Image::from_slice_u8(width, height, &mut s.out, PixelType::U8x3)
                .expect("destination buffer was sized to width * height * 3");
            let alg = ResizeAlg::Convolution(FilterType::Bilinear);
            s.fir
                .resize(&src, &mut dst, &ResizeOptions::new().resize_alg(alg))
                .expect("source and destination are both U8x3 with non-zero size");
        }
    }
}

/// Resize an RGB 8-bit image to `width x height` (both > 0) with `filter`.
pub fn resize_rgb8(img: &RgbImage, width: u32, height: u32, filter: ResizeFilter) -> RgbImage {
    assert!(
        width > 0 && height > 0,
        "resize target must be non-zero, got {width}x{height}"
    );
    let buf = SCRATCH.with(|s| {
        let s = &mut *s.borrow_mut();
        resize_into(img, width, height, filter, s);
        s.out.clone()
    });
    RgbImage::from_raw(width, height, buf).expect("buffer sized to width * height * 3")
}

/// Resize `img` to the spec's size and write the model's input tensor into `out`.
///
/// `out: (3, spec.height, spec.width)` CHW, length `spec.tensor_len()`;
/// `out[c][y][x] = (pixel[order[c]] * scale - mean[c]) / std[c]` with `pixel` the resized RGB value.
///
/// Panics if `out` has the wrong length or the spec fails [`check_spec`] (callers check it once).
pub fn preprocess_into(img: &RgbImage, spec: &PreprocessSpec, out: &mut [f32]) {
    assert_eq!(
        out.len(),
        spec.tensor_len(),
        "preprocess_into: out has {} elements, the spec's (3, {}, {}) tensor needs {}",
        out.len(),
        spec.height,
        spec.width,
        spec.tensor_len()
    );
    if let Err(e) = check_spec(spec) {
        panic!("preprocess_into called with an unchecked spec: {e}");
    }
    let filter = ResizeFilter::parse(&spec.resize).expect("checked above");
    let src_channel: [usize; 3] = match spec.channel_order {
        ChannelOrder::Rgb => [0, 1, 2],
        ChannelOrder::Bgr => [2, 1, 0],
    };
    // lut[c][v]: the normalised value of 8-bit pixel value v in output channel c.
    let mut lut = [[0f32; 256]; 3];
    for (c, table) in lut.iter_mut().enumerate() {
        for (v, t) in table.iter_mut().enumerate() {
            *t = (v as f32 * spec.scale - spec.mean[c]) / spec.std[c];
        }
    }
    let hw = spec.width as usize * spec.height as usize;
    SCRATCH.with(|s| {
        let s = &mut *s.borrow_mut();
        resize_into(img, spec.width, spec.height, filter, s);
        for (c, plane) in out.chunks_exact_mut(hw).enumerate() {
            let (table, ch) = (&lut[c], src_channel[c]);
            for (o, px) in plane.iter_mut().zip(s.out.chunks_exact(3)) {
                *o = table[usize::from(px[ch])];
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jpeg_completeness_check() {
        let img = RgbImage::from_fn(32, 24, |x, y| image::Rgb([x as u8 * 8, y as u8 * 10, 90]));
        let mut jpeg = Vec::new();
        img.write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
            .unwrap();
        assert!(check_jpeg_complete(&jpeg).is_ok());
        assert!(check_jpeg_complete(&jpeg[..jpeg.len() - 2]).is_err());
        assert!(check_jpeg_complete(&jpeg[..jpeg.len() / 2]).is_err());
        assert!(check_jpeg_complete(&jpeg[..40]).is_err());
    }
}
