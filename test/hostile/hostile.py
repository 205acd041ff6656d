#!/usr/bin/env python3
"""Every hostile input of issue 9, run against a build: one table row per case.

Each case builds its input in a scratch folder (a copy of the built-in tiny model, edited:
NaN weights, extra tensors, FIFOs, symlinks, device nodes, huge configs, ...), runs one tool
(`mixtral-compile` or the compiled binary) with a time limit, and records the exit status, the
first line of stderr and a post-condition (a device node still a device node, a user's file
untouched, no temporary left behind). Device nodes are made in the scratch folder with mknod
(char 1,3 is /dev/null, 1,7 is /dev/full), so the real /dev is never at risk.

  hostile.py --build build [--work DIR] [--json OUT.json] [--markdown] [--check] [-k SUBSTR]

--check exits 1 unless every case meets its expectation: `fail` cases exit 1 or 2 (not a signal,
not a time-out) with exactly one stderr line starting with "error:" containing the expected
words; `ok` cases exit 0; every post-condition holds. Used by ctest as `hostile-inputs`.
Needs root (mknod) and numpy.
"""

import argparse
import json
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

TIMEOUT = 60


# --- checkpoint editing ----------------------------------------------------------------------
def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    return header, data


def write_st(path, header, data):
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        f.write(data)


def poke(model, tensor, flat_indices, value):
    """Sets elements of a bf16/f32 tensor of model/model.safetensors to a float value."""
    path = os.path.join(model, "model.safetensors")
    header, data = read_st(path)
    info = header[tensor]
    data = bytearray(data)
    begin = info["data_offsets"][0]
    for i in flat_indices:
        if info["dtype"] == "BF16":
            bits = np.array([value], dtype=np.float32).view(np.uint32)[0] >> 16
            struct.pack_into("<H", data, begin + 2 * i, int(bits))
        else:
            struct.pack_into("<f", data, begin + 4 * i, value)
    write_st(path, header, bytes(data))


def add_tensor(model, name, like):
    """Appends a tensor `name` with the shape, dtype and bytes of tensor `like`."""
    path = os.path.join(model, "model.safetensors")
    header, data = read_st(path)
    src = header[like]
    b, e = src["data_offsets"]
    header[name] = {"dtype": src["dtype"], "shape": src["shape"],
                    "data_offsets": [len(data), len(data) + e - b]}
    write_st(path, header, data + data[b:e])


