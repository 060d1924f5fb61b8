//! The one integration-test binary (the layout cargo and ripgrep use): each module below tests one
//! part of vggcache through its public API or its binary, and all of them share the harness in
//! `common` (project paths, the project's python, ONNX Runtime discovery, skips that show).
//! One binary links the crate's dependencies once instead of once per file.
//!
//! Run one part with a filter on its module path, e.g. `cargo test --test it baseline::`.

mod common;

mod baseline;
mod bounds;
mod cache;
mod cli;
mod dataset;
mod demo;
mod efficientnet;
mod export;
mod extract;
mod f16;
mod faults;
mod head;
mod imagenet_trunk;
mod integrity;
mod paths;
mod quantize;
mod ray;
mod readme;
mod report;
mod requirements;
mod s3;
mod sharded;
mod store;
mod stream;
mod trunk;
mod two_trunks;
mod views;
mod workflow;
