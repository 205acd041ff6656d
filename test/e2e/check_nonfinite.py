#!/usr/bin/env python3
"""End to end: non-finite numbers never crash a compiled model; they are reported.

Compiles one small random checkpoint (test/reference/make_checkpoint.py), then runs the
binary on copies of it with one tensor edited in place (`--model COPY`):

  * a NaN or infinity in a weight (an embedding row, a q_proj entry, a norm weight, a router
    row of -inf, an expert, lm_head) is refused at load, naming the file, the tensor and the
    first bad element, exit 1;
  * huge but finite weights (activations overflow to inf/NaN: NaN router logits, NaN
    attention) end the run at the first non-finite logits with one line, exit 1, and
    `-n 0 --logits-out F` writes no F;
  * an extreme rope_theta (compiled in: 1e-300 is 0 in f32) does the same.

Never a signal (SIGSEGV, SIGABRT): every case checks the exit code and the whole stderr
line. Extra compiler flags (--compile-arg=--target=nvptx ...) run the same cases on the
GPU target (with MOEC_CUDA_DRIVER pointing at test/gpu-emu's interpreter).

Usage: check_nonfinite.py --compiler build/bin/mixtral-compile --workdir DIR
       [--compile-arg=ARG ...]
Prints one line per case and `N passed, M failed`; exit 1 on any failure.
"""

import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
MAKE_CHECKPOINT = os.path.join(os.path.dirname(HERE), "reference", "make_checkpoint.py")
BASE_ARGS = ["--vocab", "64", "--hidden", "32", "--intermediate", "48", "--layers", "2",
             "--heads", "4", "--kv-heads", "2", "--experts", "4", "--top-k", "2",
             "--max-pos", "64"]
PROMPT = "1,5,9"
NAN, INF = float("nan"), float("inf")
HUGE = 3.0e38
OVERFLOW_TAIL = (": the model's activations overflow; check the weights and config.json")


def read_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n)), 8 + n


def set_elements(path, tensor, values):
    """values: {flat index: float} written into f32 tensor `tensor` of safetensors `path`."""
    header, base = read_header(path)
    t = header[tensor]
    assert t["dtype"] == "F32", t
    with open(path, "r+b") as f:
        for i, v in values.items():
            f.seek(base + t["data_offsets"][0] + 4 * i)
            f.write(struct.pack("<f", v))


def numel(path, tensor):
    header, _ = read_header(path)
    return math.prod(header[tensor]["shape"])


