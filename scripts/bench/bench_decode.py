"""vggcache's decode stage beside PIL, like for like, alternating in one run (docs/BENCHMARKS.md section 1).

    python scripts/bench/bench_decode.py [IMAGES] [--rounds 3] [--seconds 10] [--json OUT]

IMAGES defaults to the real catsdogs set (scripts/testdata.py: VGGCACHE_TEST_DATA). W is the number of cores this process may use (the pipeline
bench uses the same count). Each round runs, in an order that alternates (odd rounds PIL first, even
rounds vggcache first):

  vggcache  `cargo bench --bench decode` (release), its two decode + resize 224 + normalise cases:
            one thread over every 5th image; the pipeline `extract` runs (W workers, batches of 16
            delivered to one consumer) over all images. Criterion's median time per iteration.
  PIL       the shared peer's `load` (peers.py, scripts/testdata.py: open, convert RGB, resize 224x224
            bilinear, float32 CHW; no mean subtraction, so it does less than vggcache):
            1 process over the same every-5th images;
            W processes over all images, batches of 16 written into shared-memory slots the parent hands
            back once it has the batch (how PyTorch's DataLoader delivers; 2W+1 slots);
            W processes over all images, batches of 16 stacked and pickled to the parent
            (multiprocessing.Pool's default transport);
            W processes over all images, results dropped in the workers (compute only: PIL's upper
            bound with W processes, no delivery cost).
            Passes over the images repeat for at least --seconds; the median pass counts.

Prints every figure of every round, then the medians and, for each like-for-like pair, the median of
the per-round ratios (vggcache img/s / PIL img/s; above 1: vggcache faster).
"""
import argparse
import glob
import importlib.util
import json
import multiprocessing as mp
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
import testdata  # noqa: E402  (scripts/testdata.py: where real data lives)
BATCH = 16
STEP = 5  # benches/decode.rs's one-thread subset: every 5th image

_load = None
_slots = None  # worker's view of the shared batch slots: (K, BATCH, 3, 224, 224) float32


