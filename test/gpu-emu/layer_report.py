#!/usr/bin/env python3
"""Per-kernel figures of the Mixtral-shaped layer (mixtral_layer.py) in the PTX interpreter,
for one build or two side by side (before / after). Run through layer-report.sh.

For each build (a mixtral-compile and a libmoec_ptxemu.so) it compiles the layer for
--target nvptx, runs a P-token prefill and D decode tokens under PTXEMU_TRACE=1, and prints
per kernel (by name):
  launches    per prefill, and per decode token (the D decode steps' launches / D);
  loaded      global bytes the kernel's loads asked for (a byte read twice counts twice),
              per prefill and per decode token;
  ideal       bytes of the distinct 32-byte sectors those loads touched: each weight and
              activation byte fetched once (a GPU's DRAM traffic with an unbounded cache);
  x           loaded / ideal (1.0: nothing is read twice);
  regs/spill  ptxas -arch=sm_90 -v: registers per thread, spill stores + loads in bytes;
  s/pre s/dec the interpreter's CPU seconds in the kernel per prefill and per decode token
              (wall seconds with an interpreter whose trace has no CPU time);
and the interpreter's wall and CPU time for the run (prefill + D decode tokens). Steps are
split where the runtime copies results to the host ("ptxemu: copy to host" trace lines; an
older interpreter's trace, without them, where the first kernel is launched again): the
first step is the prefill, every later one a decode token. Below the table, per step, the
ideal summed over kernels against the model's weight bytes (weights read once), so a kernel
reading weights it does not need shows there too.

Usage: layer_report.py --compiler C --ptxemu LIB [--baseline-compiler C0]
                       [--baseline-ptxemu LIB0] --workdir DIR [-P 12] [-D 2]
"""

import argparse
import collections
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mixtral_layer  # noqa: E402

LAUNCH = re.compile(r"^ptxemu: launch (\S+) grid")
DONE = re.compile(r"^ptxemu: (\S+) done in ([0-9.]+) s(?: \(cpu ([0-9.]+) s\))?; "
                  r"global loads (\d+) bytes.*?"
                  r"(?:distinct 32-byte sectors (\d+) bytes)?$")
FAILED = re.compile(r"^ptxemu: launch (\S+) failed: (.*)$")
COPY = re.compile(r"^ptxemu: copy to host (\d+) bytes")


def sh(cmd, **kw):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if p.returncode != 0:
        sys.exit(f"layer_report.py: exit {p.returncode}: {' '.join(cmd)}\n{p.stderr.strip()[-2000:]}")
    return p