def edit_config(model, **fields):
    path = os.path.join(model, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg.update(fields)
    with open(path, "w") as f:
        json.dump(cfg, f, indent=2)


def config_text(model, text):
    with open(os.path.join(model, "config.json"), "w") as f:
        f.write(text)


# --- running ---------------------------------------------------------------------------------
class Result:
    def __init__(self, rc, stderr, secs, maxrss_mb, stdout=b""):
        self.rc, self.stderr, self.secs, self.maxrss_mb, self.stdout = rc, stderr, secs, maxrss_mb, stdout

    def status(self):
        if self.rc is None:
            return "hang (killed after %d s)" % TIMEOUT
        if self.rc < 0:
            return "signal %s" % signal.Signals(-self.rc).name
        return str(self.rc)

    def first_line(self):
        lines = [l for l in self.stderr.decode("utf-8", "replace").splitlines() if l.strip()]
        errs = [l for l in lines if "error" in l.lower() or "Assertion" in l or "Stack dump" in l]
        line = (errs or lines or ["(no message)"])[0].strip()
        return line if len(line) <= 160 else line[:157] + "..."

    def error_lines(self):
        """Lines `error: ...` (the binary) or `mixtral-compile: error: ...` (the compiler)."""
        return [l for l in self.stderr.decode("utf-8", "replace").splitlines()
                if re.match(r"^([\w.-]+: )?error: ", l)]


def run(argv, cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, preexec=None,
        interrupt=None, env=None):
    """Runs argv to completion (killed after TIMEOUT); the peak RSS is this child's own."""
    t0 = time.time()
    p = subprocess.Popen(argv, cwd=cwd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE,
                         preexec_fn=preexec, env=env)
    chunks = {"out": [], "err": []}

    def drain(f, key):
        for block in iter(lambda: f.read(65536), b""):
            chunks[key].append(block)
    readers = [threading.Thread(target=drain, args=(p.stderr, "err"))]
    if p.stdout is not None:
        readers.append(threading.Thread(target=drain, args=(p.stdout, "out")))
    for r in readers:
        r.start()
    killed = threading.Event()

    def kill():
        killed.set()
        p.kill()
    timer = threading.Timer(TIMEOUT, kill)
    timer.start()
    if interrupt is not None:                    # (signal, seconds after start)
        time.sleep(interrupt[1])
        p.send_signal(interrupt[0])
    _, status, usage = os.wait4(p.pid, 0)        # wait4: the rusage of this child alone
    p.returncode = os.waitstatus_to_exitcode(status)
    timer.cancel()
    for r in readers:
        r.join()
    rc = None if killed.is_set() else p.returncode
    return Result(rc, b"".join(chunks["err"]), time.time() - t0, usage.ru_maxrss / 1024.0,
                  b"".join(chunks["out"]))


# --- the cases -------------------------------------------------------------------------------
class Env:
    def __init__(self, build, work):
        self.build, self.work = os.path.abspath(build), work
        self.compiler = os.path.join(self.build, "bin", "mixtral-compile")
        self.base = os.path.join(work, "base")            # base binary; base.model/ its checkpoint
        self.n = 0

    def fresh(self, name):
        """A scratch folder with a copy of the tiny model in model/."""
        d = os.path.join(self.work, "case-%02d-%s" % (self.n, name))
        self.n += 1
        os.makedirs(d)
        shutil.copytree(self.base + ".model", os.path.join(d, "model"))
        return d

    def binary(self, *args):
        return [self.base] + list(args)

    def packed(self, d):
        """The tiny model compiled once with --pack (base-packed + base-packed.weights), its
        binary and weights file copied into `d` as packed, packed.weights (the manifest names
        base-packed.weights, so --weights is passed)."""
        stem = os.path.join(self.work, "base-packed")
        if not os.path.exists(stem + ".weights"):
            r = run(self.compile(self.base + ".model", "-o", stem, "--pack"), self.work)
            if r.rc != 0:
                sys.exit("hostile: cannot compile the tiny model with --pack: " + r.first_line())
        shutil.copy(stem, d + "/packed")
        shutil.copy(stem + ".weights", d + "/packed.weights")
        return ["./packed", "--weights", "packed.weights"]

    def compile(self, *args):
        return [self.compiler] + list(args)

    def fp8(self, d):
        """An FP8 copy of the tiny model (compressed-tensors, per channel) in d/fp8/."""
        cache = os.path.join(self.work, "base-fp8")
        if not os.path.exists(cache):
            ref = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference")
            r = run([sys.executable, os.path.join(ref, "make_fp8_checkpoint.py"),
                     self.base + ".model", cache, "--rest-dtype", "bf16"], self.work)
            if r.rc != 0:
                sys.exit("hostile: cannot make the FP8 model: " + r.first_line())
        shutil.copytree(cache, d + "/fp8")
        return d + "/fp8"


GEN = ["--prompt-ids", "1,415,2936", "-n", "4", "--temperature", "0", "--print-ids"]


def char_dev(path, minor):
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, minor))


def is_char_dev(path):
    return os.path.lexists(path) and stat.S_ISCHR(os.lstat(path).st_mode)


def leftovers(d, stem):
    return sorted(f for f in os.listdir(d) if f.startswith(stem) and f != stem and
                  f != stem + ".model" and f != stem + ".tmp")


CASES = []


def case(section, name, tool, expect, words=(), not_words=()):
    def deco(fn):
        CASES.append(dict(section=section, name=name, tool=tool, expect=expect,
                          words=tuple(words), not_words=tuple(not_words), fn=fn))
        return fn
    return deco


# 1. Non-finite numbers
@case("1", "NaN in one embed_tokens row", "binary", "fail", ["NaN", "embed_tokens"])
def _(e):
    d = e.fresh("nan-embed")
    poke(d + "/model", "model.embed_tokens.weight", [415 * 256 + 7], float("nan"))
    return run(e.binary("--model", "model", *GEN), d), None


@case("1", "+Inf in one q_proj entry", "binary", "fail", ["inf", "q_proj"])
def _(e):
    d = e.fresh("inf-qproj")
    poke(d + "/model", "model.layers.0.self_attn.q_proj.weight", [3], float("inf"))
    return run(e.binary("--model", "model", *GEN), d), None


