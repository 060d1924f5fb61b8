#!/usr/bin/env python3
"""Run every shard of a vggcache plan as Ray tasks, then commit.

    vggcache plan --images DIR --out ROOT --shards N            # once, anywhere
    python examples/ray_extract.py --plan ROOT --shards N [-- EXTRACT_ARGS...]

Each task runs `vggcache extract --plan ROOT --shard K/N EXTRACT_ARGS` on a Ray worker (the
vggcache binary and the model must be on every node; ROOT a shared folder or s3://...). A task
that fails (the process crashed, the node died) is retried up to --max-retries times: vggcache
shard runs resume from their claimed parts, and a duplicate attempt commits nothing twice. When
every shard succeeded, `vggcache cache commit ROOT` publishes the manifest.

Tasks ask for one GPU each when the cluster has GPUs (--gpus-per-task auto), else for
--cpus-per-task CPUs. VGGCACHE_* and AWS_* variables of the driver's environment are passed to
the tasks (credentials stay in the environment, never on a command line).
Connects to a running cluster with --address (or RAY_ADDRESS), else starts a local one.
"""

import argparse
import os
import subprocess
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", required=True, help="root of the sharded cache (folder or s3://bucket/prefix)")
    ap.add_argument("--shards", type=int, required=True, help="N, as given to `vggcache plan --shards`")
    ap.add_argument("--vggcache", default="vggcache", help="the vggcache binary on the workers")
    ap.add_argument("--max-retries", type=int, default=3, help="retries per shard task")
    ap.add_argument("--cpus-per-task", type=float, default=1.0)
    ap.add_argument("--gpus-per-task", default="auto", help="auto (1 when the cluster has GPUs), or a number")
    ap.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a local cluster)")
    ap.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local cluster (default: all)")
    ap.add_argument("extract_args", nargs=argparse.REMAINDER, help="after --: more `vggcache extract` flags")
    args = ap.parse_args()
    extra = args.extract_args[1:] if args.extract_args[:1] == ["--"] else args.extract_args

    import ray

    env = {k: v for k, v in os.environ.items() if k.startswith(("VGGCACHE_", "AWS_"))}
    ray.init(
        address=args.address,
        num_cpus=None if args.address else args.num_cpus,
        include_dashboard=False,
        runtime_env={"env_vars": env},
        log_to_driver=True,
    )
    gpus = args.gpus_per_task
    gpus = (1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0) if gpus == "auto" else float(gpus)

    @ray.remote(num_cpus=args.cpus_per_task, num_gpus=gpus, max_retries=args.max_retries, retry_exceptions=True)
    def run_shard(k: int) -> str:
        cmd = [args.vggcache, "extract", "--plan", args.plan, "--shard", f"{k}/{args.shards}", *extra]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            # An exception makes Ray retry the task (retry_exceptions), on any node.
            raise RuntimeError(f"shard {k}/{args.shards} exited {p.returncode}: {p.stderr[-2000:]}")
        return p.stdout.strip()

    start = time.time()
    refs = {run_shard.remote(k): k for k in range(args.shards)}
    failed = []
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        k = refs[done[0]]
        try:
            print(f"[ray_extract] {ray.get(done[0])}", flush=True)
        except Exception as e:  # every retry failed
            failed.append(k)
            print(f"[ray_extract] shard {k}/{args.shards} failed after {args.max_retries} retries: {e}", file=sys.stderr, flush=True)
    ray.shutdown()
    if failed:
        print(f"[ray_extract] {len(failed)} shard(s) failed: {sorted(failed)}; rerun this script (finished shards are skipped)", file=sys.stderr)
        return 1
    p = subprocess.run([args.vggcache, "cache", "commit", args.plan])
    print(f"[ray_extract] {args.shards} shards in {time.time() - start:.1f} s", flush=True)
    return p.returncode


if __name__ == "__main__":
    sys.exit(main())
