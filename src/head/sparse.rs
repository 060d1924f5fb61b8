//! Layer 1 on sparse inputs: each batch row's non-zero features (CSR) and the forward and fused
//! weight-gradient + Adam kernels that skip the zeros, with the standardization folded in.
//!
//! VGG16's pool5 features are ~86% exact zeros per row, but the union of non-zero columns over a
//! batch of 64 is ~98% of the columns (catsdogs), so the kernels work per row, not per column set.
//! Standardization `x_std = (x − μ)/σ` maps zeros to `−μ/σ` (dense); it is folded into the kernels
//! with `x' = x/σ` (as sparse as `x`) and `u = μ/σ`:
//! - forward: `z = x_std·Wᵀ + b = x'·Wᵀ + (b − W·u)`;
//! - weight gradient: `dW = dzᵀ·x_std = dzᵀ·x' − db ⊗ u` with `db = 1ᵀ·dz` (the bias gradient).
//!
//! Both are exact in real arithmetic; in f32 they differ from the dense path by rounding (other
//! summation order, and `x/σ − μ/σ` for `(x − μ)/σ`). `W` is stored `(h, d)` row-major as in
//! [`super::mlp`].

use ndarray::{ArrayView2, ArrayViewMut2, Axis};
use rayon::prelude::*;

use super::adam::AdamStep;
use super::scaler::Standardizer;

/// Batch density (non-zeros / entries) below which [`SparsePolicy::Auto`] takes the sparse path.
/// At catsdogs' 0.14 the sparse step measured ~0.7x the dense one (loaded 2-core machine) and its
/// cost grows about linearly with density: break-even estimated near 0.2, not yet swept.
pub const AUTO_MAX_DENSITY: f64 = 0.2;

/// W rows per forward block and per weight-gradient task: eight 8-wide vectors of accumulators.
const R: usize = 64;
/// Columns per forward block: the transposed `(FWD_COLS, R)` block of W is 32 KiB (L1).
const FWD_COLS: usize = 128;
/// Columns per weight-gradient tile: the `(GRAD_COLS, R)` tile and its transpose, 64 KiB each.
const GRAD_COLS: usize = 256;

/// Which kernel layer 1 uses for the batch loaded in a [`super::Workspace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SparsePolicy {
    /// Sparse when the batch's density is below [`AUTO_MAX_DENSITY`], else dense.
    #[default]
    Auto,
    /// Always the dense product (no non-zero index is built).
    Dense,
    /// Always the sparse kernels.
    Sparse,
}

/// The non-zeros of a batch `x: (rows, d)`: row `r`'s columns are `idx[ptr[r]..ptr[r + 1]]`
/// (ascending) with values `val[..]` = `x/σ` (or `x` without a standardizer); `shift = μ/σ`
/// `(d,)`, empty without a standardizer.
#[derive(Debug, Clone, Default)]
pub struct SparseRows {
    d: usize,
    ptr: Vec<usize>,
    idx: Vec<u32>,
    val: Vec<f32>,
    shift: Vec<f32>,
    /// the same non-zeros by column: column `j`'s rows are `crow[cptr[j]..cptr[j + 1]]`
    /// (ascending) with values `cval[..]`
    cptr: Vec<usize>,
    crow: Vec<u32>,
    cval: Vec<f32>,
}