def peer_load(peers_py):
    """The shared peer's `load(path) -> float32 (3, 224, 224)`, so PIL does exactly the peer's work."""
    spec = importlib.util.spec_from_file_location("peers", peers_py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.load, mod.images


def _init(peers_py, shm_name=None, n_slots=0):
    global _load, _slots, _shm
    _load = peer_load(peers_py)[0]
    if shm_name:
        from multiprocessing import shared_memory
        _shm = shared_memory.SharedMemory(name=shm_name)
        _slots = np.ndarray((n_slots, BATCH, 3, 224, 224), np.float32, buffer=_shm.buf)


def _batch_deliver(paths):
    return np.stack([_load(p) for p in paths])


def _batch_shm(task):
    slot, paths = task
    for i, p in enumerate(paths):
        _slots[slot, i] = _load(p)
    return slot, len(paths)


def _batch_drop(paths):
    for p in paths:
        _load(p)
    return len(paths)


def timed_passes(one_pass, n_images, seconds):
    """img/s of the median pass; passes repeat until `seconds` have gone (at least 3)."""
    rates, t_end = [], time.perf_counter() + seconds
    while len(rates) < 3 or time.perf_counter() < t_end:
        t = time.perf_counter()
        one_pass()
        rates.append(n_images / (time.perf_counter() - t))
    return statistics.median(rates)


def pil_round(paths, subset, workers, seconds, peers_py):
    load = peer_load(peers_py)[0]
    for p in subset[:8]:
        load(p)

    def one_process():  # each result dropped at once, as vggcache's one-thread bench reuses one buffer
        for p in subset:
            load(p)

    out = {"pil_1proc": timed_passes(one_process, len(subset), seconds)}
    batches = [paths[i:i + BATCH] for i in range(0, len(paths), BATCH)]
    with mp.get_context("fork").Pool(workers, initializer=_init, initargs=(peers_py,)) as pool:
        pool.map(_batch_drop, batches[:workers])  # warm every worker

        def pickled():
            assert sum(len(b) for b in pool.imap_unordered(_batch_deliver, batches)) == len(paths)

        def drop():
            assert sum(pool.imap_unordered(_batch_drop, batches)) == len(paths)

        out["pil_pool_pickle"] = timed_passes(pickled, len(paths), seconds)
        out["pil_pool_compute"] = timed_passes(drop, len(paths), seconds)
    # Batches through shared memory, as PyTorch's DataLoader hands them over: K slots, each reused
    # once the parent has taken its batch (2 per worker in flight, like vggcache's queue of 2 batches).
    from multiprocessing import shared_memory
    n_slots = 2 * workers + 1
    shm = shared_memory.SharedMemory(create=True, size=n_slots * BATCH * 3 * 224 * 224 * 4)
    try:
        slots = np.ndarray((n_slots, BATCH, 3, 224, 224), np.float32, buffer=shm.buf)
        with mp.get_context("fork").Pool(workers, initializer=_init, initargs=(peers_py, shm.name, n_slots)) as pool:
            pool.map(_batch_drop, batches[:workers])

            def shared():
                free = queue.Queue()
                for k in range(n_slots):
                    free.put(k)

                def tasks():  # consumed by the pool's task thread: blocks until the parent frees a slot
                    for b in batches:
                        yield free.get(), b

                n = 0
                for slot, k in pool.imap_unordered(_batch_shm, tasks()):
                    n += k
                    slots[slot, k - 1, 0, 0, 0].item()  # the consumer touches its batch, then frees the slot
                    free.put(slot)
                assert n == len(paths)

            out["pil_pool_shm"] = timed_passes(shared, len(paths), seconds)
        del slots
    finally:
        shm.close()
        shm.unlink()
    return out


def vggcache_round(criterion_home):
    """Runs the two decode benches; img/s from criterion's median time per iteration."""
    env = dict(os.environ, CRITERION_HOME=criterion_home)
    cmd = ["cargo", "bench", "--locked", "--quiet", "--bench", "decode", "--",
           "--noplot", r"decode\+resize\+normalise, 1 thread|pipeline"]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    out = {}
    for meta in glob.glob(os.path.join(criterion_home, "decode", "*", "new", "benchmark.json")):
        with open(meta) as f:
            b = json.load(f)
        with open(os.path.join(os.path.dirname(meta), "estimates.json")) as f:
            median_ns = json.load(f)["median"]["point_estimate"]
        rate = b["throughput"]["Elements"] / (median_ns * 1e-9)
        if b["function_id"].startswith("decode+resize+normalise, 1 thread"):
            out["vgg_1thread"] = rate
        elif b["function_id"].startswith("pipeline"):
            out["vgg_pipeline"] = rate
    missing = {"vgg_1thread", "vgg_pipeline"} - set(out)
    if missing:
        sys.exit(f"criterion wrote no estimates for {sorted(missing)} under {criterion_home}")
    return out


PAIRS = [  # (label, vggcache key, PIL key)
    ("1 thread vs 1 PIL process (every 5th image)", "vgg_1thread", "pil_1proc"),
    ("pipeline, W workers vs W PIL processes, batches through shared memory", "vgg_pipeline", "pil_pool_shm"),
    ("pipeline, W workers vs W PIL processes, batches pickled to the parent", "vgg_pipeline", "pil_pool_pickle"),
    ("pipeline, W workers vs W PIL processes, compute only", "vgg_pipeline", "pil_pool_compute"),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="?", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--peers", default=None)
    ap.add_argument("--json", help="also write every round's figures here")
    a = ap.parse_args()
    if not os.path.isdir(a.images) or not os.path.isfile(a.peers):
        print(f"skip: needs {a.images} and {a.peers}")
        return
    catsdogs = str(testdata.data("catsdogs"))
    a.images = a.images or catsdogs
    a.peers = a.peers or str(testdata.peers())
    if os.path.abspath(a.images) != os.path.abspath(catsdogs):
        sys.exit(f"benches/decode.rs reads {catsdogs} (VGGCACHE_TEST_DATA): run on that folder so both sides see the same images")
    paths = peer_load(a.peers)[1](a.images)
    subset = paths[::STEP]
    workers = len(os.sched_getaffinity(0))
    print(f"images: {len(paths)} (one-thread subset {len(subset)}); W = {workers} cores; "
          f"load before: {open('/proc/loadavg').read().split()[:3]}", flush=True)
    subprocess.run(["cargo", "bench", "--locked", "--quiet", "--bench", "decode", "--no-run"], cwd=ROOT, check=True)
    rounds = []
    with tempfile.TemporaryDirectory() as crit:
        for r in range(1, a.rounds + 1):
            fig = {}
            order = ["pil", "vgg"] if r % 2 else ["vgg", "pil"]
            for side in order:
                if side == "pil":
                    fig.update(pil_round(paths, subset, workers, a.seconds, a.peers))
                else:
                    fig.update(vggcache_round(crit))
            fig["load1"] = float(open("/proc/loadavg").read().split()[0])
            rounds.append(fig)
            print(f"round {r} ({' then '.join(order)}): " + ", ".join(
                f"{k} {v:.0f} img/s" for k, v in fig.items() if k != "load1") + f"; load {fig['load1']:.2f}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"workers": workers, "images": len(paths), "rounds": rounds}, f, indent=1)
    print(f"\n| measure | img/s, median of {a.rounds} rounds (each round) |\n|---|---:|")
    for k in ["vgg_1thread", "pil_1proc", "vgg_pipeline", "pil_pool_shm", "pil_pool_pickle", "pil_pool_compute"]:
        each = " / ".join(f"{f[k]:.0f}" for f in rounds)
        print(f"| {k} | {statistics.median(f[k] for f in rounds):.0f} ({each}) |")
    print(f"\n| like for like (W = {workers}) | vggcache / PIL, median of the per-round ratios (each round) |\n|---|---:|")
    for label, v, p in PAIRS:
        ratios = [f[v] / f[p] for f in rounds]
        print(f"| {label} | **{statistics.median(ratios):.2f}x** ({' / '.join(f'{x:.2f}' for x in ratios)}) |")


if __name__ == "__main__":
    main()
