#!/usr/bin/env python3
"""End to end: `OUT --serve` driven by the official `openai` Python client.

Compiles the built-in tiny model (mixtral-compile --tiny: random bf16 weights, the real
Mixtral tokenizer, vocab 32000) with its batched step, starts `OUT --serve` on a free loopback
port and checks, with the compiled step doing the work:

  * completions and chat, streaming and not: streamed text == non-streamed text; usage and
    finish_reason in every response; stream_options.include_usage;
  * greedy (and seeded) outputs equal `OUT --prompt` (and `--chat-template --system`) with the
    same settings, bit for bit, as text;
  * batch invariance: 10 concurrent requests (different lengths, one prompt longer than the
    prefill chunk so it is prefilled in pieces between the others' decode steps, some arriving
    late) each equal the same request sent alone; so does one that shares a running request's
    prompt prefix (its KV blocks are reused, moec_prefix_blocks_reused_total grows);
  * the prefix cache of finished requests: the same long prompt sent again prefills only what
    its cached blocks do not hold (fewer rows in moec_batch_rows_sum, by exactly the
    moec_prefix_tokens_reused_total it gained) and answers the same text; a chat's second
    turn revives the first turn's blocks;
  * stop strings across token boundaries (not emitted, finish_reason "stop"), logprobs and
    top_logprobs, seeds;
  * errors with their status: malformed JSON and wrong types 400, prompt + max_tokens over the
    context 400, n > 1 400, a role order the template cannot express 400, wrong key 401,
    unknown model 404, a body over --max-body-bytes 413, a full queue 429; a port in use is
    one error line, exit 1;
  * a client that disconnects mid-stream frees its KV blocks (moec_kv_blocks_used back to 0);
    so does one that closes its connection while waiting for a non-streaming answer, long
    before that answer's max_tokens are generated;
  * SIGTERM with a stream in flight: the stream finishes, the server exits 0.

With --gpu the tiny model is compiled for nvptx and served with its kernels in the PTX
interpreter (MOEC_CUDA_DRIVER must name test/gpu-emu's library): only the batch-invariance check
runs, smaller (4 requests including a prompt prefilled in chunks, 6 tokens each, concurrent ==
each alone), and SIGTERM's exit 0.

Usage: check_serve.py --compiler build/bin/mixtral-compile --workdir DIR [--binary OUT] [--gpu]
Prints one line per check and `N passed, M failed`; exit 1 on any failure, 77 (skip) when the
openai package is missing (a failure with CI=true).
"""

import argparse
import concurrent.futures as cf
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

try:
    import openai
except ImportError:
    if os.environ.get("CI") == "true":
        print("check_serve: the openai package is missing (tools/setup.sh installs it)")
        sys.exit(1)
    print("check_serve: SKIP: the openai package is missing (tools/setup.sh installs it)")
    sys.exit(77)

KEY = "test-key"
MODEL = "tiny"
MAX_SEQ_LEN = 256
PREFILL_CHUNK = 16  # small, so a 40-token prompt is prefilled over several steps


