//! Images → tensors: find a dataset's images and labels, decode them, and preprocess them into
//! `(N, 3, H, W)` float32 batches on worker threads.
//!
//! - [`discover`]: walk an image folder, recognise its layout, assign splits, labels and classes.
//! - [`decode_rgb8`] / [`preprocess_into`]: one file → RGB 8-bit → resized, normalised CHW tensor.
//! - [`augment`]: views of a decoded image (flip, crop, colour jitter) and their recipes.
//! - [`spawn_pipeline`]: the same over many files on a bounded queue, in batches, while the caller
//!   (the trunk) computes.
//!
//! Bad images are never an error of the whole run: they come back as skip reasons.

pub mod augment;
mod decode;
mod discover;
mod pipeline;
mod resize;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use decode::{
    check_spec, decode_rgb8, decode_rgb8_bytes, preprocess_into, resize_rgb8, DecodeLimits,
    ResizeFilter,
};
pub use discover::{
    content_hash, discover, is_image_extension, val_hash_fraction, Dataset, ImageEntry, Layout,
    Skipped, IMAGE_EXTENSIONS,
};
pub use pipeline::{spawn_pipeline, spawn_pipeline_views, PipelineConfig, PipelineMsg, WorkItem};

/// Which part of the data an image belongs to.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training images.
    Train,
    /// Validation images.
    Val,
    /// Unlabelled test images (prediction only).
    Test,
}

impl Split {
    /// The name stored in the cache's `split` column: `"train"`, `"val"` or `"test"`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }

    /// The split whose [`Split::as_str`] is `s` exactly (the cache's `split` column).
    pub fn from_stored(s: &str) -> Option<Split> {
        [Split::Train, Split::Val, Split::Test]
            .into_iter()
            .find(|sp| sp.as_str() == s)
    }

    /// Parse a split folder name, ignoring ASCII case: `train`; `val`, `validation`, `valid`; `test`.
    pub fn parse(s: &str) -> Option<Split> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Some(Split::Train),
            "val" | "validation" | "valid" => Some(Split::Val),
            "test" => Some(Split::Test),
            _ => None,
        }
    }
}

impl std::fmt::Display for Split {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Errors that stop discovery or preprocessing set-up as a whole (single bad images are skips).
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The image folder does not exist.
    #[error("image folder {path} does not exist")]
    NotFound {
        /// The file or folder concerned.
        path: PathBuf,
    },
    /// The image folder is a file.
    #[error("image folder {path} is not a directory")]
    NotADirectory {
        /// The file or folder concerned.
        path: PathBuf,
    },
    /// The image folder cannot be listed.
    #[error("cannot read image folder {path}: {source}")]
    Unreadable {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// No image files under the folder.
    #[error(
        "no images found in {path} (expected files ending in .jpg, .jpeg, .png, .gif, .webp or .bmp; \
         {skipped} entries skipped)"
    )]
    NoImages {
        /// The file or folder concerned.
        path: PathBuf,
        /// Entries skipped while looking.
        skipped: usize,
    },
    /// A validation fraction outside `[0, 1)`.
    #[error("val fraction must be in [0, 1), got {value}")]
    BadValFraction {
        /// The value as given.
        value: f64,
    },
    /// A resize filter this crate does not implement.
    #[error("unsupported resize filter {name:?} in the preprocessing spec (expected \"bilinear-antialias\" or \"bilinear-antialias-fir\")")]
    UnknownResize {
        /// The name concerned.
        name: String,
    },
    /// A preprocessing spec that breaks its invariants.
    #[error("preprocessing spec is invalid: {reason}")]
    BadSpec {
        /// Why, in one line.
        reason: String,
    },
}