@case("1", "NaN in a norm weight", "binary", "fail", ["NaN", "input_layernorm"])
def _(e):
    d = e.fresh("nan-norm")
    poke(d + "/model", "model.layers.1.input_layernorm.weight", [0], float("nan"))
    return run(e.binary("--model", "model", *GEN), d), None


@case("1", "router row of -inf (expert 0)", "binary", "fail", ["inf", "gate"])
def _(e):
    d = e.fresh("router-ninf")
    poke(d + "/model", "model.layers.0.block_sparse_moe.gate.weight", range(256), float("-inf"))
    return run(e.binary("--model", "model", *GEN), d), None


@case("1", "rope_theta 1e-300 (RoPE angles overflow)", "compile+binary", "fail", ["not finite"])
def _(e):
    d = e.fresh("rope-extreme")
    edit_config(d + "/model", rope_theta=1e-300)
    r = run(e.compile("model", "-o", "out"), d)
    if r.rc != 0:
        return r, None
    return run(["./out", "--model", "model"] + GEN, d), None


@case("1", "-n 0 --logits-out with a NaN weight", "binary", "fail", ["NaN"])
def _(e):
    d = e.fresh("nan-logits-out")
    poke(d + "/model", "model.embed_tokens.weight", [415 * 256], float("nan"))
    r = run(e.binary("--model", "model", "--prompt-ids", "1,415", "-n", "0", "--logits-out",
                     "l.f32"), d)
    return r, ("no logits file written", not os.path.exists(d + "/l.f32"))


# 2. Outputs
@case("2", "--logits-out onto a /dev/null node", "binary", "ok")
def _(e):
    d = e.fresh("logits-null")
    char_dev(d + "/null", 3)
    r = run(e.binary("--model", "model", "--prompt-ids", "1,415", "-n", "0", "--logits-out",
                     "null"), d)
    return r, ("still a device node", is_char_dev(d + "/null"))


@case("2", "--logits-out onto a /dev/full node", "binary", "fail", ["full"])
def _(e):
    d = e.fresh("logits-full")
    char_dev(d + "/full", 7)
    r = run(e.binary("--model", "model", "--prompt-ids", "1,415", "-n", "0", "--logits-out",
                     "full"), d)
    return r, ("still a device node", is_char_dev(d + "/full"))


@case("2", "--logits-out /dev/stdout (a symlink to fd 1)", "binary", "ok")
def _(e):
    d = e.fresh("logits-stdout")
    os.symlink("/proc/self/fd/1", d + "/stdout")
    r = run(e.binary("--model", "model", "--prompt-ids", "1,415", "-n", "0", "--logits-out",
                     "stdout"), d)
    return r, ("symlink kept, 128000 bytes on stdout",
               os.path.islink(d + "/stdout") and len(r.stdout) == 128000)


@case("2", "--logits-out X keeps the user's X.tmp", "binary", "ok")
def _(e):
    d = e.fresh("logits-usertmp")
    with open(d + "/l.f32.tmp", "w") as f:
        f.write("mine")
    r = run(e.binary("--model", "model", "--prompt-ids", "1,415", "-n", "0", "--logits-out",
                     "l.f32"), d)
    kept = os.path.exists(d + "/l.f32.tmp") and open(d + "/l.f32.tmp").read() == "mine"
    written = os.path.exists(d + "/l.f32") and os.path.getsize(d + "/l.f32") == 128000
    return r, ("X.tmp untouched, X written", kept and written)


@case("2", "--logits-out into a missing folder names X", "binary", "fail", ["nodir/l.f32"])
def _(e):
    d = e.fresh("logits-nodir")
    r = run(e.binary("--model", "model", "--prompt-ids", "1,415", "-n", "0", "--logits-out",
                     "nodir/l.f32"), d)
    return r, ("message does not name a temporary", b".tmp" not in r.stderr)


@case("2", "mixtral-compile -o onto a /dev/null node", "compile", "ok")
def _(e):
    d = e.fresh("compile-null")
    char_dev(d + "/null", 3)
    r = run(e.compile("model", "--emit=obj", "-o", "null"), d)
    return r, ("still a device node", is_char_dev(d + "/null"))


@case("2", "mixtral-compile -o - (a binary)", "compile", "fail", ["-o -"])
def _(e):
    d = e.fresh("compile-dash-exe")
    r = run(e.compile("model", "-o", "-"), d)
    return r, ("no file named '-'", not os.path.exists(d + "/-"))