impl SparseRows {
    /// Index the non-zeros of `x: (rows, d)` (raw features, before standardization), scaled by
    /// `scaler` as the module doc says.
    pub fn load(&mut self, x: ArrayView2<f32>, scaler: Option<&Standardizer>) {
        self.d = x.ncols();
        assert!(self.d <= u32::MAX as usize, "sparse rows: d fits u32");
        self.ptr.clear();
        self.idx.clear();
        self.val.clear();
        self.ptr.push(0);
        match scaler {
            Some(sc) => {
                assert_eq!(sc.dim(), self.d, "standardizer vs features");
                self.shift.clear();
                self.shift
                    .extend(sc.mean.iter().zip(&sc.std).map(|(&m, &s)| m / s));
                for row in x.axis_iter(Axis(0)) {
                    for ((j, &v), &s) in row.iter().enumerate().zip(&sc.std) {
                        if v != 0.0 {
                            self.idx.push(j as u32);
                            self.val.push(v / s);
                        }
                    }
                    self.ptr.push(self.idx.len());
                }
            }
            None => {
                self.shift.clear();
                for row in x.axis_iter(Axis(0)) {
                    for (j, &v) in row.iter().enumerate() {
                        if v != 0.0 {
                            self.idx.push(j as u32);
                            self.val.push(v);
                        }
                    }
                    self.ptr.push(self.idx.len());
                }
            }
        }
        // by column: a counting sort of the row-ordered entries (rows stay ascending)
        self.cptr.clear();
        self.cptr.resize(self.d + 1, 0);
        for &j in &self.idx {
            self.cptr[j as usize + 1] += 1;
        }
        for j in 0..self.d {
            self.cptr[j + 1] += self.cptr[j];
        }
        let nnz = self.idx.len();
        self.crow.resize(nnz, 0);
        self.cval.resize(nnz, 0.0);
        let mut next = self.cptr[..self.d].to_vec();
        for r in 0..self.rows() {
            for k in self.ptr[r]..self.ptr[r + 1] {
                let j = self.idx[k] as usize;
                self.crow[next[j]] = r as u32;
                self.cval[next[j]] = self.val[k];
                next[j] += 1;
            }
        }
    }

    /// Rows indexed.
    pub fn rows(&self) -> usize {
        self.ptr.len().saturating_sub(1)
    }

    /// Non-zeros / `(rows · d)`; 0 for an empty batch.
    pub fn density(&self) -> f64 {
        let n = self.rows() * self.d;
        if n == 0 {
            0.0
        } else {
            self.idx.len() as f64 / n as f64
        }
    }
}

/// `z = x_std · Wᵀ + b` from the non-zeros. Shapes: `w: (h, d)` row-major, `b: (h,)`,
/// `z: (rows, h)`; `scratch` is resized to `h · (rows + 1)` (per W row: its `rows` partial
/// products, then `W_i · u`).
pub fn forward(
    sp: &SparseRows,
    w: &[f32],
    b: &[f32],
    mut z: ArrayViewMut2<f32>,
    scratch: &mut Vec<f32>,
) {
    let (rows, d, h) = (sp.rows(), sp.d, b.len());
    assert!(
        w.len() == h * d && z.dim() == (rows, h),
        "sparse forward: w {} vs ({h}, {d}), z {:?} vs ({rows}, {h})",
        w.len(),
        z.dim()
    );
    let stride = rows + 1;
    scratch.resize(h * stride, 0.0);
    scratch
        .par_chunks_mut(R * stride)
        .zip(w.par_chunks(R * d))
        .for_each(|(out, wb)| forward_block(sp, wb, out));
    for i in 0..h {
        let col = &scratch[i * stride..(i + 1) * stride];
        let bias = b[i] - col[rows];
        for r in 0..rows {
            z[[r, i]] = col[r] + bias;
        }
    }
}

/// One block of `≤ R` W rows `wb: (n, d)`: `out[t·(rows+1) + r] = Σ_{j∈nz(r)} W_tj·x'_rj`,
/// `out[t·(rows+1) + rows] = W_t · u`.
fn forward_block(sp: &SparseRows, wb: &[f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { forward_block_avx2(sp, wb, out) };
        return;
    }
    forward_block_portable(sp, wb, out);
}

/// [`forward_block`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn forward_block_avx2(sp: &SparseRows, wb: &[f32], out: &mut [f32]) {
    forward_block_portable(sp, wb, out);
}

