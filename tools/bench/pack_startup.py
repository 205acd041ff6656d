#!/usr/bin/env python3
"""Start-up time and resident memory: a packed, mapped weights file (--pack) against today's
copy of the checkpoint into an arena, on the same Mixtral-shaped model, in one run.

  tools/bench/pack_startup.py [--layers 2] [--checkpoint DIR] [--max-seq-len 512] [--runs 3]
                              [--decode 8] [--threads N]

The checkpoint (hidden 4096, intermediate 14336, 8 experts top-2, 32/8 heads, vocab 32000,
bf16, --layers layers: 6.3 GB for 2) is written by tools/gpu-check/make_checkpoint.cpp (streamed:
make_checkpoint.py would need 2x its size in RAM) into build/bench/mixtral-L<N>-bf16-stream/
unless --checkpoint names one. Both binaries are compiled from it (build/bench/startup-copy,
build/bench/startup-packed + .weights). Each run starts a binary on one prompt token and
reads its stdout: start-up is the time to its first generated id (loading + a one-token
prefill); after --warmup more ids (the first touches of the experts' pages) the next --decode
ids give the decode rate; /proc/PID/status is read after the
first id (VmRSS = RssAnon + RssFile + RssShmem, VmHWM the peak) and the binary is stopped.
"warm": the files are in the page cache (median of --runs); "cold": their pages were dropped
first with posix_fadvise(DONTNEED) (only these files; the rest of the machine is untouched). RssAnon/RssFile are read after
the first id, VmHWM (the peak) at the end.
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "test", "reference"))
import make_checkpoint  # noqa: E402


def sh(argv, **kw):
    print("$ " + " ".join(argv), flush=True)
    subprocess.run(argv, check=True, **kw)


def make_model(d, layers):
    if os.path.exists(os.path.join(d, "config.json")):
        return
    gen = os.path.join(ROOT, "build", "bench", "make_checkpoint")
    if not os.path.exists(gen):
        sh(["c++", "-O2", "-o", gen, os.path.join(ROOT, "tools", "gpu-check", "make_checkpoint.cpp")])
    tmp = d + ".tmp"
    os.makedirs(tmp, exist_ok=True)
    sh([gen, tmp, "32000", "4096", "14336", str(layers), "32", "8", "8"])
    cfg = make_checkpoint.make_config(32000, 4096, 14336, layers, 32, 8, 8, 2, None, 1e6, 32768,
                                      "bf16", False, 1e-5)
    with open(os.path.join(tmp, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    os.rename(tmp, d)


def drop_pages(paths):
    for p in paths:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def read_id(stream):
    """Reads one id (digits up to a space); returns when it is complete."""
    digits = b""
    while True:
        c = stream.read(1)
        if not c:
            raise RuntimeError("the binary ended early")
        if c.isdigit():
            digits += c
        elif digits:
            return int(digits)


def one_run(binary, model, warmup, decode, threads):
    argv = [binary, "--model", model, "--prompt-ids", "1", "-n", "100000", "--temperature", "0",
            "--print-ids", "--quiet"] + (["--threads", str(threads)] if threads else [])
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    try:
        read_id(p.stdout)
        t1 = time.perf_counter()
        mem = status(p.pid)
        for _ in range(warmup):
            read_id(p.stdout)
        t1b = time.perf_counter()
        for _ in range(decode):
            read_id(p.stdout)
        t2 = time.perf_counter()
        mem["VmHWM"] = status(p.pid)["VmHWM"]
    finally:
        p.send_signal(signal.SIGINT)
        p.communicate(timeout=60)
    return dict(startup=t1 - t0, decode_tps=decode / (t2 - t1b), **mem)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--checkpoint")
    ap.add_argument("--max-seq-len", type=int, default=512)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--decode", type=int, default=16)
    ap.add_argument("--threads", type=int)
    args = ap.parse_args()
    bench = os.path.join(ROOT, "build", "bench")
    os.makedirs(bench, exist_ok=True)
    model = args.checkpoint or os.path.join(bench, f"mixtral-L{args.layers}-bf16-stream")
    make_model(model, args.layers)
    compiler = os.path.join(ROOT, "build", "bin", "mixtral-compile")
    copy, packed = os.path.join(bench, "startup-copy"), os.path.join(bench, "startup-packed")
    seq = ["--max-seq-len", str(args.max_seq_len)]
    sh([compiler, model, "-o", copy] + seq)
    t = time.perf_counter()
    sh([compiler, model, "-o", packed, "--pack"] + seq)
    print(f"(compile with --pack: {time.perf_counter() - t:.1f} s)")
    ckpt_files = [os.path.join(model, f) for f in os.listdir(model) if f.endswith(".safetensors")]
    files = {copy: ckpt_files, packed: [packed + ".weights"]}
    rows = []
    for name, binary in (("copy (today)", copy), ("packed (--pack)", packed)):
        drop_pages(files[binary])
        cold = one_run(binary, model, args.warmup, args.decode, args.threads)
        warm = sorted((one_run(binary, model, args.warmup, args.decode, args.threads)
                       for _ in range(args.runs)), key=lambda r: r["startup"])[args.runs // 2]
        rows.append((name, cold, warm))
    gb = lambda b: f"{b / 1e9:6.2f} GB"
    print(f"\nmodel: {model} ({sum(os.path.getsize(f) for f in ckpt_files) / 1e9:.2f} GB), "
          f"{args.layers} layers; start-up = time to the first generated id\n")
    print("| load | start-up cold | start-up warm | VmHWM | RssAnon | RssFile | decode tok/s |")
    print("|---|---|---|---|---|---|---|")
    for name, cold, warm in rows:
        print(f"| {name} | {cold['startup']:.2f} s | {warm['startup']:.2f} s | {gb(warm['VmHWM'])} "
              f"| {gb(warm['RssAnon'])} | {gb(warm['RssFile'])} | {warm['decode_tps']:.2f} |")
    c, p = rows[0][2], rows[1][2]
    print(f"\nwarm start-up ratio copy/packed: {c['startup'] / p['startup']:.1f}x; "
          f"cold: {rows[0][1]['startup'] / rows[1][1]['startup']:.1f}x; "
          f"anonymous memory copy/packed: {c['RssAnon'] / max(p['RssAnon'], 1):.0f}x")


if __name__ == "__main__":
    main()
