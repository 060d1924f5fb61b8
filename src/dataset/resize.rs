//! Pillow-exact antialiased bilinear resize of RGB 8-bit images (`Image.resize(size, BILINEAR)`).
//!
//! Pillow (`src/libImaging/Resample.c`) resamples in two separable passes (horizontal first, or
//! vertical first for images whose height shrinks much more), each rounding to 8 bits; weights come from a triangle filter whose support is
//! `max(1, in/out)` source pixels, normalised to sum 1, then fixed point with 22 fractional bits.
//! This follows the same arithmetic step by step, so its output equals Pillow's bit for bit
//! (checked against Pillow in `tests/it/dataset.rs`). fast_image_resize's convolution uses 15-bit
//! coefficients instead (Pillow-SIMD's choice) and lands within 1 of Pillow.

/// Fractional bits of the fixed-point weights: Pillow's `PRECISION_BITS` (32 - 8 - 2).
const PRECISION_BITS: u32 = 22;

/// Weights of one pass: output `i` reads `count[i]` inputs from `start[i]` with weights
/// `k[i * ksize..][..count[i]]`.
struct Coeffs {
    start: Vec<usize>,
    count: Vec<usize>,
    ksize: usize,
    k: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear filter (support 1).
fn coeffs(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support 1.0 * filterscale
    let ksize = support.ceil() as usize * 2 + 1;
    let inv = 1.0 / filterscale;
    let mut c = Coeffs {
        start: Vec::with_capacity(out_size),
        count: Vec::with_capacity(out_size),
        ksize,
        k: vec![0; out_size * ksize],
    };
    let mut w = vec![0f64; ksize];
    for i in 0..out_size {
        let center = (i as f64 + 0.5) * scale;
        // `as i64` truncates toward zero like C's (int) cast.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(ksize);
        let mut total = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(n) {
            let t = (((x + xmin) as f64 - center + 0.5) * inv).abs();
            *wx = if t < 1.0 { 1.0 - t } else { 0.0 };
            total += *wx;
        }
        for (x, wx) in w.iter().enumerate().take(n) {
            let v = if total != 0.0 { wx / total } else { *wx };
            let f = v * f64::from(1u32 << PRECISION_BITS);
            c.k[i * ksize + x] = if v < 0.0 {
                (f - 0.5) as i32
            } else {
                (f + 0.5) as i32
            };
        }
        c.start.push(xmin);
        c.count.push(n);
    }
    c
}

/// Pillow's `clip8`: drop the fraction (arithmetic shift), clamp to 0..=255.
#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// Horizontal pass: `rows` rows of `src: (_, src_w, 3)` starting at row `first`, into
/// `out: (rows, dst_w, 3)` with the weights `c` (dst_w outputs).
fn horizontal(src: &[u8], src_w: usize, first: usize, rows: usize, c: &Coeffs, out: &mut [u8]) {
    let dst_w = c.start.len();
    assert_eq!(
        out.len(),
        rows * dst_w * 3,
        "horizontal pass output is not (rows, dst_w, 3)"
    );
    for (y, out_row) in out.chunks_exact_mut(dst_w * 3).enumerate() {
        let in_row = &src[(y + first) * src_w * 3..(y + first + 1) * src_w * 3];
        for (x, out_px) in out_row.chunks_exact_mut(3).enumerate() {
            let (s, n) = (c.start[x], c.count[x]);
            let k = &c.k[x * c.ksize..x * c.ksize + n];
            let (mut r, mut g, mut b) = (HALF, HALF, HALF);
            for (kk, p) in k.iter().zip(in_row[s * 3..(s + n) * 3].chunks_exact(3)) {
                r += i32::from(p[0]) * kk;
                g += i32::from(p[1]) * kk;
                b += i32::from(p[2]) * kk;
            }
            out_px[0] = clip8(r);
            out_px[1] = clip8(g);
            out_px[2] = clip8(b);
        }
    }
}

/// Vertical pass: `src: (_, width, 3)` whose row 0 is source row `row_offset`, into
/// `out: (dst_h, width, 3)` with the weights `c` (dst_h outputs).
fn vertical(src: &[u8], width: usize, row_offset: usize, c: &Coeffs, out: &mut [u8]) {
    let w3 = width * 3;
    let mut acc = vec![0i32; w3];
    // Whole rows at a time: integer sums, so the order does not change results.
    for (y, out_row) in out.chunks_exact_mut(w3).enumerate() {
        acc.fill(HALF);
        let (s, n) = (c.start[y] - row_offset, c.count[y]);
        for (t, kk) in c.k[y * c.ksize..y * c.ksize + n].iter().enumerate() {
            let row = &src[(s + t) * w3..(s + t + 1) * w3];
            for (a, p) in acc.iter_mut().zip(row) {
                *a += i32::from(*p) * kk;
            }
        }
        for (o, a) in out_row.iter_mut().zip(&acc) {
            *o = clip8(*a);
        }
    }
}

/// Resize `src: (src_h, src_w, 3)` to `dst: (dst_h, dst_w, 3)` exactly as Pillow 13's
/// `Image.resize((dst_w, dst_h), BILINEAR)` on an RGB image. `tmp` is scratch space.
///
/// A pass whose size does not change is skipped. Pass order: horizontal first, except when the
/// height shrinks and `src_h - dst_h > 2 * (src_w - dst_w)`, where Pillow >= 13 runs the vertical
/// pass first (python-pillow/Pillow#9549; rule checked against Pillow 13.0 on 400 random sizes).
/// Pillow < 13 always ran horizontal first: for such shapes it differs from this by at most 1.
///
/// Panics if a size is zero or a buffer length does not match its size.
pub(super) fn resize_rgb8_pil(
    src: &[u8],
    (src_w, src_h): (usize, usize),
    dst: &mut [u8],
    (dst_w, dst_h): (usize, usize),
    tmp: &mut Vec<u8>,
) {
    assert!(
        src_w > 0 && src_h > 0 && dst_w > 0 && dst_h > 0,
        "resize sizes must be non-zero"
    );
    assert_eq!(src.len(), src_w * src_h * 3, "src is not (src_h, src_w, 3)");
    assert_eq!(dst.len(), dst_w * dst_h * 3, "dst is not (dst_h, dst_w, 3)");
    let need_h = dst_w != src_w;
    let need_v = dst_h != src_h;
    match (need_h, need_v) {
        (false, false) => dst.copy_from_slice(src),
        (true, false) => horizontal(src, src_w, 0, src_h, &coeffs(src_w, dst_w), dst),
        (false, true) => vertical(src, src_w, 0, &coeffs(src_h, dst_h), dst),
        (true, true) => {
            let (hor, vert) = (coeffs(src_w, dst_w), coeffs(src_h, dst_h));
            let vertical_first =
                src_h > dst_h && (src_h - dst_h) as i64 > 2 * (src_w as i64 - dst_w as i64);
            if vertical_first {
                tmp.clear();
                tmp.resize(dst_h * src_w * 3, 0);
                vertical(src, src_w, 0, &vert, tmp);
                horizontal(tmp, src_w, 0, dst_h, &hor, dst);
            } else {
                // Only the source rows the vertical pass reads.
                let first = vert.start[0];
                let last = vert.start[dst_h - 1] + vert.count[dst_h - 1];
                tmp.clear();
                tmp.resize((last - first) * dst_w * 3, 0);
                horizontal(src, src_w, first, last - first, &hor, tmp);
                vertical(tmp, dst_w, first, &vert, dst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for (i, o) in [(500, 224), (224, 224), (97, 224), (1000, 3), (3, 1000)] {
            let c = coeffs(i, o);
            for x in 0..o {
                let s: i32 = c.k[x * c.ksize..x * c.ksize + c.count[x]].iter().sum();
                assert!(
                    (s - (1 << PRECISION_BITS)).abs() <= c.count[x] as i32,
                    "{i}->{o} at {x}: {s}"
                );
                assert!(c.start[x] + c.count[x] <= i);
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![77u8; 37 * 23 * 3];
        let mut dst = vec![0u8; 224 * 224 * 3];
        resize_rgb8_pil(&src, (37, 23), &mut dst, (224, 224), &mut Vec::new());
        assert!(dst.iter().all(|&v| v == 77));
        let mut dst = vec![0u8; 5 * 4 * 3];
        resize_rgb8_pil(&src, (37, 23), &mut dst, (5, 4), &mut Vec::new());
        assert!(dst.iter().all(|&v| v == 77));
    }
}
