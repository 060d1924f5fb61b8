//! Inverted dropout: zero each activation with probability `p`, scale the survivors by `1/(1-p)`.
//!
//! Masks come from one seeded RNG drawn serially in row-major order, so a seed fixes every mask
//! whatever the thread count. The mask is not stored: after ReLU, a surviving activation is `> 0`
//! exactly where the gradient passes (see `mlp.rs`). In eval mode dropout is the identity.

use ndarray::ArrayViewMut2;
use rand::RngCore;

/// Apply inverted dropout in place. `h: (batch, width)`; `p` in `[0, 1)` (checked by
/// `HeadConfig::check`). Each element survives when a fresh `u32` from `rng` is `>= p·2³²`.
pub fn dropout_in_place(mut h: ArrayViewMut2<f32>, p: f32, rng: &mut dyn RngCore) {
    assert!(
        (0.0..1.0).contains(&p),
        "dropout probability {p} outside [0, 1)"
    );
    if p == 0.0 {
        return;
    }
    let threshold = (f64::from(p) * 4_294_967_296.0) as u64;
    let scale = 1.0 / (1.0 - p);
    for v in h.iter_mut() {
        let keep = u64::from(rng.next_u32()) >= threshold;
        *v = if keep { *v * scale } else { 0.0 };
    }
}
