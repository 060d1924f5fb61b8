//! [`ExtractConfig`]: what one extraction run does, and the one source of its defaults.

use std::path::PathBuf;

use super::{ExtractError, ViewSettings};
use crate::cache::FeatureDtype;
use crate::trunk::TrunkOptions;

/// Settings of one extraction run. `Default` holds every default (the CLI reads its flag defaults
/// from it); `images` and `model` have none and must be set.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractConfig {
    /// Image folder (any layout `dataset::discover` understands).
    pub images: PathBuf,
    /// Cache folder. Default `cache`.
    pub out: PathBuf,
    /// Trunk ONNX model file.
    pub model: PathBuf,
    /// Where and how the trunk runs.
    pub trunk: TrunkOptions,
    /// Images per inference batch, ≥ 1. Default 16.
    pub batch_size: usize,
    /// Decoding threads; `None` = one per core.
    pub workers: Option<usize>,
    /// Trunk sessions running batches at once; `None` = 1.
    pub sessions: Option<usize>,
    /// Rows per Parquet shard, ≥ 1. Default 128.
    pub shard_rows: usize,
    /// Share of labelled images held out as `val` when the folder has no val split, in [0, 1).
    /// Default 0.2.
    pub val_fraction: f64,
    /// Replace a cache of another model or preprocessing (kept until the new one is complete).
    pub force: bool,
    /// How the cache stores features. Default f32 (exact); f16 halves the cache.
    pub feature_dtype: FeatureDtype,
    /// Views made besides the plain image: augmented views of training images, test-time
    /// views of val/test images. Default none (the cache is exactly as without views).
    pub views: ViewSettings,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        Self {
            images: PathBuf::new(),
            out: PathBuf::from("cache"),
            model: PathBuf::new(),
            trunk: TrunkOptions::default(),
            batch_size: 16,
            workers: None,
            sessions: None,
            shard_rows: 128,
            val_fraction: 0.2,
            force: false,
            feature_dtype: FeatureDtype::F32,
            views: ViewSettings::default(),
        }
    }
}

