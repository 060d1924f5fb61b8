//! vggcache: transfer learning with cached features.
//!
//! Data flows one way: images → tensors ([`dataset`]) → frozen trunk ([`trunk`]) → Parquet feature
//! cache ([`cache`]) → trained head ([`head`]) or logistic baseline ([`baseline`]) → [`report`].
//! [`extract`] is the engine of the first three stages; [`jobs`] are the one-call tasks (train,
//! compare, report, predict) the `vggcache` binary's commands run.

#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod baseline;
pub mod cache;
pub mod dataset;
pub mod events;
pub mod export;
pub mod extract;
#[doc(hidden)] // for tests only: crash tests name a fault point through `failpoint::ENV`
pub mod failpoint;
#[doc(hidden)] // for the vggcache binary only (its commands write outputs with `write_atomic`)
pub mod fsutil;
pub mod head;
pub mod jobs;
pub mod metrics;
pub(crate) mod protobuf;
pub mod report;
pub(crate) mod safe_path;
pub mod spec;
pub mod storage;
pub mod store;
#[doc(hidden)] // for the vggcache binary only (default memory budget of train-head)
pub mod sysmem;
pub mod trunk;