@case("2", "mixtral-compile --emit=obj -o -", "compile", "fail", ["-o -"])
def _(e):
    d = e.fresh("compile-dash-obj")
    r = run(e.compile("model", "--emit=obj", "-o", "-"), d)
    return r, ("no file named '-'", not os.path.exists(d + "/-"))


@case("2", "--tiny -o OUT with OUT.model a symlink to a real checkpoint", "compile", "fail",
      ["OUT.model"])
def _(e):
    d = e.fresh("tiny-symlink")
    os.symlink("model", d + "/OUT.model")
    before = open(d + "/model/model.safetensors", "rb").read()
    r = run(e.compile("--tiny", "-o", "OUT"), d)
    after = open(d + "/model/model.safetensors", "rb").read()
    return r, ("the real checkpoint untouched", before == after)


@case("2", "mixtral-compile killed (SIGTERM) while compiling", "compile", "SIGTERM")
def _(e):
    d = e.fresh("compile-sigterm")
    r = run(e.compile("model", "-o", "OUT"), d, interrupt=(signal.SIGTERM, 2.0))
    time.sleep(0.5)
    left = [f for f in os.listdir(d) if f != "model"]
    return r, ("no temporaries left (%s)" % (", ".join(left) or "none"), not left)


@case("2", "generation with stdout on /dev/full", "binary", "fail", ["standard output"])
def _(e):
    d = e.fresh("stdout-full")
    char_dev(d + "/full", 7)
    with open(d + "/full", "wb") as out:
        r = run(e.binary("--model", "model", *GEN), d, stdout=out)
    return r, None


@case("2", "generation into a closed pipe, SIGPIPE ignored", "binary", "fail",
      ["standard output"])
def _(e):
    d = e.fresh("stdout-epipe")
    rfd, wfd = os.pipe()
    os.close(rfd)

    def ignore():
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    r = run(e.binary("--model", "model", *GEN), d, stdout=wfd, preexec=ignore)
    os.close(wfd)
    return r, None


# 3. The model that runs is the model the checkpoint describes
@case("3", "checkpoint with more layers than num_hidden_layers", "compile", "fail",
      ["model.layers.2"])
def _(e):
    d = e.fresh("extra-layer")
    add_tensor(d + "/model", "model.layers.2.input_layernorm.weight",
               "model.layers.1.input_layernorm.weight")
    return run(e.compile("model", "--emit=mlir", "-o", "out.mlir"), d), None


@case("3", "an unused bias tensor", "compile", "fail", ["q_proj.bias"])
def _(e):
    d = e.fresh("bias")
    add_tensor(d + "/model", "model.layers.0.self_attn.q_proj.bias",
               "model.layers.0.input_layernorm.weight")
    return run(e.compile("model", "--emit=mlir", "-o", "out.mlir"), d), None


@case("3", "a junk tensor name", "compile", "fail", ["junk"])
def _(e):
    d = e.fresh("junk")
    add_tensor(d + "/model", "junk", "model.norm.weight")
    return run(e.compile("model", "--emit=mlir", "-o", "out.mlir"), d), None


@case("3", "hidden_act gelu", "compile", "fail", ["hidden_act"])
def _(e):
    d = e.fresh("gelu")
    edit_config(d + "/model", hidden_act="gelu")
    return run(e.compile("model", "--emit=mlir", "-o", "out.mlir"), d), None


@case("3", "tie_word_embeddings true with a different lm_head present", "compile", "fail",
      ["tie_word_embeddings"])
def _(e):
    d = e.fresh("tie-lmhead")
    edit_config(d + "/model", tie_word_embeddings=True)
    return run(e.compile("model", "--emit=mlir", "-o", "out.mlir"), d), None


@case("3", "config.json rope_theta edited after compiling", "binary", "fail", ["rope_theta"])
def _(e):
    d = e.fresh("edited-theta")
    edit_config(d + "/model", rope_theta=10000.0)
    return run(e.binary("--model", "model", *GEN), d), None


@case("3", "config.json rms_norm_eps edited after compiling", "binary", "fail", ["rms_norm_eps"])
def _(e):
    d = e.fresh("edited-eps")
    edit_config(d + "/model", rms_norm_eps=1e-6)
    return run(e.binary("--model", "model", *GEN), d), None


@case("3", "a 300-piece tokenizer with the 32000-token model", "binary", "fail",
      ["tokenizer", "300", "32000"])