impl ExtractConfig {
    /// Checks the values a run cannot start with.
    pub fn validate(&self) -> Result<(), ExtractError> {
        let bad = |field, reason: String| Err(ExtractError::Config { field, reason });
        if self.images.as_os_str().is_empty() {
            return bad("images", "no image folder given".into());
        }
        if self.model.as_os_str().is_empty() {
            return bad("model", "no trunk model given".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if self.shard_rows == 0 {
            return bad("shard_rows", "must be at least 1".into());
        }
        if !(0.0..1.0).contains(&self.val_fraction) {
            return bad(
                "val_fraction",
                format!("must be in [0, 1), got {}", self.val_fraction),
            );
        }
        if self.views.train_views > MAX_VIEWS {
            return bad(
                "views",
                format!(
                    "at most {MAX_VIEWS} views per image, got {}",
                    self.views.train_views
                ),
            );
        }
        if self.views.tta_every_split && self.views.train_views > 0 {
            return bad(
                "views",
                "test-time views of train images leave no room for augmented ones".into(),
            );
        }
        self.validate_sizes()
    }

    /// Checks the size-like settings alone (a shard run has no images folder or output of its
    /// own to check): workers and sessions at least 1 and at most what a machine can run, and
    /// batch, shard and thread counts whose buffers, at the least any trunk needs (one pixel per
    /// image, one feature per row), fit in the memory this machine has available.
    /// [`ExtractConfig::check_memory`] checks the real sizes once the trunk is loaded.
    pub fn validate_sizes(&self) -> Result<(), ExtractError> {
        let bad = |field, reason: String| Err(ExtractError::Config { field, reason });
        for (field, v, max) in [
            ("workers", self.workers, MAX_WORKERS),
            ("sessions", self.sessions, MAX_SESSIONS),
        ] {
            match v {
                Some(0) => {
                    return bad(
                        field,
                        format!("must be at least 1, got 0 (leave --{field} out for the default)"),
                    )
                }
                Some(n) if n > max => {
                    return bad(field, format!("at most {max} can run at once, got {n}"))
                }
                _ => {}
            }
        }
        if let Some(sessions) = self.sessions {
            // Every session holds the model's weights.
            if let Ok(m) = std::fs::metadata(&self.model) {
                crate::sysmem::fits(
                    m.len().saturating_mul(sessions as u64),
                    &format!("{sessions} sessions of {}", self.model.display()),
                )
                .or_else(|m| bad("sessions", format!("{m}; use fewer --sessions")))?;
            }
        }
        let (batch, shard) = (self.batch_size as u64, self.shard_rows as u64);
        crate::sysmem::fits(
            batch.saturating_mul(4 * 4),
            &format!("a batch of {batch} images, at one pixel and one feature each,"),
        )
        .or_else(|m| bad("batch_size", format!("{m}; lower --batch-size")))?;
        crate::sysmem::fits(
            shard.saturating_mul(2 * 4),
            &format!("shards of {shard} rows, at one feature each,"),
        )
        .or_else(|m| bad("shard_rows", format!("{m}; lower --shard-rows")))?;
        Ok(())
    }

    /// Refuses a run whose buffers exceed the memory this machine has available, now that the
    /// trunk's input (`pixels` per image, 3 channels) and feature width `dim` are known, with
    /// `parallel_shards` shards encoded at once. Counts the decode pipeline's tensors, the
    /// batches waiting for the writer and a write round of rows (held twice while encoded).
    pub fn check_memory(
        &self,
        pixels: u64,
        dim: usize,
        parallel_shards: usize,
    ) -> Result<(), ExtractError> {
        let bad = |field, reason: String| Err(ExtractError::Config { field, reason });
        let image = pixels.saturating_mul(3 * 4);
        let row = (dim as u64).saturating_mul(4);
        let workers = self.workers.unwrap_or(1) as u64;
        let batch = self.batch_size as u64;
        // Decoded tensors: the pipeline's queue (2 batches), one being built, one per session
        // and one per worker; features: the writer's queue of two batches.
        let sessions = self.sessions.unwrap_or(1) as u64;
        let batch_bytes = batch
            .saturating_mul(4 + sessions)
            .saturating_add(workers)
            .saturating_mul(image)
            .saturating_add(batch.saturating_mul(2).saturating_mul(row));
        crate::sysmem::fits(
            batch_bytes,
            &format!("batches of {batch} images ({pixels} pixels, {dim} features each)"),
        )
        .or_else(|m| bad("batch_size", format!("{m}; lower --batch-size")))?;
        let round = (self.shard_rows as u64)
            .saturating_mul(parallel_shards as u64)
            .saturating_mul(row)
            .saturating_mul(3);
        crate::sysmem::fits(
            round,
            &format!(
                "write rounds of {parallel_shards} shards of {} rows ({dim} features each)",
                self.shard_rows
            ),
        )
        .or_else(|m| bad("shard_rows", format!("{m}; lower --shard-rows")))?;
        crate::sysmem::fits(
            round.saturating_add(batch_bytes),
            "the decode pipeline and the writer together",
        )
        .or_else(|m| {
            bad(
                "batch_size",
                format!("{m}; lower --batch-size or --shard-rows"),
            )
        })
    }
}

/// The most decoding threads a run starts (far more than any machine has cores).
pub const MAX_WORKERS: usize = 1024;
/// The most augmented views per training image `--views` takes.
pub const MAX_VIEWS: u32 = 64;
/// The most trunk sessions a run loads.
pub const MAX_SESSIONS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> ExtractConfig {
        ExtractConfig {
            images: "imgs".into(),
            model: "m.onnx".into(),
            ..ExtractConfig::default()
        }
    }

    #[test]
    fn defaults_need_only_images_and_model() {
        assert!(ExtractConfig::default().validate().is_err());
        valid().validate().unwrap();
    }

    #[test]
    fn bad_values_name_their_field() {
        for (cfg, field) in [
            (
                ExtractConfig {
                    batch_size: 0,
                    ..valid()
                },
                "batch_size",
            ),
            (
                ExtractConfig {
                    shard_rows: 0,
                    ..valid()
                },
                "shard_rows",
            ),
            (
                ExtractConfig {
                    val_fraction: 1.0,
                    ..valid()
                },
                "val_fraction",
            ),
            (
                ExtractConfig {
                    val_fraction: -0.1,
                    ..valid()
                },
                "val_fraction",
            ),
            (
                ExtractConfig {
                    val_fraction: f64::NAN,
                    ..valid()
                },
                "val_fraction",
            ),
        ] {
            match cfg.validate() {
                Err(ExtractError::Config { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: expected a Config error, got {other:?}"),
            }
        }
    }
}
