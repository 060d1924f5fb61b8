#!/usr/bin/env python3
"""CPU time per thread of a command, grouped by thread name, to see where a run's CPU went.

Usage: python3 scripts/thread_cpu.py COMMAND [ARGS...]
Runs COMMAND (its stdout/stderr pass through) and samples /proc/PID/task/*/stat every 50 ms (Linux),
keeping each thread's last user+system time; prints one line per thread name at the end. A thread
that exits loses at most its last 50 ms. Threads a library starts (ONNX Runtime's intra-op pool,
rayon) carry the name of the thread that started them ("vggcache"), so that row mixes them with the
main thread; vggcache's own threads are named vggcache-decode-N, -batcher, -trunk-N, -writer
(the kernel keeps 15 characters of a name).
"""
import collections
import os
import subprocess
import sys
import time

if len(sys.argv) < 2:
    sys.exit(__doc__)
proc = subprocess.Popen(sys.argv[1:])
tick = os.sysconf("SC_CLK_TCK")
last = {}
while proc.poll() is None:
    try:
        tids = os.listdir(f"/proc/{proc.pid}/task")
    except FileNotFoundError:
        break
    for tid in tids:
        try:
            with open(f"/proc/{proc.pid}/task/{tid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        name = s[s.index("(") + 1 : s.rindex(")")]
        fields = s[s.rindex(")") + 2 :].split()
        last[tid] = (name, (int(fields[11]) + int(fields[12])) / tick)
    time.sleep(0.05)
by_name = collections.defaultdict(lambda: [0, 0.0])
for name, cpu in last.values():
    by_name[name][0] += 1
    by_name[name][1] += cpu
total = sum(c for _, c in by_name.values())
print(f"{'thread name':<18} {'threads':>7} {'CPU s':>9} {'share':>7}", file=sys.stderr)
for name, (n, cpu) in sorted(by_name.items(), key=lambda kv: -kv[1][1]):
    print(f"{name:<18} {n:>7} {cpu:>9.2f} {100 * cpu / max(total, 1e-9):>6.1f}%", file=sys.stderr)
sys.exit(proc.returncode)