def _(e):
    d = e.fresh("small-tokenizer")
    import sentencepiece as spm
    corpus = d + "/corpus.txt"
    with open(corpus, "w") as f:
        for i in range(400):
            f.write("the quick brown fox %d jumps over the lazy dog\n" % i)
    spm.SentencePieceTrainer.train(input=corpus, model_prefix=d + "/sp", vocab_size=300,
                                   model_type="bpe", byte_fallback=True,
                                   minloglevel=2)
    shutil.copy(d + "/sp.model", d + "/model/tokenizer.model")
    return run(e.binary("--model", "model", "--prompt", "the fox", "-n", "8",
                        "--temperature", "0"), d), None


# 5. Bounded work
@case("5", "config.json nested 50,000 levels", "compile", "fail", ["config.json"])
def _(e):
    d = e.fresh("deep-json")
    config_text(d + "/model", "[" * 50000 + "]" * 50000)
    return run(e.compile("model", "--emit=mlir", "-o", "out.mlir"), d), None


@case("5", "config.json is a FIFO", "compile", "fail", ["config.json"])
def _(e):
    d = e.fresh("fifo-config")
    os.remove(d + "/model/config.json")
    os.mkfifo(d + "/model/config.json")
    return run(e.compile("model", "--emit=mlir", "-o", "out.mlir"), d), None


@case("5", "model.safetensors is a FIFO", "binary", "fail", ["model.safetensors"])
def _(e):
    d = e.fresh("fifo-st")
    os.remove(d + "/model/model.safetensors")
    os.mkfifo(d + "/model/model.safetensors")
    return run(e.binary("--model", "model", *GEN), d), None


@case("5", "model.safetensors is a symlink to /dev/zero", "compile", "fail",
      ["model.safetensors"])
def _(e):
    d = e.fresh("devzero")
    os.remove(d + "/model/model.safetensors")
    os.symlink("/dev/zero", d + "/model/model.safetensors")
    return run(e.compile("model", "--emit=mlir", "-o", "out.mlir"), d), None


@case("5", "--model is a FIFO", "binary", "fail", ["fifo"])
def _(e):
    d = e.fresh("fifo-model")
    os.mkfifo(d + "/pipe")
    return run(e.binary("--model", "pipe", *GEN), d), None


@case("5", "a 54 MB safetensors header (700,000 empty tensors)", "compile", "fail", ["not read"])
def _(e):
    d = e.fresh("huge-header")
    path = d + "/model/model.safetensors"
    header, data = read_st(path)
    end = len(data)
    for i in range(700000):
        header["junk.%d" % i] = {"dtype": "F32", "shape": [0], "data_offsets": [end, end]}
    write_st(path, header, data)
    r = run(e.compile("model", "--emit=mlir", "-o", "out.mlir"), d)
    return r, ("compiler peak RSS %.0f MB (< 1000)" % r.maxrss_mb, r.maxrss_mb < 1000)


@case("5", "num_hidden_layers 2^24", "compile", "fail", ["num_hidden_layers"])
def _(e):
    d = e.fresh("layers-2e24")
    edit_config(d + "/model", num_hidden_layers=1 << 24)
    return run(e.compile("model", "--inspect"), d), None


@case("5", "hidden = intermediate = 2^24, 1024 experts", "compile", "fail", [])
def _(e):
    d = e.fresh("huge-sizes")
    edit_config(d + "/model", hidden_size=1 << 24, intermediate_size=1 << 24,
                num_local_experts=1024, head_dim=1 << 21, num_attention_heads=8)
    return run(e.compile("model", "--inspect"), d), None


@case("5", "rope_theta 1e400", "compile", "fail", ["1e400"])
def _(e):
    d = e.fresh("theta-1e400")
    with open(d + "/model/config.json") as f:
        text = f.read()
    config_text(d + "/model", text.replace('"rope_theta": 1000000', '"rope_theta": 1e400'))
    return run(e.compile("model", "--emit=mlir", "-o", "out.mlir"), d), None


@case("5", "head_dim 2^61", "compile", "fail", ["head dimension", "2305843009213693952"])
def _(e):
    d = e.fresh("headdim-2e61")
    edit_config(d + "/model", head_dim=1 << 61)
    return run(e.compile("model", "--inspect"), d), None


