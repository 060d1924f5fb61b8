#!/usr/bin/env bash
# train-head on the 1 GB synthetic cache (10,000 x 25,088 float32), in memory against streamed,
# alternating (docs/BENCHMARKS.md § 13). Writes the cache under the target folder, removes it after.
# Usage: scripts/bench/bench_stream_synth.sh [ROUNDS]      (default 2)
set -euo pipefail
cd "$(dirname "$0")/../.."
VGGCACHE_BENCH_ROUNDS=${1:-2} cargo test --locked --test it stream::bench_synthetic_streamed_vs_in_memory \
  -- --ignored --nocapture --test-threads 1 2>&1 | grep -oE 'round [0-9]+ .*|test result.*'