class Server:
    """A running `OUT --serve`; its port is read from its first stderr line."""

    def __init__(self, binary, *extra):
        self.proc = subprocess.Popen(
            [binary, "--serve", "--port", "0", "--api-key", KEY, "--served-model-name", MODEL,
             "--prefill-chunk", str(PREFILL_CHUNK), "--threads", "2", *extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        line = self.proc.stderr.readline()
        m = re.search(r"on http://127\.0\.0\.1:(\d+) ", line)
        if not m:
            self.proc.kill()
            raise RuntimeError("the server did not start: " + line + self.proc.stderr.read())
        self.port = int(m.group(1))
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key=KEY, max_retries=0,
                                    timeout=120)

    def raw(self, path, body=None, headers=None, method=None):
        """(status, body text) of a plain HTTP request."""
        req = urllib.request.Request(self.url + path, data=body, method=method,
                                     headers={"Authorization": "Bearer " + KEY,
                                              "Content-Type": "application/json",
                                              **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def metric(self, name):
        _, text = self.raw("/metrics")
        m = re.search(r"^" + re.escape(name) + r" (\S+)$", text, re.M)
        return float(m.group(1)) if m else None

    def stop(self, timeout=60):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        return rc, self.proc.stderr.read()


class Checks:
    def __init__(self):
        self.passed = self.failed = 0

    def check(self, name, ok, detail=""):
        print(("ok    " if ok else "FAIL  ") + name + ("" if ok else ": " + detail), flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1


def cli(binary, *args):
    """stdout of `OUT ARGS -q` minus the newline the CLI ends its text with."""
    r = subprocess.run([binary, "--threads", "2", "-q", *args], capture_output=True, text=True,
                       timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"{binary} {' '.join(args)}: {r.stderr}")
    return r.stdout[:-1] if r.stdout.endswith("\n") else r.stdout


def complete(client, prompt, max_tokens, **kw):
    return client.completions.create(model=MODEL, prompt=prompt, max_tokens=max_tokens,
                                     temperature=kw.pop("temperature", 0), **kw)


def stream_text(stream):
    """(text, finish_reason, usage) of a completions or chat stream."""
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for c in chunk.choices:
            if hasattr(c, "delta"):
                text += c.delta.content or ""
            else:
                text += c.text or ""
            finish = c.finish_reason or finish
    return text, finish, usage


PROMPTS = [
    "The capital of France is",
    "Once upon a time",
    "1, 2, 3, 4,",
    "def fibonacci(n):",
    "A",
    " ".join(["The quick brown fox jumps over the lazy dog."] * 4),  # ~45 tokens: chunked
    "Mixture of experts models route each token to",
    "Bonjour, je m'appelle",
    "In 1492,",
    "Water boils at",
]


def check_basics(c, s, binary):
    client = s.client
    # models, health, metrics
    models = client.models.list()
    c.check("GET /v1/models lists the served model",
            [m.id for m in models.data] == [MODEL], str(models))
    status, body = s.raw("/health")
    c.check("GET /health", status == 200 and json.loads(body)["status"] == "ok", body)
    status, body = s.raw("/metrics")
    names = ["moec_requests_total", "moec_queue_depth", "moec_kv_blocks_used",
             "moec_time_to_first_token_seconds_bucket", "moec_inter_token_seconds_bucket",
             "moec_batch_rows_bucket", "moec_generation_tokens_total"]
    c.check("GET /metrics is Prometheus text with the serving metrics",
            status == 200 and all(n in body for n in names), body[:400])

    # completions: non-streaming, streaming, CLI
    prompt, n = PROMPTS[0], 24
    r = complete(client, prompt, n)
    text = r.choices[0].text
    c.check("completion: finish_reason length and usage",
            r.choices[0].finish_reason == "length" and r.usage.completion_tokens == n
            and r.usage.total_tokens == r.usage.prompt_tokens + n, str(r))
    want = cli(binary, "-p", prompt, "-n", str(n), "--temp", "0")
    c.check("completion == OUT --prompt (greedy)", text == want, f"{text!r} vs {want!r}")
    ids = cli(binary, "--tokenize", prompt).split()
    c.check("completion usage.prompt_tokens == the CLI's token count",
            r.usage.prompt_tokens == len(ids), f"{r.usage.prompt_tokens} vs {len(ids)}")
    st, fin, usage = stream_text(complete(client, prompt, n, stream=True,
                                          stream_options={"include_usage": True}))
    c.check("streamed completion == non-streamed, with include_usage",
            st == text and fin == "length" and usage is not None
            and usage.completion_tokens == n, f"{st!r} {fin} {usage}")
    r2 = complete(client, [int(x) for x in ids], n)
    c.check("completion from token ids == from text", r2.choices[0].text == text,
            r2.choices[0].text)

    # chat: non-streaming, streaming, CLI with --chat-template --system
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Name a color."}]
    r = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=20,
                                       temperature=0)
    ctext = r.choices[0].message.content
    c.check("chat: role, finish_reason, usage",
            r.choices[0].message.role == "assistant" and r.choices[0].finish_reason in
            ("length", "stop") and r.usage.completion_tokens >= 1, str(r))
    want = cli(binary, "-p", "Name a color.", "--chat-template", "--system", "You are terse.",
               "-n", "20", "--temp", "0")
    c.check("chat == OUT --chat-template --system (greedy)", ctext == want,
            f"{ctext!r} vs {want!r}")
    st, fin, usage = stream_text(client.chat.completions.create(
        model=MODEL, messages=messages, max_tokens=20, temperature=0, stream=True,
        stream_options={"include_usage": True}))
    c.check("streamed chat == non-streamed chat", st == ctext and fin ==
            r.choices[0].finish_reason and usage.completion_tokens == r.usage.completion_tokens,
            f"{st!r} vs {ctext!r}")
    multi = messages + [{"role": "assistant", "content": ctext},
                        {"role": "user", "content": "Another."}]
    r3 = client.chat.completions.create(model=MODEL, messages=multi, max_tokens=8, temperature=0)
    c.check("multi-turn chat answers", r3.usage.prompt_tokens > r.usage.prompt_tokens,
            str(r3.usage))

    # seeded sampling == the CLI with the same settings
    r = complete(client, PROMPTS[1], 16, temperature=0.9, seed=1234, top_p=1.0)
    again = complete(client, PROMPTS[1], 16, temperature=0.9, seed=1234, top_p=1.0)
    want = cli(binary, "-p", PROMPTS[1], "-n", "16", "--temp", "0.9", "--seed", "1234",
               "--top-p", "1", "--top-k", "0")
    c.check("seeded sampling repeats and == OUT --seed",
            r.choices[0].text == again.choices[0].text == want,
            f"{r.choices[0].text!r} / {again.choices[0].text!r} / {want!r}")

    # stop strings: cut the greedy text in the middle of a later token
    full = complete(client, PROMPTS[2], 24).choices[0].text
    stop = full[len(full) // 2: len(full) // 2 + 3]
    cut = full[:full.find(stop)]
    r = complete(client, PROMPTS[2], 24, stop=[stop, "never-there"])
    c.check("stop string: text ends before it, finish_reason stop",
            r.choices[0].text == cut and r.choices[0].finish_reason == "stop"
            and r.usage.completion_tokens < 24, f"{stop!r}: {r.choices[0].text!r} vs {cut!r}")
    st, fin, _ = stream_text(complete(client, PROMPTS[2], 24, stop=stop, stream=True))
    c.check("stop string while streaming", st == cut and fin == "stop", f"{st!r}")
    want = cli(binary, "-p", PROMPTS[2], "-n", "24", "--temp", "0", "--stop", stop)
    c.check("stop string == OUT --stop", want == cut, f"{want!r} vs {cut!r}")

    # logprobs
    r = complete(client, PROMPTS[3], 8, logprobs=3)
    lp = r.choices[0].logprobs
    offsets_ok = all(b >= a for a, b in zip(lp.text_offset, lp.text_offset[1:])) and \
        lp.text_offset[0] == 0 and lp.text_offset[-1] < len(r.choices[0].text) + 1
    ok = (len(lp.tokens) == 8 and offsets_ok
          and all(x <= 0 for x in lp.token_logprobs)
          and all(1 <= len(t) <= 3 for t in lp.top_logprobs)
          # greedy: the chosen token is the most likely one
          and all(abs(max(t.values()) - x) < 1e-5 for t, x in zip(lp.top_logprobs,
                                                                   lp.token_logprobs)))
    c.check("completion logprobs (greedy picks the top one)", ok, str(lp)[:600])
    r = client.chat.completions.create(model=MODEL, messages=messages[1:], max_tokens=6,
                                       temperature=0, logprobs=True, top_logprobs=2)
    content = r.choices[0].logprobs.content
    ok = (len(content) == r.usage.completion_tokens
          and all(len(t.top_logprobs) == 2 and t.top_logprobs[0].logprob >= t.top_logprobs[1]
                  .logprob and abs(t.top_logprobs[0].logprob - t.logprob) < 1e-5
                  for t in content))
    c.check("chat logprobs with top_logprobs", ok, str(content)[:600])


def check_batch_invariance(c, s):
    """Each request's greedy tokens are the same alone and in a batch, whenever it arrives."""
    client = s.client
    n = 20
    alone = [complete(client, p, n).choices[0].text for p in PROMPTS]
    for rnd in range(2):
        def one(i):
            if rnd == 1 and i % 3 == 0:
                time.sleep(0.05 * i)  # late arrivals join a batch that is decoding
            if i % 2:
                return stream_text(complete(client, PROMPTS[i], n, stream=True))[0]
            return complete(client, PROMPTS[i], n).choices[0].text
        with cf.ThreadPoolExecutor(len(PROMPTS)) as pool:
            together = list(pool.map(one, range(len(PROMPTS))))
        bad = [i for i in range(len(PROMPTS)) if together[i] != alone[i]]
        c.check(f"batch invariance, round {rnd + 1}: {len(PROMPTS)} concurrent requests == "
                "each alone", not bad,
                "; ".join(f"{i}: {together[i]!r} vs {alone[i]!r}" for i in bad))
    # Prefix sharing: a request whose prompt starts like a running one's takes its computed
    # blocks, and its output is still the same as alone.
    prefix = PROMPTS[5] + " And then"
    shared_alone = complete(client, prefix + " the cat sat", n).choices[0].text
    before = s.metric("moec_prefix_blocks_reused_total")
    stream = complete(client, prefix + " the dog ran", 200, stream=True)
    next(iter(stream))  # its prompt is computed now
    shared = complete(client, prefix + " the cat sat", n).choices[0].text
    stream.close()
    after = s.metric("moec_prefix_blocks_reused_total")
    c.check("a common prefix's blocks are shared, output unchanged",
            shared == shared_alone and after > before, f"{before} -> {after}: {shared!r} vs "
            f"{shared_alone!r}")
    rows = s.metric("moec_batch_sequences_sum")
    steps = s.metric("moec_batch_sequences_count")
    c.check("requests shared steps (mean sequences per step > 1)",
            rows is not None and steps and rows / steps > 1.0, f"{rows} / {steps}")


def check_prefix_cache(c, s):
    """A finished request's prompt blocks stay cached: the same prompt again is prefilled
    only past them, and answers the same. Nothing else runs meanwhile, so the step rows
    saved equal the tokens reused."""
    client = s.client
    prompt = " ".join(["Paged attention keeps each sequence's cache in blocks."] * 5)
    n = 8

    def rows_and_reused():
        return s.metric("moec_batch_rows_sum"), s.metric("moec_prefix_tokens_reused_total")

    rows0, reused0 = rows_and_reused()
    cold = complete(client, prompt, n)
    rows1, reused1 = rows_and_reused()
    cached = s.metric("moec_kv_blocks_cached")
    warm = complete(client, prompt, n)
    rows2, reused2 = rows_and_reused()
    cold_rows, warm_rows, reused = rows1 - rows0, rows2 - rows1, reused2 - reused1
    c.check("prefix cache: a finished request's blocks stay cached",
            cached and cached * 16 >= cold.usage.prompt_tokens - 16, f"{cached} blocks")
    c.check("prefix cache: the same prompt again prefills only past the cached blocks",
            reused >= cold.usage.prompt_tokens - 16 and reused1 == reused0
            and cold_rows - warm_rows == reused,
            f"rows {cold_rows} then {warm_rows}, reused {reused} of "
            f"{cold.usage.prompt_tokens} prompt tokens")
    print(f"      (prompt {cold.usage.prompt_tokens} tokens: {cold_rows:.0f} step rows cold, "
          f"{warm_rows:.0f} warm, {reused:.0f} tokens reused)")
    c.check("prefix cache: the answer is unchanged",
            warm.choices[0].text == cold.choices[0].text
            and warm.usage == cold.usage, f"{warm.choices[0].text!r} vs {cold.choices[0].text!r}")

    # A chat's next turn starts with the previous turn's prompt (and answer): the blocks of the
    # finished first turn are revived instead of prefilled again.
    system = " ".join(["Answer as a patient teacher who explains every step."] * 4)
    turn1 = [{"role": "system", "content": system}, {"role": "user", "content": "What is 2+2?"}]
    r1 = client.chat.completions.create(model=MODEL, messages=turn1, max_tokens=8, temperature=0)
    revived0 = s.metric("moec_prefix_cache_blocks_revived_total")
    turn2 = turn1 + [{"role": "assistant", "content": r1.choices[0].message.content},
                     {"role": "user", "content": "And 3+3?"}]
    r2 = client.chat.completions.create(model=MODEL, messages=turn2, max_tokens=8, temperature=0)
    revived = s.metric("moec_prefix_cache_blocks_revived_total") - revived0
    c.check("prefix cache: a chat's next turn revives the previous turn's blocks",
            revived * 16 >= r1.usage.prompt_tokens - 16,
            f"{revived} blocks revived, first turn's prompt {r1.usage.prompt_tokens} tokens")
    print(f"      (chat: {revived:.0f} blocks revived for turn 2, whose prompt is "
          f"{r2.usage.prompt_tokens} tokens)")


def check_errors(c, s, binary):
    client = s.client

    def status_of(fn):
        try:
            fn()
        except openai.APIStatusError as e:
            return e.status_code
        return 200

    bad_key = openai.OpenAI(base_url=s.url + "/v1", api_key="wrong", max_retries=0)
    c.check("wrong API key: 401", status_of(lambda: complete(bad_key, "x", 2)) == 401)
    c.check("unknown model: 404", status_of(lambda: client.completions.create(
        model="gpt-4", prompt="x", max_tokens=2)) == 404)
    c.check("prompt + max_tokens over the context: 400",
            status_of(lambda: complete(client, "x", MAX_SEQ_LEN)) == 400)
    c.check("n = 2: 400", status_of(lambda: complete(client, "x", 2, n=2)) == 400)
    c.check("max_tokens of the wrong type: 400", status_of(lambda: complete(
        client, "x", 2, extra_body={"max_tokens": "many"})) == 400)
    c.check("temperature out of range: 400",
            status_of(lambda: complete(client, "x", 2, temperature=5)) == 400)
    c.check("chat starting with an assistant message: 400", status_of(
        lambda: client.chat.completions.create(model=MODEL, max_tokens=2, messages=[
            {"role": "assistant", "content": "hi"}, {"role": "user", "content": "x"}])) == 400)
    c.check("chat with two user messages in a row: 400", status_of(
        lambda: client.chat.completions.create(model=MODEL, max_tokens=2, messages=[
            {"role": "user", "content": "a"}, {"role": "user", "content": "b"}])) == 400)
    status, body = s.raw("/v1/completions", b"{not json")
    c.check("malformed JSON: 400 with an OpenAI error body",
            status == 400 and "error" in json.loads(body), f"{status} {body}")
    status, body = s.raw("/v1/completions", b'{"model": "tiny", "prompt": "' + b"a" * 70000 +
                         b'"}')
    c.check("body over --max-body-bytes: 413", status == 413 and "error" in json.loads(body),
            f"{status} {body[:200]}")

    r = subprocess.run([binary, "--serve", "--port", str(s.port)], capture_output=True,
                       text=True, timeout=60)
    c.check("port in use: one error line, exit 1",
            r.returncode == 1 and r.stderr.startswith("error: --serve: cannot listen on "
                                                      f"127.0.0.1:{s.port}")
            and r.stderr.count("\n") == 1, f"rc {r.returncode}: {r.stderr}")

    # A full queue: one sequence in the batch, none waiting.
    small = Server(binary, "--max-batch", "1", "--max-queue", "0")
    try:
        stream = complete(small.client, PROMPTS[0], 200, stream=True)
        next(iter(stream))  # running now
        c.check("queue full: 429", status_of(lambda: complete(small.client, "x", 2)) == 429)
        stream.close()
    finally:
        small.stop()


def check_disconnect(c, s):
    """A client that leaves mid-stream frees its blocks at once."""
    stream = complete(s.client, PROMPTS[5], 200, stream=True)
    it = iter(stream)
    next(it)
    next(it)
    used = s.metric("moec_kv_blocks_used")
    stream.close()  # the connection goes away
    closed = time.time()
    deadline = closed + 5
    after = used
    while time.time() < deadline:
        after = s.metric("moec_kv_blocks_used")
        if after == 0:
            break
        time.sleep(0.02)
    print(f"      (freed {time.time() - closed:.2f} s after the close)")
    c.check("disconnect mid-stream frees the sequence's KV blocks",
            used and used > 0 and after == 0, f"{used} -> {after}")


def wait_metric(s, name, pred, seconds):
    """Polls /metrics until pred(value of name); returns the last value."""
    deadline = time.time() + seconds
    value = s.metric(name)
    while not pred(value) and time.time() < deadline:
        time.sleep(0.02)
        value = s.metric(name)
    return value


def check_nonstream_disconnect(c, s):
    """A client that closes the connection while its non-streaming answer is generated has
    its sequence freed at once, not when max_tokens are done."""
    max_tokens = MAX_SEQ_LEN - 16
    body = json.dumps({"model": MODEL, "prompt": PROMPTS[0], "max_tokens": max_tokens,
                       "temperature": 0}).encode()
    generated0 = s.metric("moec_generation_tokens_total")
    sock = socket.create_connection(("127.0.0.1", s.port))
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Authorization: Bearer " + KEY.encode() + b"\r\n"
                 b"Content-Type: application/json\r\n"
                 b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    running = wait_metric(s, "moec_requests_running", lambda v: v and v >= 1, 10)
    wait_metric(s, "moec_generation_tokens_total", lambda v: v > generated0, 10)
    sock.close()
    closed = time.time()
    after = wait_metric(s, "moec_requests_running", lambda v: v == 0, 10)
    freed_in = time.time() - closed
    used = s.metric("moec_kv_blocks_used")
    generated = s.metric("moec_generation_tokens_total") - generated0
    c.check("a non-streaming client that disconnects frees its sequence at once",
            running == 1 and after == 0 and used == 0 and freed_in < 2
            and generated < max_tokens,
            f"running {running} -> {after}, blocks used {used}, freed in {freed_in:.2f} s, "
            f"{generated:.0f} of {max_tokens} tokens generated")
    print(f"      (freed {freed_in:.2f} s after the close, {generated:.0f} of {max_tokens} "
          "tokens generated)")


def check_sigterm(c, binary):
    s = Server(binary, "--shutdown-timeout", "30")
    stream = complete(s.client, PROMPTS[0], 40, stream=True)
    it = iter(stream)
    first = next(it)
    s.proc.send_signal(signal.SIGTERM)
    text, fin = "", None
    for chunk in it:
        text += chunk.choices[0].text or "" if chunk.choices else ""
        fin = (chunk.choices[0].finish_reason if chunk.choices else None) or fin
    try:
        rc = s.proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        s.proc.kill()
        rc = "timeout"
    err = s.proc.stderr.read()
    c.check("SIGTERM: the stream in flight finishes, exit 0",
            fin == "length" and rc == 0 and "SIGTERM" in err, f"rc {rc}, finish {fin}: {err}")


def check_gpu_batch_invariance(c, s):
    """The nvptx step: each request's greedy tokens are the same alone and in a batch (a few
    requests, few tokens: every step runs in the PTX interpreter)."""
    client = s.client
    n = 6
    prompts = [PROMPTS[0], PROMPTS[3], PROMPTS[5], PROMPTS[7]]  # [5]: prefilled in chunks
    alone = [complete(client, p, n).choices[0].text for p in prompts]

    def one(i):
        if i % 2:
            return stream_text(complete(client, prompts[i], n, stream=True))[0]
        return complete(client, prompts[i], n).choices[0].text
    with cf.ThreadPoolExecutor(len(prompts)) as pool:
        together = list(pool.map(one, range(len(prompts))))
    bad = [i for i in range(len(prompts)) if together[i] != alone[i]]
    c.check(f"nvptx batch invariance: {len(prompts)} concurrent requests == each alone", not bad,
            "; ".join(f"{i}: {together[i]!r} vs {alone[i]!r}" for i in bad))
    rows = s.metric("moec_batch_sequences_sum")
    steps = s.metric("moec_batch_sequences_count")
    c.check("requests shared steps (mean sequences per step > 1)",
            rows is not None and steps and rows / steps > 1.0, f"{rows} / {steps}")


def main_gpu(args):
    if not os.environ.get("MOEC_CUDA_DRIVER"):
        print("check_serve --gpu: MOEC_CUDA_DRIVER must name the PTX interpreter's library")
        return 1
    binary = args.binary
    if not binary:
        binary = os.path.join(args.workdir, "tiny-gpu")
        subprocess.run([args.compiler, "--tiny", "--target", "nvptx", "--gpu", "sm_80", "-o",
                        binary, "--max-seq-len", str(MAX_SEQ_LEN)], check=True, timeout=600)
    c = Checks()
    s = Server(binary, "--max-batch", "8")
    try:
        check_gpu_batch_invariance(c, s)
    finally:
        rc, err = s.stop(timeout=120)
        c.check("server exits 0 on SIGTERM", rc == 0, f"rc {rc}: {err}")
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed or not c.passed else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compiler", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--binary", help="an already compiled tiny model (skips compiling)")
    ap.add_argument("--gpu", action="store_true",
                    help="nvptx in the PTX interpreter: the batch-invariance check only")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    if args.gpu:
        sys.exit(main_gpu(args))
    binary = args.binary
    if not binary:
        binary = os.path.join(args.workdir, "tiny")
        subprocess.run([args.compiler, "--tiny", "-o", binary, "--max-seq-len", str(MAX_SEQ_LEN)],
                       check=True, timeout=600)
    c = Checks()
    s = Server(binary, "--max-batch", "16", "--max-body-bytes", "65536")
    try:
        check_basics(c, s, binary)
        check_prefix_cache(c, s)
        check_batch_invariance(c, s)
        check_errors(c, s, binary)
        check_disconnect(c, s)
        check_nonstream_disconnect(c, s)
    finally:
        rc, err = s.stop()
        c.check("server exits 0 on SIGTERM", rc == 0, f"rc {rc}: {err}")
    check_sigterm(c, binary)
    print(f"{c.passed} passed, {c.failed} failed")
    sys.exit(1 if c.failed or not c.passed else 0)


if __name__ == "__main__":
    main()