@case("5", "--max-seq-len 2^32", "compile", "fail", ["max-seq-len"])
def _(e):
    d = e.fresh("maxseq-2e32")
    return run(e.compile("model", "--max-seq-len", str(1 << 32), "-o", "out"), d), None


@case("5", "a model folder whose path is not UTF-8", "compile", "fail", ["UTF-8"])
def _(e):
    d = e.fresh("non-utf8")
    os.rename((d + "/model").encode(), (d + "/m\xff").encode("latin-1"))
    return run([e.compiler.encode(), b"m\xff", b"-o", b"out"], d), None


@case("5", "--threads 4096", "binary", "fail", ["--threads"])
def _(e):
    d = e.fresh("threads")
    return run(e.binary("--model", "model", "--threads", "4096", *GEN), d), None


# 6. What a user types
@case("6", "--target nvptx --gpu sm_75", "compile", "fail", ["sm_75"])
def _(e):
    d = e.fresh("gpu-sm75")
    return run(e.compile("model", "--target", "nvptx", "--gpu", "sm_75", "--emit=ptx",
                         "-o", "out.ptx"), d), None


@case("6", "--cpu foo", "compile", "fail", ["foo"])
def _(e):
    d = e.fresh("cpu-foo")
    return run(e.compile("model", "--cpu", "foo", "--emit=obj", "-o", "out.o"), d), None


@case("6", "--gpu sm_90 without --target nvptx", "compile", "fail", ["--gpu"])
def _(e):
    d = e.fresh("gpu-no-target")
    return run(e.compile("model", "--gpu", "sm_90", "--emit=mlir", "-o", "out.mlir"), d), None


@case("6", "--max-seq-len 0", "compile", "fail", ["max-seq-len"])
def _(e):
    d = e.fresh("maxseq-0")
    return run(e.compile("model", "--max-seq-len", "0", "-o", "out"), d), None


@case("6", "--chat-template without a prompt", "binary", "fail", ["--chat-template"])
def _(e):
    d = e.fresh("template-no-prompt")
    return run(e.binary("--model", "model", "--chat-template", "-n", "2"), d), None


@case("6", "--model of a missing folder", "binary", "fail", ["nowhere", "does not exist"],
      not_words=["tokenizer"])
def _(e):
    d = e.fresh("missing-model")
    return run(e.binary("--model", "nowhere", "--prompt", "hi", "-n", "2"), d), None


@case("6", "rms_norm_eps -1e-5", "compile", "fail", ["-1e-05"])
def _(e):
    d = e.fresh("negative-eps")
    edit_config(d + "/model", rms_norm_eps=-1e-5)
    return run(e.compile("model", "--emit=mlir", "-o", "out.mlir"), d), None


@case("6", "model.safetensors a dangling symlink", "binary", "fail", ["dangling"])
def _(e):
    d = e.fresh("dangling")
    os.remove(d + "/model/model.safetensors")
    os.symlink("gone.safetensors", d + "/model/model.safetensors")
    return run(e.binary("--model", "model", *GEN), d), None


@case("6", "--model ''", "binary", "fail", ["empty"])
def _(e):
    d = e.fresh("empty-model")
    return run(e.binary("--model", "", *GEN), d), None


@case("6", "Ctrl-C during generation", "binary", "130", ["decode"])
def _(e):
    d = e.fresh("ctrl-c")
    r = run(e.binary("--model", "model", "--prompt-ids", "1", "-n", "100000", "--temperature",
                     "0", "--print-ids"), d, interrupt=(signal.SIGINT, 3.0))
    return r, None


# 7. Packed weights files (--pack, --quantize)
@case("7", "NaN weight found while packing", "compile", "fail", ["NaN", "w2", "element"])
def _(e):
    d = e.fresh("pack-nan")
    poke(d + "/model", "model.layers.1.block_sparse_moe.experts.3.w2.weight", [517], float("nan"))
    r = run(e.compile("model", "-o", "out", "--pack"), d)
    left = [f for f in os.listdir(d) if f.startswith("out")]
    return r, ("no OUT, OUT.weights or temporary left", left == [])


@case("7", "packed file of another compile (fingerprint)", "binary", "fail",
      ["fingerprint", "another compile"])
def _(e):
    d = e.fresh("pack-fingerprint")
    b = e.packed(d)
    with open(d + "/packed.weights", "r+b") as f:
        f.seek(32)
        f.write(b"0123456789abcdef0123456789abcdef")
    return run(b + GEN, d), None


