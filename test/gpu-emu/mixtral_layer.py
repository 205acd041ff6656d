#!/usr/bin/env python3
"""A Mixtral-shaped layer through the PTX interpreter, against the numpy reference.

One layer with Mixtral 8x7B's shapes (hidden 4096, intermediate 14336, 8 experts top-2,
32 query / 8 KV heads, head_dim 128) and a small vocab, bf16 weights (~2.8 GB), written by
test/reference/make_checkpoint.py (streaming: memory stays at one block of rows) into
WORKDIR/model and reused while its arguments are unchanged. Compiled with --target nvptx,
run under the interpreter ($MOEC_CUDA_DRIVER) for a P-token prefill and N greedy decode
tokens, and checked like test/e2e/check_reference.py --gemm-bf16 checks its configs: every
greedy step's logits (row 0: the prefill) against test/reference/mixtral_ref.py with the
GPU tolerances (e2e_lib.gate, worst and median row) and the greedy ids (e2e_lib.compare_ids).

The reference reads the bf16 weights through a read-only memory map and widens each matrix
to float32 only while a product uses it (the eager loader would hold 8.4 GB). Its logits are
cached in WORKDIR keyed by the checkpoint's arguments, the prompt and the reference's own
source, so a rerun after a compiler change costs only the compile and the interpreter.

Usage: mixtral_layer.py --compiler PATH --workdir DIR [-P 12] [-N 4] [--gpu sm_90]
                        [--binary-only] [--keep-going]
  --binary-only: write the checkpoint and WORKDIR/model.out and stop (layer-report.sh).
Prints one PASS/FAIL line with the errors and the interpreter's wall and CPU time; exit 1
on failure.
"""

import argparse
import hashlib
import json
import mmap
import os
import resource
import sys
import time

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import numpy as np

import e2e_lib  # noqa: E402  (adds test/reference to sys.path)
import make_checkpoint  # noqa: E402
import mixtral_ref  # noqa: E402

# Mixtral 8x7B's layer, one of it, with a 512-token vocab (embedding and head stay small).
LAYER = dict(vocab=512, hidden=4096, intermediate=14336, layers=1, heads=32, kv_heads=8,
             experts=8, top_k=2, dtype="bf16", max_pos=256, seed=40)


class LazyBF16:
    """A bf16 tensor in a mapped safetensors file, widened to float32 (exactly) when numpy
    asks for its values, so only the matrices of the product at hand are in memory. The last
    widened matrix is kept: a prefill projection reads its weight twice (f32 and bf16 GEMM)."""

    last = (None, None)  # (key, float32 array)

    def __init__(self, buf, offset, shape, transposed=False):
        self.buf, self.offset, self.shape_, self.transposed = buf, offset, tuple(shape), transposed

    @property
    def shape(self):
        return self.shape_[::-1] if self.transposed else self.shape_

    @property
    def T(self):
        return LazyBF16(self.buf, self.offset, self.shape_, not self.transposed)

    def astype(self, dtype):
        if dtype != np.float32:
            raise TypeError("LazyBF16 widens to float32 only")
        return self

    def widened(self):
        key = (id(self.buf), self.offset)
        if LazyBF16.last[0] != key:
            LazyBF16.last = (None, None)  # free the previous matrix first
            n = int(np.prod(self.shape_))
            bits = np.frombuffer(self.buf, dtype="<u2", count=n, offset=self.offset)
            wide = np.left_shift(bits, 16, dtype=np.uint32)  # the bf16 bits, high half
            LazyBF16.last = (key, wide.view(np.float32).reshape(self.shape_))
        return LazyBF16.last[1]

    def __array__(self, dtype=None, copy=None):
        arr = self.widened()
        arr = arr.T if self.transposed else arr
        return arr if dtype is None else arr.astype(dtype, copy=False)


def load_lazy_tensors(model_dir):
    """{name: LazyBF16 for the attention and expert matrices, float32 array otherwise}."""
    path = os.path.join(model_dir, "model.safetensors")
    with open(path, "rb") as f:
        buf = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    (n,) = np.frombuffer(buf, dtype="<u8", count=1)
    header = json.loads(bytes(buf[8:8 + int(n)]))
    base = 8 + int(n)
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        shape, (start, end) = info["shape"], info["data_offsets"]
        if info["dtype"] != "BF16" or end - start != 2 * int(np.prod(shape)):
            raise ValueError(f"{path}: {name}: expected BF16 data of shape {shape}")
        lazy = LazyBF16(buf, base + start, shape)
        big = ".self_attn." in name or ".experts." in name
        out[name] = lazy if big else np.array(lazy)
    return out


