#!/usr/bin/env python3
"""gemv_bytes.py - the decode GEMVs' global bytes in two PTXEMU_TRACE=2 logs, against the ideal.

Usage: gemv_bytes.py BEFORE.trace AFTER.trace [WEIGHT_BYTES | sectors]
       (WEIGHT_BYTES: 2 bf16, 4 f32; `sectors` for quantized weights, below)

Each log is the stderr of one nvptx binary run (prefill, then decode steps) under
MOEC_CUDA_DRIVER=libmoec_ptxemu.so with PTXEMU_TRACE=2; both must be the same model and
prompt, compiled before and after a kernel change. A decode step starts at an `embedding`
launch of one block. For every gemv / gemv_swiglu launch of the decode steps it prints the
bytes loaded, those from the weight buffer (the largest allocation the launch read), and the
ideal: the weight bytes once plus the activation rows once, weights * 4 / (WEIGHT_BYTES * N)
with N = 8 * BEFORE's grid.x (the column count when the old kernel's 8 columns per block
divide it, as in every model here). With `sectors` (quantized weights, whose data and scales
lie in one buffer, the packed file) the ideal is the launch's distinct 32-byte sectors in the
AFTER log: every byte of data, scales and activation rows that the launch touched, once.
"""
import collections
import re
import sys


def parse(path):
    out, steps, cur = [], 0, None
    for line in open(path):
        m = re.match(r"ptxemu: launch (\w+) grid \((\d+),(\d+),(\d+)\)", line)
        if m:
            if m.group(1) == "embedding" and m.group(2) == "1":
                steps += 1
            cur = {"k": m.group(1), "gx": int(m.group(2)), "gy": int(m.group(3)), "bufs": [], "step": steps}
            out.append(cur)
            continue
        m = re.match(r"ptxemu: \w+ done in [\d.]+ s(?: \(cpu [\d.]+ s\))?; global loads (\d+) bytes", line)
        if m:
            cur["total"] = int(m.group(1))
            sec = re.search(r"distinct 32-byte sectors (\d+) bytes", line)
            cur["sectors"] = int(sec.group(1)) if sec else 0
            continue
        m = re.match(r"ptxemu:   (\d+) bytes from a buffer of (\d+) bytes", line)
        if m:
            cur["bufs"].append((int(m.group(2)), int(m.group(1))))
    return out, steps


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    before, steps = parse(sys.argv[1])
    after, steps_after = parse(sys.argv[2])
    sectors = len(sys.argv) > 3 and sys.argv[3] == "sectors"
    wbytes = int(sys.argv[3]) if len(sys.argv) > 3 and not sectors else 2
    if len(before) != len(after) or steps != steps_after or not steps:
        sys.exit("gemv_bytes.py: the two logs do not have the same launches and decode steps")
    agg = collections.OrderedDict()
    for b, a in zip(before, after):
        if b["step"] == 0 or not b["k"].startswith("gemv") or not b["bufs"]:
            continue
        n = (16 if sectors else 8) * b["gx"]  # sectors: today's 16 columns per block
        wbuf = max(size for size, _ in b["bufs"])
        wb = sum(x for size, x in b["bufs"] if size == wbuf)
        wa = sum(x for size, x in a["bufs"] if size == wbuf)
        row = agg.setdefault((b["k"], n, b["gy"]), [0] * 6)
        ideal = a["sectors"] if sectors else wa + wa * 4 // (wbytes * n)
        for i, v in enumerate([1, b["total"], wb, a["total"], wa, ideal]):
            row[i] += v
    print("per decode step (%d steps), bytes: before total (weights) | after total (weights) | ideal" % steps)
    tot = [0] * 6
    for (k, n, m), r in agg.items():
        r = [x / steps for x in r]
        tot = [x + y for x, y in zip(tot, r)]
        print("%-12s N=%5d M=%d x%d: %10.0f (%10.0f) | %10.0f (%10.0f) | %10.0f   before/ideal %.2f, after/ideal %.3f"
              % (k, n, m, r[0], r[1], r[2], r[3], r[4], r[5], r[1] / r[5], r[3] / r[5]))
    print("all GEMVs: before %.0f, after %.0f, ideal %.0f: before/ideal %.3f, after/ideal %.3f"
          % (tot[1], tot[3], tot[5], tot[1] / tot[5], tot[3] / tot[5]))


if __name__ == "__main__":
    main()