@case("7", "packed file of the previous layout (version 3: q8 experts row-major)", "binary",
      "fail", ["weights file version 3", "reads version 4"])
def _(e):
    d = e.fresh("pack-version")
    b = e.packed(d)
    with open(d + "/packed.weights", "r+b") as f:
        f.seek(8)  # uint32 version, little-endian (weights_file.h)
        f.write((3).to_bytes(4, "little"))
    return run(b + GEN, d), None


@case("7", "packed file truncated", "binary", "fail", ["truncated"])
def _(e):
    d = e.fresh("pack-truncated")
    b = e.packed(d)
    os.truncate(d + "/packed.weights", os.path.getsize(d + "/packed.weights") - 4096)
    return run(b + GEN, d), None


@case("7", "packed file replaced by a checkpoint", "binary", "fail", ["not a moec weights file"])
def _(e):
    d = e.fresh("pack-magic")
    b = e.packed(d)
    shutil.copy(d + "/model/model.safetensors", d + "/packed.weights")
    return run(b + GEN, d), None


@case("7", "packed file missing", "binary", "fail", ["base-packed.weights", "does not exist"])
def _(e):
    d = e.fresh("pack-missing")
    b = e.packed(d)
    return run(b[:1] + GEN, d), None  # looks for the manifest's name beside the binary


@case("7", "--weights a FIFO", "binary", "fail", ["FIFO"])
def _(e):
    d = e.fresh("pack-fifo")
    b = e.packed(d)
    os.mkfifo(d + "/fifo")
    return run(b[:1] + ["--weights", "fifo"] + GEN, d), None


@case("7", "OUT.weights a directory", "compile", "fail", ["out.weights", "directory"])
def _(e):
    d = e.fresh("pack-outdir")
    os.mkdir(d + "/out.weights")
    r = run(e.compile("model", "-o", "out", "--pack"), d)
    return r, ("the directory untouched, no OUT", os.path.isdir(d + "/out.weights") and
               not os.path.exists(d + "/out"))


@case("7", "--pack -o a /dev/null node", "compile", "fail", ["--pack"])
def _(e):
    d = e.fresh("pack-devnull")
    char_dev(d + "/null", 3)
    r = run(e.compile("model", "-o", "null", "--pack"), d)
    return r, ("still a device, no null.weights", is_char_dev(d + "/null") and
               not os.path.exists(d + "/null.weights"))


@case("7", "--quantize q4 --int8-activations --target nvptx", "compile", "fail",
      ["--int8-activations", "cpu"])
def _(e):
    d = e.fresh("int8-nvptx")
    return run(e.compile("model", "-o", "out", "--quantize", "q4", "--int8-activations",
                         "--target", "nvptx"), d), None


@case("7", "a packed binary with its checkpoint deleted", "binary", "ok")
def _(e):
    d = e.fresh("pack-no-checkpoint")
    b = e.packed(d)
    shutil.rmtree(d + "/model")
    return run(b + GEN, d), None


@case("7", "FP8 weight byte 0x7f (NaN) found while packing", "compile", "fail",
      ["NaN", "q_proj", "element"])
def _(e):
    d = e.fresh("fp8-nan")
    path = e.fp8(d) + "/model.safetensors"
    header, data = read_st(path)
    begin = header["model.layers.1.self_attn.q_proj.weight"]["data_offsets"][0]
    data = bytearray(data)
    data[begin + 300] = 0x7F
    write_st(path, header, bytes(data))
    r = run(e.compile("fp8", "-o", "out"), d)
    return r, ("nothing left behind", [f for f in os.listdir(d) if f.startswith("out")] == [])


@case("7", "FP8 weight_scale of block shape [2, 2]", "compile", "fail",
      ["weight_scale", "block-wise scales are not supported"])
def _(e):
    d = e.fresh("fp8-block-scale")
    path = e.fp8(d) + "/model.safetensors"
    header, data = read_st(path)
    name = "model.layers.0.block_sparse_moe.experts.2.w3.weight_scale"
    b = header[name]["data_offsets"][0]
    header[name] = {"dtype": "F32", "shape": [2, 2], "data_offsets": [b, b + 16]}
    write_st(path, header, data)
    return run(e.compile("fp8", "-o", "out"), d), None