def ptxas_table(ptx):
    """{kernel: (registers, spill bytes)} from ptxas -arch=sm_90 -v, or {} without ptxas."""
    ptxas = shutil.which("ptxas") or ("/usr/local/cuda/bin/ptxas"
                                      if os.path.exists("/usr/local/cuda/bin/ptxas") else None)
    if not ptxas:
        return {}
    p = subprocess.run([ptxas, "-arch=sm_90", "-v", ptx, "-o", os.devnull],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out, kernel, spill = {}, None, 0
    for line in p.stdout.splitlines():
        m = re.search(r"Compiling entry function '([^']+)'", line)
        if m:
            kernel, spill = m.group(1), 0
        m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and kernel:
            spill = int(m.group(1)) + int(m.group(2))
        m = re.search(r"Used (\d+) registers", line)
        if m and kernel:
            out[kernel] = (int(m.group(1)), spill)
    if p.returncode != 0:
        out["(ptxas failed)"] = (p.returncode, 0)
    return out


def parse_trace(text):
    """[step: {kernel: [launches, loaded, ideal, seconds]}], split at copies to the host; a
    trace without them (an interpreter from before they were traced) is split where the
    run's first kernel is launched again (each step starts as the first one did)."""
    launches = []  # (kernel, loaded, ideal, seconds, copy-to-host follows)
    for line in text.splitlines():
        if FAILED.match(line):
            sys.exit(f"layer_report.py: {line}")
        m = DONE.match(line)
        if m:
            launches.append([m.group(1), int(m.group(4)), int(m.group(5) or 0),
                             float(m.group(3) or m.group(2)), False])
        elif COPY.match(line) and launches:
            launches[-1][4] = True
    by_copies = any(l[4] for l in launches)
    steps, cur = [], collections.OrderedDict()
    for i, (name, loaded, ideal, secs, copy) in enumerate(launches):
        if not by_copies and i and name == launches[0][0] and cur:
            steps.append(cur)
            cur = collections.OrderedDict()
        k = cur.setdefault(name, [0, 0, 0, 0.0])
        k[0] += 1
        k[1] += loaded
        k[2] += ideal
        k[3] += secs
        if copy:
            steps.append(cur)
            cur = collections.OrderedDict()
    if cur:
        steps.append(cur)
    return steps


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(tag, compiler, lib, model_dir, work, prompt, n):
    exe, ptx = os.path.join(work, tag + ".out"), os.path.join(work, tag + ".ptx")
    seq = str(len(prompt) + n)
    common = [model_dir, "--target=nvptx", "--gpu=sm_90", "--max-seq-len", seq]
    sh([compiler] + common + ["-o", exe])
    sh([compiler] + common + ["--emit=ptx", "-o", ptx])
    env = dict(os.environ, PTXEMU_TRACE="1", MOEC_CUDA_DRIVER=os.path.abspath(lib))
    wall, cpu = time.time(), children_cpu()
    p = sh([exe, "--prompt-ids", ",".join(map(str, prompt)), "-n", str(n), "--temperature", "0",
            "--print-ids"], env=env)
    wall, cpu = time.time() - wall, children_cpu() - cpu
    with open(os.path.join(work, tag + ".trace"), "w") as f:
        f.write(p.stderr)
    steps = parse_trace(p.stderr)
    if len(steps) != n:
        sys.exit(f"layer_report.py: {tag}: {len(steps)} steps in the trace, expected {n} "
                 f"(a prefill and {n - 1} decode tokens); see {work}/{tag}.trace")
    return dict(steps=steps, regs=ptxas_table(ptx), wall=wall, cpu=cpu, ids=p.stdout.split())


def per_kernel(r):
    """{kernel: (prefill [launches, loaded, ideal, s], decode per token [...])}."""
    pre, dec = r["steps"][0], r["steps"][1:]
    names = list(pre) + [k for s in dec for k in s if k not in pre]
    out = {}
    for k in dict.fromkeys(names):
        p = pre.get(k, [0, 0, 0, 0.0])
        d = [sum(s.get(k, [0, 0, 0, 0.0])[i] for s in dec) / max(len(dec), 1) for i in range(4)]
        out[k] = (p, d)
    return out


def fmt_bytes(b):
    return f"{b / 1e6:9.1f}M" if b else "        -"


def weight_model(cfg):
    """experts -> bytes of the bf16 weights a step must read once: attention q,k,v,o +
    router + that many experts' w1,w3,w2 + lm_head (norms and the step's embedding rows are
    under 0.1 MB). Decode routes 2 experts; prefill every expert that got a token (at most E)."""
    D, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H, KVH, E = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_local_experts"]
    hd = D // H
    attn = 2 * (D * H * hd * 2 + D * KVH * hd * 2)
    expert = 2 * 3 * D * F
    return lambda experts: attn + 2 * E * D + experts * expert + 2 * V * D


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compiler", required=True)
    ap.add_argument("--ptxemu", required=True)
    ap.add_argument("--baseline-compiler")
    ap.add_argument("--baseline-ptxemu")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("-P", type=int, default=12, help="prompt tokens")
    ap.add_argument("-D", type=int, default=2, help="decode tokens")
    args = ap.parse_args()
    work = os.path.abspath(args.workdir)
    os.makedirs(work, exist_ok=True)
    model_dir = mixtral_layer.ensure_checkpoint(work)
    prompt = mixtral_layer.prompt(args.P)
    builds = [("after", args.compiler, args.ptxemu)]
    if args.baseline_compiler or args.baseline_ptxemu:
        builds.insert(0, ("before", args.baseline_compiler or args.compiler,
                          args.baseline_ptxemu or args.ptxemu))
    results = {}
    for tag, comp, lib in builds:
        print(f"{tag}: {comp} with {lib} ...", file=sys.stderr, flush=True)
        results[tag] = measure(tag, os.path.abspath(comp), lib, model_dir, work, prompt, args.D + 1)
    tags = [b[0] for b in builds]

    cpu_name = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                     if l.startswith("model name")), "?")
    print(f"Mixtral-shaped layer (hidden 4096, intermediate 14336, 8 experts top-2, 32/8 heads, "
          f"vocab 512, bf16): prefill {args.P} tokens + {args.D} decode tokens; CPU: {cpu_name}")
    for tag, comp, lib in builds:
        r = results[tag]
        print(f"  {tag:6} compiler {comp}\n         ptxemu   {lib}\n"
              f"         interpreter: wall {r['wall']:.1f} s, cpu {r['cpu']:.1f} s; ids {' '.join(r['ids'])}")
    if len(tags) == 2 and results["before"]["ids"] != results["after"]["ids"]:
        print("  note: the two builds sampled different ids")
    tables = {t: per_kernel(results[t]) for t in tags}
    names = list(dict.fromkeys(k for t in tags for k in tables[t]))
    print()
    head = f"{'kernel':22} {'':6} {'launch/pre':>10} {'launch/dec':>10} {'loaded/pre':>10} " \
           f"{'ideal/pre':>10} {'x':>5} {'loaded/dec':>10} {'ideal/dec':>10} {'x':>5} " \
           f"{'regs':>5} {'spill':>6} {'s/pre':>7} {'s/dec':>7}"
    print(head)
    print("-" * len(head))
    for k in names:
        for t in tags:
            if k not in tables[t]:
                print(f"{k:22} {t:6} {'(no launches)':>10}")
                continue
            p, d = tables[t][k]
            regs, spill = results[t]["regs"].get(k, ("?", "?"))
            rp = f"{p[1] / p[2]:5.2f}" if p[2] else "    -"
            rd = f"{d[1] / d[2]:5.2f}" if d[2] else "    -"
            print(f"{k:22} {t:6} {p[0]:10d} {d[0]:10.1f} {fmt_bytes(p[1])} {fmt_bytes(p[2])} {rp} "
                  f"{fmt_bytes(d[1])} {fmt_bytes(d[2])} {rd} {regs!s:>5} {spill!s:>6} "
                  f"{p[3]:7.2f} {d[3]:7.2f}")
    print()
    with open(os.path.join(model_dir, "config.json")) as f:
        weights = weight_model(json.load(f))
    print("per step, over all kernels: launches, loaded, ideal; weights read once by the model "
          "(attention + router + routed experts + lm_head):")
    for t in tags:
        pre = results[t]["steps"][0]
        dec = results[t]["steps"][1:]
        tot = lambda s, i: sum(v[i] for v in s.values())  # noqa: E731
        print(f"  {t:6} prefill: {tot(pre, 0)} launches, loaded {tot(pre, 1) / 1e6:.1f} MB, "
              f"ideal {tot(pre, 2) / 1e6:.1f} MB; weights {weights(2) / 1e6:.1f} MB (2 experts) "
              f"to {weights(8) / 1e6:.1f} MB (all 8)")
        print(f"  {t:6} decode:  {sum(tot(s, 0) for s in dec) / len(dec):.1f} launches/token, "
              f"loaded {sum(tot(s, 1) for s in dec) / len(dec) / 1e6:.1f} MB, "
              f"ideal {sum(tot(s, 2) for s in dec) / len(dec) / 1e6:.1f} MB per token; "
              f"weights {weights(2) / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
