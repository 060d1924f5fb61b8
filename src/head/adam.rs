//! Adam exactly as PyTorch's `torch.optim.Adam` (L2 weight decay, bias correction), as one fused pass.
//!
//! PyTorch's update for step `t` (1-based), per element:
//! `g += wd·p; m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²;`
//! `p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + eps)`.
//! Defaults lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight decay 0 are PyTorch's.
//! The head applies [`AdamStep::update`] tile by tile while the weight gradient is still in cache
//! (see `mlp.rs`); [`adam_step_flat`] is the same arithmetic over whole buffers, one rayon pass.

use rayon::prelude::*;

/// Hyper-parameters of Adam (PyTorch's names and defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate (PyTorch default 1e-3).
    pub lr: f32,
    /// First-moment decay β1 (PyTorch default 0.9).
    pub beta1: f32,
    /// Second-moment decay β2 (PyTorch default 0.999).
    pub beta2: f32,
    /// Added to the denominator (PyTorch default 1e-8).
    pub eps: f32,
    /// L2 penalty added to the gradient, `g += wd·p` (PyTorch default 0; not AdamW).
    pub weight_decay: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// The per-step constants of one Adam update (bias corrections folded in).
#[derive(Debug, Clone, Copy)]
pub struct AdamStep {
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    /// `lr / (1 - β1^t)`
    step_size: f32,
    /// `1 / sqrt(1 - β2^t)`
    inv_sqrt_bc2: f32,
}

impl AdamStep {
    /// The constants for step `t` (1-based), computed in f64 as PyTorch does on the host.
    pub fn new(cfg: &AdamConfig, t: u64) -> AdamStep {
        assert!(t >= 1, "Adam steps are 1-based");
        let t = i32::try_from(t).unwrap_or(i32::MAX);
        let bc1 = 1.0 - f64::from(cfg.beta1).powi(t);
        let bc2 = 1.0 - f64::from(cfg.beta2).powi(t);
        AdamStep {
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
            step_size: (f64::from(cfg.lr) / bc1) as f32,
            inv_sqrt_bc2: (1.0 / bc2.sqrt()) as f32,
        }
    }

    /// Update `p`, `m`, `v` in place from gradient `g` (all the same length).
    ///
    /// On x86-64 with AVX2 the same loop is compiled for 8-wide vectors (runtime dispatch); no
    /// FMA contraction is enabled, so both paths give bit-identical results.
    #[inline]
    pub fn update(&self, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        let n = p.len();
        assert!(
            m.len() == n && v.len() == n && g.len() == n,
            "adam: slice lengths differ"
        );
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            unsafe { self.update_avx2(p, m, v, g) };
            return;
        }
        self.update_portable(p, m, v, g);
    }

    /// [`Adam::update`]'s loop compiled for AVX2.
    ///
    /// # Safety
    /// The CPU must support AVX2 (the caller checks `is_x86_feature_detected!("avx2")`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn update_avx2(&self, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        self.update_portable(p, m, v, g);
    }

    #[inline(always)]
    fn update_portable(&self, p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32]) {
        let (b1, b2, eps, wd) = (self.beta1, self.beta2, self.eps, self.weight_decay);
        let (c1, c2) = (1.0 - b1, 1.0 - b2);
        let (step, isb) = (self.step_size, self.inv_sqrt_bc2);
        for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            let g = g + wd * *p;
            let mi = b1 * *m + c1 * g;
            let vi = b2 * *v + c2 * g * g;
            *m = mi;
            *v = vi;
            *p -= step * mi / (vi.sqrt() * isb + eps);
        }
    }
}

/// Optimizer state: the moment buffers and the step count, laid out like the parameter buffer.
#[derive(Debug, Clone)]
pub struct Adam {
    /// Hyper-parameters.
    pub config: AdamConfig,
    pub(crate) m: Vec<f32>,
    pub(crate) v: Vec<f32>,
    pub(crate) t: u64,
}

impl Adam {
    /// Zeroed state for `n_params` parameters.
    pub fn new(config: AdamConfig, n_params: usize) -> Adam {
        Adam {
            config,
            m: vec![0.0; n_params],
            v: vec![0.0; n_params],
            t: 0,
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.t
    }

    /// Start the next step: increments `t` and returns its constants.
    pub(crate) fn begin_step(&mut self) -> AdamStep {
        self.t += 1;
        AdamStep::new(&self.config, self.t)
    }

    /// One whole step over flat buffers `params`, `grads` (same layout as the state), one fused
    /// multi-threaded pass: rayon over 64 Ki-element chunks of param/grad/m/v together.
    pub fn step_flat(&mut self, params: &mut [f32], grads: &[f32]) {
        let s = self.begin_step();
        adam_step_flat(&s, params, grads, &mut self.m, &mut self.v);
    }
}

/// [`AdamStep::update`] over whole buffers, split into chunks processed in parallel.
pub fn adam_step_flat(s: &AdamStep, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
    const CHUNK: usize = 1 << 16;
    assert!(
        g.len() == p.len() && m.len() == p.len() && v.len() == p.len(),
        "adam: lengths"
    );
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| s.update(p, m, v, g));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_step_moves_each_weight_by_about_lr() {
        // With bias correction, step 1 is p -= lr * g/(|g| + eps') ≈ lr * sign(g).
        let mut adam = Adam::new(AdamConfig::default(), 3);
        let mut p = vec![1.0f32, 1.0, 1.0];
        adam.step_flat(&mut p, &[0.5, -2.0, 1e-3]);
        for (pi, want) in p.iter().zip([0.999f32, 1.001, 0.999]) {
            assert!((pi - want).abs() < 1e-6, "{pi} vs {want}");
        }
    }
}
