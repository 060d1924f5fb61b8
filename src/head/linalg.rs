//! Matrix products for the head: a safe ndarray-view wrapper over the `gemm` crate's f32 kernel.
//!
//! All products of the head go through [`matmul`]; views may be transposed (any strides), so
//! `x.t()` costs nothing. The backend was chosen by measurement against ndarray's own
//! `general_mat_mul` (matrixmultiply with threading): see docs/BENCHMARKS.md.

use ndarray::{ArrayView2, ArrayViewMut2, Axis};

/// How many threads one product may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    /// Run on the calling thread (used inside rayon tasks that already split the work).
    Serial,
    /// Split the product over the current rayon pool.
    Pool,
}

/// `c = a · b` (or `c += a · b` when `accumulate`).
///
/// Shapes: `a: (m, k)`, `b: (k, n)`, `c: (m, n)`. Panics if the shapes disagree (an internal
/// invariant: every caller builds its buffers from the same layer sizes).
pub fn matmul(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    mut c: ArrayViewMut2<f32>,
    accumulate: bool,
    threads: Threads,
) {
    let (m, k) = a.dim();
    let (k2, n) = b.dim();
    assert_eq!(
        k, k2,
        "matmul: inner dimensions differ: a is ({m}, {k}), b is ({k2}, {n})"
    );
    assert_eq!(
        c.dim(),
        (m, n),
        "matmul: c is {:?}, expected ({m}, {n})",
        c.dim()
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c.fill(0.0);
        }
        return;
    }
    match threads {
        Threads::Serial => gemm_into(a, b, c, accumulate, gemm::Parallelism::None),
        Threads::Pool => {
            let parts = 2 * rayon::current_num_threads().max(1);
            split_columns(a, b, c, accumulate, parts);
        }
    }
}

/// Split `c` and `b` by columns into `parts` blocks (multiples of 16 columns) computed in
/// parallel by [`rayon::join`], each block one serial product. Measured faster than the `gemm`
/// crate's own rayon mode for the head's short-and-wide products (`m` = batch = 64).
fn split_columns(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    c: ArrayViewMut2<f32>,
    accumulate: bool,
    parts: usize,
) {
    let n = b.ncols();
    if parts <= 1 || n < 32 {
        gemm_into(a, b, c, accumulate, gemm::Parallelism::None);
        return;
    }
    let left_parts = parts / 2;
    let mid = ((n * left_parts / parts).div_ceil(16) * 16).min(n);
    if mid == 0 || mid == n {
        gemm_into(a, b, c, accumulate, gemm::Parallelism::None);
        return;
    }
    let (bl, br) = b.split_at(Axis(1), mid);
    let (cl, cr) = c.split_at(Axis(1), mid);
    rayon::join(
        || split_columns(a, bl, cl, accumulate, left_parts),
        || split_columns(a, br, cr, accumulate, parts - left_parts),
    );
}

/// `c = a · b` (or `c += a · b`) as one call to `gemm` (runtime-dispatched AVX2/FMA kernels) with
/// its own `parallelism`: the head uses `Parallelism::None` (inside its rayon column blocks); the
/// head bench also times `gemm`'s own rayon mode through it. Shapes as in [`matmul`], checked here.
pub fn gemm_into(
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
    mut c: ArrayViewMut2<f32>,
    accumulate: bool,
    parallelism: gemm::Parallelism,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    assert!(
        b.nrows() == k && c.dim() == (m, n),
        "gemm_into: a {:?}, b {:?}, c {:?}",
        a.dim(),
        b.dim(),
        c.dim()
    );
    if n == 0 {
        return;
    }
    let (cs, as_, bs) = (c.strides().to_vec(), a.strides(), b.strides());
    // SAFETY: the pointers and strides come from live ndarray views whose shapes were checked
    // above to be (m, k), (k, n) and (m, n); `c` is borrowed mutably and cannot alias `a` or
    // `b` (the borrow checker forbids a shared and a mutable view of one array at once).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            cs[1],
            cs[0],
            accumulate,
            a.as_ptr(),
            as_[1],
            as_[0],
            b.as_ptr(),
            bs[1],
            bs[0],
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn naive(a: ArrayView2<f32>, b: ArrayView2<f32>) -> Array2<f32> {
        let (m, k) = a.dim();
        let n = b.ncols();
        Array2::from_shape_fn((m, n), |(i, j)| (0..k).map(|p| a[[i, p]] * b[[p, j]]).sum())
    }

    #[test]
    fn matches_naive_loops_with_transposes() {
        let a = Array2::from_shape_fn((13, 7), |(i, j)| ((i * 7 + j) % 11) as f32 - 5.0);
        let b = Array2::from_shape_fn((13, 9), |(i, j)| ((i * 3 + j * 5) % 7) as f32 - 3.0);
        let mut c = Array2::<f32>::from_elem((7, 9), 1.0);
        matmul(a.t(), b.view(), c.view_mut(), false, Threads::Serial);
        assert_eq!(c, naive(a.t(), b.view()));
        let mut c2 = Array2::<f32>::from_elem((7, 9), 1.0);
        matmul(a.t(), b.view(), c2.view_mut(), true, Threads::Pool);
        assert_eq!(c2, naive(a.t(), b.view()) + 1.0);
    }
}