#[inline(always)]
fn forward_block_portable(sp: &SparseRows, wb: &[f32], out: &mut [f32]) {
    let (rows, d) = (sp.rows(), sp.d);
    let n = wb.len() / d;
    let mut wt = vec![[0.0f32; R]; FWD_COLS];
    let mut acc = vec![[0.0f32; R]; rows];
    let mut cur: Vec<usize> = sp.ptr[..rows].to_vec();
    let mut cacc = [0.0f32; R];
    for c0 in (0..d).step_by(FWD_COLS) {
        let ct = FWD_COLS.min(d - c0);
        for t in 0..n {
            for (dst, &v) in wt[..ct].iter_mut().zip(&wb[t * d + c0..t * d + c0 + ct]) {
                dst[t] = v;
            }
        }
        if !sp.shift.is_empty() {
            for (wj, &u) in wt[..ct].iter().zip(&sp.shift[c0..c0 + ct]) {
                for (c, &w) in cacc.iter_mut().zip(wj) {
                    *c += w * u;
                }
            }
        }
        let c1 = (c0 + ct) as u32;
        for (r, a) in acc.iter_mut().enumerate() {
            let (mut k, end) = (cur[r], sp.ptr[r + 1]);
            let mut acc = *a;
            while k < end && sp.idx[k] < c1 {
                let (wj, v) = (&wt[sp.idx[k] as usize - c0], sp.val[k]);
                for (a, &w) in acc.iter_mut().zip(wj) {
                    *a += w * v;
                }
                k += 1;
            }
            *a = acc;
            cur[r] = k;
        }
    }
    let stride = rows + 1;
    for t in 0..n {
        for (r, a) in acc.iter().enumerate() {
            out[t * stride + r] = a[t];
        }
        out[t * stride + rows] = cacc[t];
    }
}

/// Where [`weight_grad`] sends each tile of the weight gradient: stored, or applied by Adam.
pub enum GradSink<'a> {
    /// `g: (h, d)` row-major.
    Store(&'a mut [f32]),
    /// One Adam step on `w, m, v: (h, d)` row-major.
    Adam {
        /// parameters
        w: &'a mut [f32],
        /// first moments
        m: &'a mut [f32],
        /// second moments
        v: &'a mut [f32],
        /// the step's constants
        step: AdamStep,
    },
}

enum Rows<'a> {
    Store(&'a mut [f32]),
    Adam(&'a mut [f32], &'a mut [f32], &'a mut [f32]),
}

/// `dW = dzᵀ · x_std` from the non-zeros, in tiles of `R × GRAD_COLS` (one rayon task per `R`
/// rows of W), each sent to `sink` while in cache. Shapes: `dz: (rows, h)`, `db: (h,)` = column
/// sums of `dz`, sink buffers `(h, d)` row-major.
pub fn weight_grad(sp: &SparseRows, dz: ArrayView2<f32>, db: &[f32], sink: GradSink<'_>) {
    let tile_rows = R;
    let (rows, d, h) = (sp.rows(), sp.d, dz.ncols());
    assert!(
        dz.nrows() == rows && db.len() == h,
        "sparse weight gradient: dz {:?}, db {}, rows {rows}",
        dz.dim(),
        db.len()
    );
    let chunk = tile_rows * d;
    let (parts, step): (Vec<Rows>, Option<AdamStep>) = match sink {
        GradSink::Store(g) => {
            assert_eq!(g.len(), h * d, "sparse weight gradient: g length");
            (g.chunks_mut(chunk).map(Rows::Store).collect(), None)
        }
        GradSink::Adam { w, m, v, step } => {
            assert!(
                w.len() == h * d && m.len() == h * d && v.len() == h * d,
                "sparse weight gradient: w, m, v lengths"
            );
            (
                w.chunks_mut(chunk)
                    .zip(m.chunks_mut(chunk))
                    .zip(v.chunks_mut(chunk))
                    .map(|((w, m), v)| Rows::Adam(w, m, v))
                    .collect(),
                Some(step),
            )
        }
    };
    parts.into_par_iter().enumerate().for_each(|(i, part)| {
        grad_task(sp, dz, db, i * tile_rows, part, step.as_ref());
    });
}

fn grad_task(
    sp: &SparseRows,
    dz: ArrayView2<f32>,
    db: &[f32],
    r0: usize,
    part: Rows<'_>,
    step: Option<&AdamStep>,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2 (checked just above).
        unsafe { grad_task_avx2(sp, dz, db, r0, part, step) };
        return;
    }
    grad_task_portable(sp, dz, db, r0, part, step);
}