@case("7", "FP8 weight_scale of +inf", "compile", "fail", ["weight_scale", "inf", "finite"])
def _(e):
    d = e.fresh("fp8-inf-scale")
    path = e.fp8(d) + "/model.safetensors"
    header, data = read_st(path)
    b = header["model.layers.0.self_attn.o_proj.weight_scale"]["data_offsets"][0]
    data = bytearray(data)
    struct.pack_into("<f", data, b + 8, float("inf"))
    write_st(path, header, bytes(data))
    return run(e.compile("fp8", "-o", "out"), d), None


@case("7", "block-wise FP8 config (weight_block_size)", "compile", "fail",
      ["weight_block_size", "not supported"])
def _(e):
    d = e.fresh("fp8-block-config")
    m = e.fp8(d)
    edit_config(m, quantization_config={"quant_method": "fp8", "weight_block_size": [128, 128]})
    return run(e.compile("fp8", "-o", "out"), d), None


@case("7", "quant_method gptq", "compile", "fail", ["gptq", "not supported"])
def _(e):
    d = e.fresh("gptq")
    edit_config(d + "/model", quantization_config={"quant_method": "gptq", "bits": 4})
    return run(e.compile("model", "-o", "out"), d), None


@case("7", "--quantize q8 on an FP8 checkpoint", "compile", "fail", ["FP8", "drop --quantize"])
def _(e):
    d = e.fresh("fp8-requantize")
    e.fp8(d)
    return run(e.compile("fp8", "-o", "out", "--quantize", "q8"), d), None


# --- driver ----------------------------------------------------------------------------------
def meets(c, r, post):
    problems = []
    if c["expect"] == "SIGTERM":       # cleaned up, then ended by the signal's default action
        if r.rc != -signal.SIGTERM:
            problems.append("expected to end by SIGTERM")
    elif r.rc is None or r.rc < 0:
        problems.append("crash or hang")
    elif c["expect"] == "ok" and r.rc != 0:
        problems.append("expected exit 0")
    elif c["expect"] == "130":
        if r.rc != 130:
            problems.append("expected exit 130")
        elif not any(w in r.stderr.decode("utf-8", "replace") for w in c["words"]):
            problems.append("no timing line")
    elif c["expect"] == "fail":
        if r.rc not in (1, 2):
            problems.append("expected exit 1 or 2")
        errs = r.error_lines()
        if len(errs) != 1:
            problems.append("%d 'error:' lines" % len(errs))
        elif not all(w.lower() in errs[0].lower() for w in c["words"]):
            problems.append("message lacks %s" % "/".join(c["words"]))
        elif any(w.lower() in errs[0].lower() for w in c["not_words"]):
            problems.append("message names %s" % "/".join(c["not_words"]))
    if post is not None and not post[1]:
        problems.append("post-condition failed: " + post[0])
    return problems


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--work")
    ap.add_argument("--json")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("-k", default="")
    args = ap.parse_args()
    work = args.work or tempfile.mkdtemp(prefix="moec-hostile-")
    if os.path.exists(work):
        shutil.rmtree(work)
    os.makedirs(work)
    e = Env(args.build, work)
    r = run(e.compile("--tiny", "-o", "base"), work)
    if r.rc != 0:
        sys.exit("hostile: cannot compile the tiny model: " + r.first_line())
    rows, failed = [], 0
    for c in CASES:
        if args.k and args.k not in c["name"]:
            continue
        res, post = c["fn"](e)
        problems = meets(c, res, post)
        failed += bool(problems)
        row = dict(section=c["section"], case=c["name"], tool=c["tool"], exit=res.status(),
                   message=res.first_line(), post=(post[0] + (": ok" if post[1] else ": FAILED"))
                   if post else "", problems=problems)
        rows.append(row)
        if args.markdown:
            print("| %s | %s | %s | %s | `%s` | %s |" % (
                row["section"], row["case"], row["tool"], row["exit"],
                row["message"].replace("|", "\\|").replace("`", "'"),
                "; ".join(problems) or "ok"), flush=True)
        else:
            print("%-4s %-58s %-6s %s\n      %s%s" % (
                "FAIL" if problems else "ok", row["case"], row["exit"], row["message"],
                row["post"] + " " if row["post"] else "",
                "; ".join(problems)), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    print("%d passed, %d failed" % (len(rows) - failed, failed))
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if (args.check and failed) else 0)


if __name__ == "__main__":
    main()