def run(exe, model, args, timeout=300):
    p = subprocess.run([exe, "--model", model] + args, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


class Checker:
    def __init__(self, workdir, exe, base):
        self.workdir, self.exe, self.base = workdir, exe, base
        self.passed = self.failed = 0

    def copy(self, name):
        d = os.path.join(self.workdir, name)
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(self.base, d)
        return d

    def report(self, name, problems):
        if problems:
            self.failed += 1
            print(f"FAIL {name}: " + "; ".join(problems))
        else:
            self.passed += 1
            print(f"ok   {name}")

    def expect(self, name, model, args, rc, err, exe=None):
        """Exit code `rc` and stderr exactly `err` (a line), never a signal."""
        got_rc, out, got_err = run(exe or self.exe, model, args)
        problems = []
        if got_rc < 0 or got_rc >= 128:
            problems.append(f"killed by a signal (exit {got_rc})")
        if got_rc != rc:
            problems.append(f"exit {got_rc}, expected {rc}")
        if got_err != err:
            problems.append(f"stderr {got_err!r}, expected {err!r}")
        return problems, out


def weight_cases(c):
    """NaN/inf weights: refused at load with the first bad element."""
    st = "model.safetensors"
    cases = [
        ("nan-embed-row", "model.embed_tokens.weight", {5 * 32 + i: NAN for i in range(32)},
         "element [5, 0] is NaN"),
        ("nan-q-proj", "model.layers.0.self_attn.q_proj.weight", {3 * 32 + 17: NAN},
         "element [3, 17] is NaN"),
        ("inf-norm", "model.layers.1.input_layernorm.weight", {7: INF}, "element [7] is +inf"),
        ("neg-inf-router-row", "model.layers.0.block_sparse_moe.gate.weight",
         {32 + i: -INF for i in range(32)}, "element [1, 0] is -inf"),
        ("nan-expert", "model.layers.1.block_sparse_moe.experts.3.w2.weight", {47: NAN},
         "element [0, 47] is NaN"),
        ("inf-lm-head", "lm_head.weight", {63 * 32 + 31: -INF}, "element [63, 31] is -inf"),
    ]
    for name, tensor, values, what in cases:
        d = c.copy(name)
        path = os.path.join(d, st)
        set_elements(path, tensor, values)
        problems, _ = c.expect(name, d, ["--prompt-ids", PROMPT, "-n", "2", "--temp", "0",
                                         "--print-ids", "-q"], 1,
                               f"error: {path}: {tensor}: {what} (weights must be finite)\n")
        c.report(name, problems)


def overflow_cases(c):
    """Finite weights whose activations overflow: -n 0 --logits-out ends with one line at
    the first non-finite logits (all NaN here, so token 0 is named) and writes no file."""
    cases = [
        # x·gate overflows for every expert: all router logits NaN/inf (ids must stay valid).
        ("huge-router", "model.layers.0.block_sparse_moe.gate.weight", 4 * 32),
        # q·k overflows: NaN attention.
        ("huge-q-proj", "model.layers.0.self_attn.q_proj.weight", 32 * 32),
        # A huge norm weight: the experts' inputs overflow.
        ("huge-norm", "model.layers.0.post_attention_layernorm.weight", 32),
    ]
    for name, tensor, n in cases:
        d = c.copy(name)
        set_elements(os.path.join(d, "model.safetensors"), tensor, {i: HUGE for i in range(n)})
        expect_no_logits(c, name, d)


def expect_no_logits(c, name, model, exe=None):
    logits = os.path.join(c.workdir, name + ".logits")
    if os.path.exists(logits):
        os.remove(logits)
    problems, _ = c.expect(name, model, ["--prompt-ids", PROMPT, "-n", "0", "--logits-out",
                                         logits, "-q"], 1,
                           "error: the logits at position 2 are not finite (token 0 is NaN)"
                           + OVERFLOW_TAIL + "\n", exe)
    if os.path.exists(logits):
        problems.append("--logits-out wrote " + logits)
    c.report(name, problems)


def rope_theta_case(c, args):
    """rope_theta = 1e-300 is positive in config.json but 0 in f32: inv_freq = inf."""
    d = os.path.join(c.workdir, "tiny-rope-theta")
    shutil.rmtree(d, ignore_errors=True)
    subprocess.run([sys.executable, MAKE_CHECKPOINT, d] + BASE_ARGS + ["--rope-theta", "1e-300"],
                   check=True, stdout=subprocess.DEVNULL)
    exe = os.path.join(c.workdir, "rope-theta.exe")
    compile_model(args, d, exe)
    expect_no_logits(c, "tiny-rope-theta", d, exe)


def compile_model(args, model, exe):
    subprocess.run([args.compiler, model, "-o", exe, "--max-seq-len", "32"] + args.compile_arg,
                   check=True, timeout=600)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compiler", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--compile-arg", action="append", default=[],
                    help="extra mixtral-compile flag (repeatable)")
    args = ap.parse_args()
    os.makedirs(args.workdir, exist_ok=True)
    base = os.path.join(args.workdir, "tiny")
    shutil.rmtree(base, ignore_errors=True)
    subprocess.run([sys.executable, MAKE_CHECKPOINT, base] + BASE_ARGS, check=True,
                   stdout=subprocess.DEVNULL)
    exe = os.path.join(args.workdir, "tiny.exe")
    compile_model(args, base, exe)
    c = Checker(args.workdir, exe, base)
    rc, out, err = run(exe, base, ["--prompt-ids", PROMPT, "-n", "2", "--temp", "0", "--print-ids",
                                   "-q"])
    c.report("finite-baseline", [] if rc == 0 and err == "" else [f"exit {rc}: {err!r}"])
    weight_cases(c)
    overflow_cases(c)
    rope_theta_case(c, args)
    print(f"{c.passed} passed, {c.failed} failed")
    return 1 if c.failed or not c.passed else 0


if __name__ == "__main__":
    sys.exit(main())