/// [`grad_task`] compiled for AVX2.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn grad_task_avx2(
    sp: &SparseRows,
    dz: ArrayView2<f32>,
    db: &[f32],
    r0: usize,
    part: Rows<'_>,
    step: Option<&AdamStep>,
) {
    grad_task_portable(sp, dz, db, r0, part, step);
}

/// One task: W rows `r0..r0+nr` (`nr ≤ R`), all columns, tile by tile. Per column `j` the
/// gradient of the task's rows, `Σ_{r∈nz(j)} x'_rj · dz[r, r0..r0+nr]`, is summed in registers
/// (`R` lanes) into `tt: (ct, R)`, transposed in 8-column strips into `tile: (nr, ct)`, and each
/// row, less `db_i · u`, goes to the sink.
#[inline(always)]
fn grad_task_portable(
    sp: &SparseRows,
    dz: ArrayView2<f32>,
    db: &[f32],
    r0: usize,
    mut part: Rows<'_>,
    step: Option<&AdamStep>,
) {
    let (rows, d) = (sp.rows(), sp.d);
    let len = match &part {
        Rows::Store(g) => g.len(),
        Rows::Adam(w, _, _) => w.len(),
    };
    let nr = len / d;
    assert!(nr <= R, "sparse weight gradient: {nr} rows per task > {R}");
    // dz[:, r0..r0+nr], zero-padded to R lanes: (rows, R)
    let mut dzb = vec![[0.0f32; R]; rows];
    for (r, lane) in dzb.iter_mut().enumerate() {
        for (i, dst) in lane[..nr].iter_mut().enumerate() {
            *dst = dz[[r, r0 + i]];
        }
    }
    let mut tt = vec![[0.0f32; R]; GRAD_COLS];
    let mut tile = vec![0.0f32; R * GRAD_COLS];
    for c0 in (0..d).step_by(GRAD_COLS) {
        let ct = GRAD_COLS.min(d - c0);
        for (jj, out) in tt[..ct].iter_mut().enumerate() {
            let j = c0 + jj;
            let mut acc = [0.0f32; R];
            for k in sp.cptr[j]..sp.cptr[j + 1] {
                let (lane, v) = (&dzb[sp.crow[k] as usize], sp.cval[k]);
                for (a, &g) in acc.iter_mut().zip(lane) {
                    *a += v * g;
                }
            }
            *out = acc;
        }
        for jb in (0..ct).step_by(8) {
            let strip = &tt[jb..(jb + 8).min(ct)];
            for i in 0..nr {
                for (q, col) in strip.iter().enumerate() {
                    tile[i * ct + jb + q] = col[i];
                }
            }
        }
        for i in 0..nr {
            let g = &mut tile[i * ct..(i + 1) * ct];
            if !sp.shift.is_empty() {
                let dbi = db[r0 + i];
                for (gj, &u) in g.iter_mut().zip(&sp.shift[c0..c0 + ct]) {
                    *gj -= dbi * u;
                }
            }
            let o = i * d + c0;
            match &mut part {
                Rows::Store(out) => out[o..o + ct].copy_from_slice(g),
                Rows::Adam(w, m, v) => step.expect("Adam step").update(
                    &mut w[o..o + ct],
                    &mut m[o..o + ct],
                    &mut v[o..o + ct],
                    g,
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{s, Array2};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::super::adam::{Adam, AdamConfig};
    use super::super::mlp::Mlp;
    use super::super::scaler::Standardizer;
    use super::super::workspace::Workspace;
    use super::*;

    /// d crosses the forward (512) and gradient (256) column blocks; h1 = 150 is 9 forward blocks
    /// of 16 rows plus 6, and two gradient tasks of 128 + 22 rows.
    const DIMS: [usize; 4] = [1100, 150, 20, 3];

    /// `(rows, d)` post-ReLU-like features of the given density, with row 1 and columns
    /// `0..40` and `600..610` all zero.
    fn features(rows: usize, density: f64, seed: u64) -> Array2<f32> {
        let mut rng = StdRng::seed_from_u64(seed);
        Array2::from_shape_fn((rows, DIMS[0]), |(r, j)| {
            let dead = r == 1 || j < 40 || (600..610).contains(&j);
            if dead || rng.random::<f64>() >= density {
                0.0
            } else {
                rng.random::<f32>() * 3.0
            }
        })
    }

    /// `max |a − b| ≤ tol · max |a|` (relative to the largest entry: f32 sums of many terms).
    fn close_tol(a: &[f32], b: &[f32], tol: f32, what: &str) {
        assert_eq!(a.len(), b.len());
        let scale = a.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-3);
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(
            worst <= tol * scale,
            "{what}: max |sparse − dense| = {worst:e} against max |dense| {scale:e}"
        );
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        close_tol(a, b, 2e-5, what);
    }

    fn scalers(x: &Array2<f32>) -> [Option<Standardizer>; 2] {
        let rows: Vec<usize> = (0..x.nrows()).collect();
        [None, Some(Standardizer::fit(x.view(), &rows))]
    }

    fn loaded(x: &Array2<f32>, sc: Option<&Standardizer>, policy: SparsePolicy) -> Workspace {
        let mut ws = Workspace::new(&DIMS, x.nrows());
        ws.set_sparse_policy(policy);
        let idx: Vec<usize> = (0..x.nrows()).collect();
        ws.load_rows(x.view(), &idx, sc);
        assert_eq!(ws.sparse_path(), policy == SparsePolicy::Sparse);
        ws
    }

    #[test]
    fn density_counts_raw_non_zeros_and_auto_chooses_by_it() {
        let x = features(10, 0.1, 1);
        let nnz = x.iter().filter(|&&v| v != 0.0).count();
        for sc in scalers(&x) {
            let mut ws = Workspace::new(&DIMS, 10);
            let idx: Vec<usize> = (0..10).collect();
            ws.load_rows(x.view(), &idx, sc.as_ref());
            let want = nnz as f64 / (10 * DIMS[0]) as f64;
            assert_eq!(ws.density(), Some(want));
            assert!(
                ws.sparse_path(),
                "density {want} is below {AUTO_MAX_DENSITY}"
            );
            let dense = features(10, 0.9, 2);
            ws.load_rows(dense.view(), &idx, sc.as_ref());
            assert!(!ws.sparse_path(), "density {:?}", ws.density());
        }
    }

    /// Forward (train mode without dropout), gradients, one fused Adam step: sparse vs dense,
    /// raw and standardized, at several densities (incl. all-zero rows and columns).
    #[test]
    fn forward_gradients_and_adam_step_match_the_dense_path() {
        let y: Vec<usize> = (0..9).map(|i| i % 3).collect();
        for (k, density) in [0.0, 0.02, 0.14, 0.5, 1.0].into_iter().enumerate() {
            let x = features(9, density, 10 + k as u64);
            for sc in scalers(&x) {
                let what = format!("density {density}, standardized {}", sc.is_some());
                let mut mlp = Mlp::new(&DIMS, 3);
                let mut rng = StdRng::seed_from_u64(0);
                let mut run = |policy| {
                    let mut ws = loaded(&x, sc.as_ref(), policy);
                    mlp.forward_train(&mut ws, 0.0, &mut rng);
                    mlp.loss(&mut ws, &y);
                    let mut g = vec![0.0f32; mlp.n_params()];
                    mlp.backward_collect(&mut ws, 0.0, &mut g);
                    let mut stepped = mlp.clone();
                    let mut adam = Adam::new(AdamConfig::default(), mlp.n_params());
                    stepped.backward_adam(&mut ws, 0.0, &mut adam);
                    (ws.acts[0].clone(), ws.logits().to_owned(), g, stepped)
                };
                let (a_d, l_d, g_d, m_d) = run(SparsePolicy::Dense);
                let (a_s, l_s, g_s, m_s) = run(SparsePolicy::Sparse);
                close(
                    a_d.as_slice().unwrap(),
                    a_s.as_slice().unwrap(),
                    &format!("{what}: layer 1"),
                );
                close(
                    l_d.as_slice().unwrap(),
                    l_s.as_slice().unwrap(),
                    &format!("{what}: logits"),
                );
                let w1 = DIMS[0] * DIMS[1];
                close(&g_d[..w1], &g_s[..w1], &format!("{what}: dW1"));
                close(&g_d[w1..], &g_s[w1..], &format!("{what}: other gradients"));
                // Adam's first step is lr·g/(|g| + eps): near-zero gradients magnify rounding,
                // so the fused sparse step is checked against its own gradients, bit for bit.
                let mut want = mlp.params().to_vec();
                Adam::new(AdamConfig::default(), mlp.n_params()).step_flat(&mut want, &g_s);
                assert!(m_s.params() == want.as_slice(), "{what}: fused Adam step");
                let what = format!("{what}: after one Adam step");
                close_tol(m_d.params(), m_s.params(), 1e-4, &what);
            }
        }
    }

    /// Two epochs of mini-batch training with dropout: the same losses and weights (within
    /// float tolerance) on both paths.
    #[test]
    fn training_run_matches_the_dense_path() {
        let x = features(40, 0.14, 7);
        let y: Vec<usize> = (0..40).map(|i| (i * 7) % 3).collect();
        for sc in scalers(&x) {
            let mut out = vec![];
            for policy in [SparsePolicy::Dense, SparsePolicy::Auto] {
                let mut mlp = Mlp::new(&DIMS, 5);
                let mut adam = Adam::new(AdamConfig::default(), mlp.n_params());
                let mut ws = Workspace::new(&DIMS, 16);
                ws.set_sparse_policy(policy);
                let mut rng = StdRng::seed_from_u64(9);
                let mut losses = vec![];
                for _ in 0..2 {
                    for start in (0..40).step_by(16) {
                        let idx: Vec<usize> = (start..(start + 16).min(40)).collect();
                        ws.load_rows(x.view(), &idx, sc.as_ref());
                        assert_eq!(ws.sparse_path(), policy == SparsePolicy::Auto);
                        let yb: Vec<usize> = idx.iter().map(|&i| y[i]).collect();
                        let (l, _) = mlp.train_step(&mut ws, &yb, 0.5, &mut adam, &mut rng);
                        losses.push(l as f32);
                    }
                }
                let eval = mlp.forward_eval(x.slice(s![..8, ..]));
                out.push((losses, mlp, eval));
            }
            let what = format!("standardized {}", sc.is_some());
            close(&out[0].0, &out[1].0, &format!("{what}: losses"));
            let weights = format!("{what}: weights");
            close_tol(out[0].1.params(), out[1].1.params(), 1e-4, &weights);
            close(
                out[0].2.as_slice().unwrap(),
                out[1].2.as_slice().unwrap(),
                &format!("{what}: eval logits"),
            );
        }
    }
}
