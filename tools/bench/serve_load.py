#!/usr/bin/env python3
"""Load benchmark of `OUT --serve` (not a test): concurrent streaming clients on loopback.

  serve_load.py --binary OUT [--clients 1,2,4,8,16,32] [--requests 3] [--max-tokens 64]
                [--threads N] [--soak SECONDS] [--soak-clients 8] [--server-arg=ARG ...]

Starts `OUT --serve` on a free 127.0.0.1 port (--max-batch = the largest client count), then
for each client count N runs N asyncio clients (the official openai package's AsyncOpenAI),
each sending --requests streaming completions one after the other (greedy, distinct prompts of
about 24 tokens, max_tokens --max-tokens). Per N it prints output tokens/s over the wall time,
time to first token and inter-token latency (p50/p99, over every request and gap), and the
throughput relative to N = 1: the batched-over-single ratio, measured in this run.

--soak S then keeps --soak-clients clients busy for S seconds, sampling the server's resident
memory (VmRSS) every 5 s; it prints the first, last and largest sample and how many requests
were sent, completed and failed (a lost request is one that neither completed nor failed).
"""

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import time

import openai

WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly judge boxing "
         "matches in a distant kingdom of mountains rivers and ancient forests").split()


def prompt(i):
    # ~24 tokens, different for every request so nothing is shared or cached.
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(20)) + f" #{i}"


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


async def one_request(client, model, i, max_tokens, out):
    t0 = time.perf_counter()
    first, last, gaps, tokens = None, None, [], 0
    stream = await client.completions.create(
        model=model, prompt=prompt(i), max_tokens=max_tokens, temperature=0, stream=True,
        stream_options={"include_usage": True})
    async for chunk in stream:
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].text:
            now = time.perf_counter()
            if first is None:
                first = now - t0
            else:
                gaps.append(now - last)
            last = now
    out["ttft"].append(first if first is not None else float("nan"))
    out["itl"].extend(gaps)
    out["tokens"] += tokens


async def run_level(url, model, n, requests, max_tokens, base):
    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
    out = {"ttft": [], "itl": [], "tokens": 0}

    async def worker(w):
        for r in range(requests):
            await one_request(client, model, base + w * requests + r, max_tokens, out)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(n)))
    wall = time.perf_counter() - t0
    await client.close()
    return out["tokens"] / wall, out


async def soak(url, model, pid, seconds, clients, max_tokens):
    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
    counts = {"sent": 0, "done": 0, "failed": 0}
    samples = []
    end = time.time() + seconds

    async def worker(w):
        i = 0
        while time.time() < end:
            counts["sent"] += 1
            try:
                await one_request(client, model, 100000 + w * 100000 + i,
                                  max_tokens, {"ttft": [], "itl": [], "tokens": 0})
                counts["done"] += 1
            except Exception as e:  # noqa: BLE001 - counted and reported
                counts["failed"] += 1
                print(f"soak: request failed: {e}", file=sys.stderr)
            i += 1

    async def sampler():
        while time.time() < end:
            samples.append(rss_kib(pid))
            await asyncio.sleep(5)
        samples.append(rss_kib(pid))

    await asyncio.gather(sampler(), *(worker(w) for w in range(clients)))
    await client.close()
    return counts, samples


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--clients", default="1,2,4,8,16,32")
    ap.add_argument("--requests", type=int, default=3, help="requests per client per level")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--soak", type=float, default=0, help="seconds of soak after the table")
    ap.add_argument("--soak-clients", type=int, default=8)
    ap.add_argument("--server-arg", action="append", default=[])
    args = ap.parse_args()
    levels = [int(x) for x in args.clients.split(",")]

    proc = subprocess.Popen(
        [args.binary, "--serve", "--port", "0", "--host", "127.0.0.1", "--threads",
         str(args.threads), "--max-batch", str(max(levels + [args.soak_clients])),
         "--served-model-name", "bench", *args.server_arg],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    m = re.search(r"on http://127\.0\.0\.1:(\d+) ", line)
    if not m:
        proc.kill()
        sys.exit("serve_load: the server did not start: " + line + proc.stderr.read())
    url = f"http://127.0.0.1:{m.group(1)}/v1"
    print(line.strip())
    try:
        asyncio.run(run_level(url, "bench", 1, 1, 8, 900000))  # warm up
        print(f"\n| clients | output tok/s | TTFT p50 ms | TTFT p99 ms | ITL p50 ms | ITL p99 ms "
              f"| vs 1 client |")
        print("|---:|---:|---:|---:|---:|---:|---:|")
        single = None
        for i, n in enumerate(levels):
            tps, out = asyncio.run(run_level(url, "bench", n, args.requests, args.max_tokens,
                                             i * 10000))
            single = single or tps
            ms = lambda x: f"{1000 * x:.1f}"  # noqa: E731
            print(f"| {n} | {tps:.1f} | {ms(pct(out['ttft'], 50))} | {ms(pct(out['ttft'], 99))} "
                  f"| {ms(pct(out['itl'], 50))} | {ms(pct(out['itl'], 99))} "
                  f"| {tps / single:.2f}x |", flush=True)
        if args.soak > 0:
            counts, samples = asyncio.run(soak(url, "bench", proc.pid, args.soak,
                                               args.soak_clients, args.max_tokens))
            lost = counts["sent"] - counts["done"] - counts["failed"]
            print(f"\nsoak: {args.soak:.0f} s, {args.soak_clients} clients: {counts['sent']} "
                  f"sent, {counts['done']} completed, {counts['failed']} failed, {lost} lost; "
                  f"RSS first {samples[0] / 1024:.1f} MiB, last {samples[-1] / 1024:.1f} MiB, "
                  f"max {max(samples) / 1024:.1f} MiB over {len(samples)} samples")
            print("soak RSS every 5 s (MiB): " + " ".join(f"{x / 1024:.1f}" for x in samples))
    finally:
        proc.terminate()
        proc.wait(timeout=120)


if __name__ == "__main__":
    main()
