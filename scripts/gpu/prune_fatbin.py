"""Zero the GPU code of every architecture but one in a CUDA shared library, to make it small to carry.

Usage: prune_fatbin.py IN.so OUT.so [--keep-arch 90]

A CUDA library's `.nv_fatbin` section holds fat binaries (magic 0xBA55ED50), each a list of entries
(64-byte entry header: kind u16, version u16, header size u32, padded payload size u64, ...,
arch u32 at byte 28). The driver picks the entry that matches the device and never reads the others,
so zeroing the payloads of the other architectures keeps every offset, size and header as it was while
the file compresses to a fraction. Used by scripts/gpu/gpu-pack.sh for the H100/H200 (sm_90) device check.
"""
import argparse, struct, sys, collections

ap = argparse.ArgumentParser()
ap.add_argument("src"); ap.add_argument("dst"); ap.add_argument("--keep-arch", type=int, default=90)
a = ap.parse_args()
buf = bytearray(open(a.src, "rb").read())
shoff = struct.unpack_from("<Q", buf, 0x28)[0]
shentsize, shnum, shstrndx = struct.unpack_from("<HHH", buf, 0x3A)
secs = [struct.unpack_from("<IIQQQQ", buf, shoff + i * shentsize) for i in range(shnum)]
stroff = secs[shstrndx][4]
name = lambda s: bytes(buf[stroff + s[0]:buf.index(0, stroff + s[0])]).decode()
fat = [s for s in secs if name(s) == ".nv_fatbin"]
if not fat:
    sys.exit(f"{a.src}: no .nv_fatbin section")
off, size = fat[0][4], fat[0][5]
o, end = off, off + size
kept, zeroed = collections.Counter(), collections.Counter()
while o < end:
    magic, _ver, hsz, fsz = struct.unpack_from("<IHHQ", buf, o)
    if magic != 0xBA55ED50:
        o += 8  # alignment padding between fat binaries
        continue
    p, pend = o + hsz, o + hsz + fsz
    while p < pend:
        ehsz = struct.unpack_from("<I", buf, p + 4)[0]
        psz = struct.unpack_from("<Q", buf, p + 8)[0]
        arch = struct.unpack_from("<I", buf, p + 28)[0]
        if arch == a.keep_arch:
            kept[arch] += psz
        else:
            buf[p + ehsz:p + ehsz + psz] = bytes(psz)
            zeroed[arch] += psz
        p += ehsz + psz
    o = pend
open(a.dst, "wb").write(buf)
mb = lambda c: {k: round(v / 1e6, 1) for k, v in sorted(c.items())}
print(f"kept arch {a.keep_arch}: {mb(kept)} MB; zeroed: {mb(zeroed)} MB")
