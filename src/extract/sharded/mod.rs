//! Sharded extraction: `plan` once, then any number of processes or machines each run one shard
//! (`extract --plan URL --shard k/N`), then one `cache commit` publishes the result. The protocol
//! (unique part names, put-if-absent records, manifest last) lives in [`crate::cache::parts`];
//! this module decides what each shard contains and runs it through the same engine as a
//! one-machine extraction.
//!
//! One way inside: plan (which image goes where, a value stored as `plan.json`) → run (one shard's
//! parts through the engine) → commit (the shards' records → manifest).

mod commit;
mod plan;
mod run;

pub use commit::{commit, CommitSummary};
pub use plan::{make_plan, shard_of, PlanConfig, PlanSummary, PlannedImage, ShardPlan};
pub use run::{run_shard, ShardOutcome, ShardRunConfig, ShardSummary};
