//! The memory a [`HeadConfig`] implies (model state and one step's activations), checked against
//! what this machine has before anything is allocated.

use super::{HeadConfig, HeadError};
use crate::sysmem;

/// Bytes of the model's state for layer sizes `dims`: weights, gradients, Adam's m and v.
pub(crate) fn model_bytes(dims: &[usize]) -> u64 {
    let params = dims.windows(2).fold(0u64, |s, w| {
        s.saturating_add((w[0] as u64).saturating_mul(w[1] as u64))
            .saturating_add(w[1] as u64)
    });
    params.saturating_mul(16)
}

/// Bytes of one training step's buffers for `rows` rows: the input batch, then per layer the
/// activations and their gradients.
pub(crate) fn step_bytes(dims: &[usize], rows: usize) -> u64 {
    let widths = dims[1..]
        .iter()
        .fold(0u64, |s, &w| s.saturating_add(w as u64));
    let per_row = (dims[0] as u64).saturating_add(widths.saturating_mul(2));
    per_row.saturating_mul(rows as u64).saturating_mul(4)
}

impl HeadConfig {
    /// Refuses hidden widths or a batch size whose memory exceeds what this machine has
    /// available, for `dim` input features and `classes` classes; `rows` (the train rows, when
    /// known) caps the batch as training does. [`HeadConfig::check`] calls it with the smallest
    /// `dim` and `classes`, so no cache is needed to refuse an impossible flag.
    pub fn check_memory(
        &self,
        dim: usize,
        classes: usize,
        rows: Option<usize>,
    ) -> Result<(), HeadError> {
        let mut dims = vec![dim];
        dims.extend_from_slice(&self.hidden);
        dims.push(classes);
        let model = model_bytes(&dims);
        let widths = self
            .hidden
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join(",");
        sysmem::fits(
            model,
            &format!("the head's weights, gradients and Adam state (--hidden {widths}, D = {dim})"),
        )
        .map_err(|m| HeadError::Config {
            field: "hidden",
            message: format!("{m}; use narrower --hidden layers"),
        })?;
        let batch = rows.map_or(self.batch_size, |n| self.batch_size.min(n.max(1)));
        let step = step_bytes(&dims, batch);
        let per_row = step_bytes(&dims, 1).max(1);
        let room = sysmem::usable_memory().saturating_sub(model);
        sysmem::fits(
            model.saturating_add(step),
            &format!(
                "the model and one step's activations (--batch-size {}, D = {dim})",
                self.batch_size
            ),
        )
        .map_err(|m| HeadError::Config {
            field: "batch_size",
            message: format!(
                "{m}; at most {} rows per batch fit at D = {dim}: lower --batch-size",
                room / per_row
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_widths_and_batches_are_refused_before_any_allocation() {
        let huge = HeadConfig {
            hidden: vec![99_999_999_999],
            ..HeadConfig::default()
        };
        let e = huge.check().unwrap_err().to_string();
        assert!(e.contains("hidden") && e.contains("available"), "{e}");
        let huge = HeadConfig {
            batch_size: 1_000_000_000_000,
            ..HeadConfig::default()
        };
        let e = huge.check().unwrap_err().to_string();
        assert!(
            e.contains("batch_size") && e.contains("lower --batch-size"),
            "{e}"
        );
        // The same batch is fine when the data caps it.
        huge.check_memory(8, 2, Some(10)).unwrap();
        HeadConfig::default().check().unwrap();
        HeadConfig {
            hidden: vec![usize::MAX, usize::MAX],
            ..HeadConfig::default()
        }
        .check()
        .unwrap_err();
    }
}
