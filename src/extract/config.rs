//! [`ExtractConfig`]: what one extraction run does, and the one source of its defaults.

use std::path::PathBuf;

use super::ExtractError;
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
        Ok(())
    }
}

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
