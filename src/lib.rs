//! vggcache: transfer learning with cached features.
//!
//! Data flows one way: images → tensors ([`dataset`]) → frozen trunk ([`trunk`]) → Parquet feature
//! cache ([`cache`]) → trained head ([`head`]) or logistic baseline ([`baseline`]) → [`report`].
//! [`extract`] is the engine of the first three stages; [`jobs`] are the one-call tasks (train,
//! compare, report, predict) the `vggcache` binary's commands run.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod baseline;
pub mod cache;
pub mod dataset;
pub mod export;
pub mod extract;
pub mod failpoint;
pub mod fsutil;
pub mod head;
pub mod jobs;
pub mod metrics;
pub mod paths;
pub mod protobuf;
pub mod report;
pub mod safe_path;
pub mod spec;
pub mod storage;
pub mod sysmem;
pub mod trunk;
