#!/usr/bin/env python3
"""Load benchmark of `OUT --serve` (not a test): concurrent streaming clients on loopback.

  serve_load.py --binary OUT [--clients 1,2,4,8,16,32] [--requests 3] [--max-tokens 64]
                [--threads N] [--soak SECONDS] [--soak-clients 8] [--shared-prefix WORDS]
                [--server-arg=ARG ...]

Starts `OUT --serve` on a free 127.0.0.1 port (--max-batch = the largest client count), then
for each client count N runs N asyncio clients (the official openai package's AsyncOpenAI),
each sending --requests streaming completions one after the other (greedy, distinct prompts of
about 24 tokens, max_tokens --max-tokens). Per N it prints output tokens/s over the wall time,
time to first token and inter-token latency (p50/p99, over every request and gap), and the
throughput relative to N = 1: the batched-over-single ratio, measured in this run.

--shared-prefix W then measures the prefix cache, per client count: every prompt starts with
the same W-word "system prompt" (its KV blocks are computed once, then shared or revived from
the cache) against prompts of the same length made unique by a request number at their start
(nothing to share), in the same run; it prints both time-to-first-token medians, output tok/s
and the shared-over-unique ratios.

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


def system_text(words):
    return " ".join(WORDS[(k * 5) % len(WORDS)] for k in range(words))


def shared_prompt(words):
    """Prompt i: the same system text for every request, then prompt(i)."""
    text = system_text(words)
    return lambda i: text + "\n" + prompt(i)


def unique_prompt(words):
    """Prompt i: as long as shared_prompt's, but its first token is the request's own."""
    text = system_text(words)
    return lambda i: f"#{i} " + text + "\n" + prompt(i)


def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


async def one_request(client, model, i, max_tokens, out, make_prompt=prompt):
    t0 = time.perf_counter()
    first, last, gaps, tokens = None, None, [], 0
    stream = await client.completions.create(
        model=model, prompt=make_prompt(i), max_tokens=max_tokens, temperature=0, stream=True,
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


async def run_level(url, model, n, requests, max_tokens, base, make_prompt=prompt):
    client = openai.AsyncOpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
    out = {"ttft": [], "itl": [], "tokens": 0}

    async def worker(w):
        for r in range(requests):
            await one_request(client, model, base + w * requests + r, max_tokens, out,
                              make_prompt)

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


def prefix_table(url, levels, args):
    """Shared system prompt vs unique prompts of the same length, per client count."""
    ms = lambda x: f"{1000 * x:.1f}"  # noqa: E731
    w = args.shared_prefix
    asyncio.run(run_level(url, "bench", 1, 1, 2, 800000, shared_prompt(w)))  # computes it once
    print(f"\nprefix cache: prompts of a {w}-word common system prompt + ~24 tokens, against "
          f"the same lengths made unique at their first token")
    print("\n| clients | TTFT p50 ms unique | TTFT p50 ms shared | TTFT unique/shared "
          "| tok/s unique | tok/s shared | tok/s shared/unique |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for i, n in enumerate(levels):
        tu, ou = asyncio.run(run_level(url, "bench", n, args.requests, args.max_tokens,
                                       500000 + i * 10000, unique_prompt(w)))
        ts, os_ = asyncio.run(run_level(url, "bench", n, args.requests, args.max_tokens,
                                        600000 + i * 10000, shared_prompt(w)))
        u50, s50 = pct(ou["ttft"], 50), pct(os_["ttft"], 50)
        print(f"| {n} | {ms(u50)} | {ms(s50)} | {u50 / s50:.2f}x | {tu:.1f} | {ts:.1f} "
              f"| {ts / tu:.2f}x |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", required=True)
    ap.add_argument("--clients", default="1,2,4,8,16,32")
    ap.add_argument("--requests", type=int, default=3, help="requests per client per level")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--soak", type=float, default=0, help="seconds of soak after the table")
    ap.add_argument("--soak-clients", type=int, default=8)
    ap.add_argument("--shared-prefix", type=int, default=0,
                    help="words of a common system prompt: prefix cache on/off table")
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
        if args.shared_prefix > 0:
            prefix_table(url, levels, args)
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