def ensure_checkpoint(workdir):
    """WORKDIR/model, written unless its stamp says it holds LAYER already."""
    model_dir = os.path.join(workdir, "model")
    stamp_path = os.path.join(workdir, "model.stamp")
    stamp = json.dumps(LAYER, sort_keys=True)
    if os.path.exists(stamp_path) and open(stamp_path).read() == stamp and \
            os.path.exists(os.path.join(model_dir, "model.safetensors")):
        return model_dir
    if os.path.exists(stamp_path):
        os.remove(stamp_path)
    t = time.time()
    make_checkpoint.make_checkpoint(model_dir, **LAYER)
    with open(stamp_path, "w") as f:
        f.write(stamp)
    print(f"wrote {model_dir} in {time.time() - t:.0f} s", flush=True)
    return model_dir


def reference_steps(workdir, model_dir, prompt, n):
    """(ids, step logits [n, V]) of mixtral_ref with the GPU target's bf16 step GEMMs;
    cached by checkpoint, prompt and the reference's source."""
    key = hashlib.sha256()
    key.update(json.dumps([LAYER, prompt, n]).encode())
    for mod in (mixtral_ref, make_checkpoint):
        key.update(open(mod.__file__, "rb").read())
    cache = os.path.join(workdir, f"ref-{key.hexdigest()[:16]}.npz")
    if os.path.exists(cache):
        z = np.load(cache)
        return [int(i) for i in z["ids"]], z["steps"]
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    model = mixtral_ref.Model(config, load_lazy_tensors(model_dir), np.float32)
    model.gemm_bf16_all = True  # the step's GEMMs (prefill and decode rows, lm_head)
    t = time.time()
    ids, steps = mixtral_ref.greedy_steps(model, prompt, n)
    print(f"reference: {n} greedy steps in {time.time() - t:.0f} s", flush=True)
    np.savez(cache + ".tmp.npz", ids=np.array(ids), steps=steps)
    os.replace(cache + ".tmp.npz", cache)
    return ids, steps


def prompt(n):
    """The n-token prompt both scripts use: BOS, then ids drawn from a fixed seed."""
    rng = np.random.default_rng(7)
    return [1] + [int(t) for t in rng.integers(3, LAYER["vocab"], size=n - 1)]


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compiler", required=True, help="path of mixtral-compile")
    ap.add_argument("--workdir", required=True, help="folder for the checkpoint (~2.8 GB) and binary")
    ap.add_argument("-P", type=int, default=12, help="prompt tokens (prefill)")
    ap.add_argument("-N", type=int, default=3, help="greedy tokens (N - 1 decode steps)")
    ap.add_argument("--gpu", default="sm_90", help="--gpu for mixtral-compile")
    ap.add_argument("--timeout", type=int, default=1200,
                    help="seconds for the interpreted run (prefill ~2.5 min of CPU)")
    ap.add_argument("--binary-only", action="store_true",
                    help="write the checkpoint and WORKDIR/model.out, then stop")
    args = ap.parse_args()
    if not os.environ.get("MOEC_CUDA_DRIVER") and not args.binary_only:
        print("mixtral_layer.py: set MOEC_CUDA_DRIVER to libmoec_ptxemu.so", file=sys.stderr)
        return 2
    workdir = os.path.abspath(args.workdir)
    os.makedirs(workdir, exist_ok=True)
    model_dir = ensure_checkpoint(workdir)
    exe = os.path.join(workdir, "model.out")
    t = time.time()
    try:
        e2e_lib.compile_model(os.path.abspath(args.compiler), model_dir, exe, args.P + args.N,
                              [f"--target=nvptx", f"--gpu={args.gpu}"])
    except e2e_lib.CaseError as e:
        print(f"FAIL mixtral-layer compile: {e}", flush=True)
        return 1
    print(f"compiled {exe} in {time.time() - t:.0f} s", flush=True)
    if args.binary_only:
        return 0

    vocab = LAYER["vocab"]
    ids = prompt(args.P)
    want_ids, ref_steps = reference_steps(workdir, model_dir, ids, args.N)
    tally = e2e_lib.Tally("mixtral-layer")
    e2e_lib.RUN_TIMEOUT_S = args.timeout
    wall, cpu = time.time(), children_cpu()
    try:
        got_ids, rows = e2e_lib.run_greedy_steps(exe, ids, args.N, vocab,
                                                 os.path.join(workdir, "steps.bin"))
    except e2e_lib.CaseError as e:
        tally.report(False, f"P{args.P}+N{args.N}", str(e))
        return tally.finish()
    wall, cpu = time.time() - wall, children_cpu() - cpu
    errs = e2e_lib.compare_steps(rows, got_ids, want_ids, ref_steps)
    ids_ok, note = e2e_lib.compare_ids(got_ids, want_ids, ref_steps,
                                       near_tie_rel=e2e_lib.GPU_NEAR_TIE_REL)
    rows_ok, text = e2e_lib.gate(errs, e2e_lib.GPU_RTOL, e2e_lib.GPU_RTOL_MEDIAN)
    tally.report(rows_ok and ids_ok, f"P{args.P}+N{args.N}",
                 f"prefill + {len(errs) - 1} decode steps: {text}, {note}; "
                 f"interpreter wall {wall:.1f} s, cpu {cpu:.1f} s")
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
