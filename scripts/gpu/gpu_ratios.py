"""The ratios of a `scripts/gpu/gpu-check.sh` call, printed from its own outputs (nothing computed by hand):

    python3 scripts/gpu/gpu_ratios.py OUT      # OUT/ours.txt, OUT/trunk.txt, OUT/torch.jsonl of that call

For each batch size, every ratio is vggcache / PyTorch (above 1: vggcache faster), both measured in the
same call:
  trunk only, same copies  vggcache's trunk bench (1 session, random input in host memory, host->device
                           and device->host copies) / PyTorch trunk-only with the same copies
                           (cudnn.benchmark off, as ONNX Runtime's default exhaustive search is a separate
                           choice; the `on` figure is printed beside it)
  extract / DataLoader     `vggcache extract` (rate to the last row written, default options) / PyTorch
                           DataLoader end to end (PIL decode, pinned memory, features back to the host)
  extract / trunk only     `vggcache extract` / PyTorch trunk-only with its input already on the GPU
                           (issue 6's target, >= 0.9: the whole pipeline against the bare trunk)
"""
import json
import os
import re
import sys


def ours(path):
    """{batch: to-last-row img/s} of the default `vggcache` runs (no options)."""
    out = {}
    for line in open(path):
        m = re.match(r"vggcache batch=(\d+) default rc=0 .*?command_img_s=([0-9.]+) to_last_row_img_s=([0-9.]+|n/a)", line)
        if m:
            b, command, last = int(m[1]), float(m[2]), m[3]
            out[b] = float(last) if last != "n/a" else command
    return out


def trunk(path):
    """{batch: img/s} of the trunk bench's `sessions=1 nhwc=0` table."""
    out, on = {}, False
    for line in open(path):
        if line.startswith("sessions="):
            on = line.startswith("sessions=1 nhwc=0")
        elif on and re.match(r"\|\s*\d+\s*\|", line):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            out[int(cells[0])] = float(cells[1])
    return out


def torch(path):
    """{(peer, batch, cudnn_benchmark): img/s} of gpu_torch.py's JSON lines."""
    out = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("{"):
            r = json.loads(line)
            out[(r["peer"], r["batch"], r.get("cudnn_benchmark"))] = r["img_per_s"]
    return out


def main():
    d = sys.argv[1]
    o, t, p = ours(os.path.join(d, "ours.txt")), trunk(os.path.join(d, "trunk.txt")), torch(os.path.join(d, "torch.jsonl"))
    print("| batch | vggcache trunk only (copies) | PyTorch trunk only, same copies (cudnn.benchmark on) | ratio, like for like "
          "| vggcache extract | PyTorch DataLoader e2e | extract / DataLoader | PyTorch trunk only, on GPU | extract / trunk only |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def f(x):
        return "-" if x is None else f"{x:,.0f}"

    def r(a, b):
        return "-" if a is None or b is None else f"**{a / b:.2f}**"

    for b in sorted(set(o) | set(t) | {k[1] for k in p}):
        tc, tc_on = p.get(("torch trunk-only, host copies", b, False)), p.get(("torch trunk-only, host copies", b, True))
        dl, bare = p.get(("torch DataLoader e2e", b, True)), p.get(("torch trunk-only", b, False))
        print(f"| {b} | {f(t.get(b))} | {f(tc)} ({f(tc_on)}) | {r(t.get(b), tc)} | {f(o.get(b))} | {f(dl)} | "
              f"{r(o.get(b), dl)} | {f(bare)} | {r(o.get(b), bare)} |")


if __name__ == "__main__":
    main()
