#!/usr/bin/env python3
"""End-to-end check of the compiler against the numpy reference on random models.

Each config below is written with test/reference/make_checkpoint.py (shapes,
GQA ratio, experts, top-k, dtype, sharding and sliding window vary), compiled,
and for each prompt the program must match test/reference/mixtral_ref.py:
  * the logits of every greedy step (--logits-out rows: the prompt end, then
    each decode) and of a prefill of prompt + greedy[:-1] (the longer prefill),
    rel_err = max|got - ref| / max|ref| <= --rtol-f32 for float32 checkpoints and
    --rtol-lowp for bf16/f16 ones (the reference widens them to float32 exactly, so
    the f32 error is expected there too);
  * the greedy ids, exactly (EOS-stop and near-tie allowances: see
    e2e_lib.compare_ids).

Packed and quantized weights (issue 10; QUANT_CONFIGS): the same checks for
binaries compiled with --pack (bf16), --quantize q8|q4 --int8-activations=false (the
reference runs the weights test/reference/quant_ref.py's independent quantize->dequantize
gives on f32 activations, so the tolerance stays the f32 one), and FP8 checkpoints made by
make_fp8_checkpoint.py (per-channel and per-tensor
weight_scale, both config layouts, static input scales that are ignored), which the reference
widens and scales itself. The --pack config is also compiled without --pack (the loader
puts the experts in the same panel order as it copies them): logits equal bit for bit.
With --gemm-bf16 (the GPU target) the --pack, q8, q4 and FP8
configs run (GPU_QUANT_VARIANTS; not the --cpu one): the nvptx binary uploads the same packed file and its
kernels dequantise in registers; the reference rounds the dequantised weights to bf16 where
the tensor-core GEMMs do (exact in f32, so rounded once, as the kernels round them).

With --gemm-bf16 (the GPU target, run by test/gpu-emu's PTX interpreter via
--compile-arg=--target=nvptx and $MOEC_CUDA_DRIVER), the reference rounds the operands of
the attention and expert projections and of lm_head to bf16 at every position, as the
tensor-core GEMMs of moec_step do (the CUDA backend runs prefill and decode through the
step; mixtral_ref.Model.gemm_bf16_all); the router stays f32.

Usage: check_reference.py --compiler PATH --workdir DIR [--quick] [--only NAME]
                          [--gemm-bf16] [--compile-arg=ARG ...] [--quant | --no-quant]
Prints one line per case and finally `N passed, M failed`; exit 1 on failure.
Needs only numpy.
"""

import argparse
import json
import os
import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

import numpy as np

import e2e_lib
from e2e_lib import CaseError, rel_err
import make_checkpoint
import make_fp8_checkpoint
import mixtral_ref
import quant_ref

# name: (make_checkpoint arguments, prompt lengths, new tokens, in --quick)
CONFIGS = [
    ("base_e4k2_gqa2", dict(vocab=512, hidden=64, intermediate=96, layers=3, heads=4,
                            kv_heads=2, experts=4, top_k=2, seed=11), [1, 7, 33], 8, True),
    ("odd_d72_h6_mha_e3k3", dict(vocab=500, hidden=72, intermediate=100, layers=3, heads=6,
                                 kv_heads=6, experts=3, top_k=3, rope_theta=1e4, seed=12),
     [2, 13, 64], 8, False),
    ("gqa4_e8k2_d128", dict(vocab=640, hidden=128, intermediate=160, layers=3, heads=8,
                            kv_heads=2, experts=8, top_k=2, seed=13), [5, 64], 8, True),
    ("e1k1_gqa4", dict(vocab=256, hidden=48, intermediate=64, layers=3, heads=4, kv_heads=1,
                       experts=1, top_k=1, seed=14), [1, 17], 8, False),
    ("e8k1_mha", dict(vocab=384, hidden=64, intermediate=80, layers=4, heads=4, kv_heads=4,
                      experts=8, top_k=1, seed=15), [3, 29], 8, False),
    ("sharded4_bf16_e8k3", dict(vocab=512, hidden=64, intermediate=96, layers=3, heads=4,
                                kv_heads=2, experts=8, top_k=3, dtype="bf16", shards=4, seed=16),
     [1, 24], 8, True),
    ("f16_h5_e3k2", dict(vocab=448, hidden=80, intermediate=112, layers=3, heads=5, kv_heads=5,
                         experts=3, top_k=2, dtype="f16", seed=17), [4, 21], 8, False),
    ("swa6_e4k2", dict(vocab=512, hidden=64, intermediate=96, layers=3, heads=4, kv_heads=2,
                       experts=4, top_k=2, sliding_window=6, seed=18), [3, 20, 45], 10, True),
    ("deep6_d32", dict(vocab=300, hidden=32, intermediate=48, layers=6, heads=2, kv_heads=1,
                       experts=4, top_k=2, rope_theta=500.0, seed=19), [9, 40], 8, False),
    ("tied_embeddings_e2k2", dict(vocab=320, hidden=64, intermediate=64, layers=3, heads=4,
                                  kv_heads=2, experts=2, top_k=2, tie_embeddings=True, seed=20),
     [6], 8, False),
    # Router rows 0 and 1 identical in every layer: exact ties, the lower index must win.
    ("router_tie_e4k1", dict(vocab=256, hidden=64, intermediate=96, layers=3, heads=4,
                             kv_heads=2, experts=4, top_k=1, router_tie=(0, 1), seed=21),
     [12], 8, False),
    # Mixtral's head geometry (head_dim 128, GQA 4) and a prompt past 256 tokens: several
    # GEMM tiles in every dimension, two prefill chunks, two decode attention splits.
    ("mixtral_heads_t260", dict(vocab=1000, hidden=512, intermediate=768, layers=2, heads=4,
                                kv_heads=1, experts=8, top_k=2, dtype="bf16", max_pos=512, seed=22),
     [260], 4, False),
]


# name: (make_checkpoint arguments, prompt lengths, new tokens, in --quick, variant): "pack"
# (--pack), "q8"/"q4" (--quantize; "q8:v2" also --cpu x86-64-v2: no AVX2, other tiles), "fp8:<layout>:<scheme>[:static]" (an FP8 checkpoint made
# from the f32 one). FP8 with hidden != intermediate (Mixtral's 3.5 ratio: one per-row format
# for w1/w3 and w2 of different K). {"golden": NAME}: test/goldens/NAME as it is, here the
# one whose intermediate (80) is no multiple of 32, so --quantize keeps its experts f32.
QUANT_CONFIGS = [
    ("packed_bf16_e4k2", dict(vocab=512, hidden=64, intermediate=96, layers=2, heads=4,
                              kv_heads=2, experts=4, top_k=2, dtype="bf16", shards=2, seed=31),
     [1, 19], 6, True, "pack"),
    ("q8_e4k2_gqa2", dict(vocab=512, hidden=64, intermediate=96, layers=3, heads=4, kv_heads=2,
                          experts=4, top_k=2, seed=32), [1, 33], 8, True, "q8"),
    ("q4_e8k2_d128_bf16", dict(vocab=640, hidden=128, intermediate=160, layers=2, heads=8,
                               kv_heads=2, experts=8, top_k=2, dtype="bf16", seed=33),
     [5, 40], 8, True, "q4"),
    ("q8_x86_64_v2", dict(vocab=512, hidden=64, intermediate=96, layers=2, heads=4,
                                  kv_heads=2, experts=4, top_k=2, seed=36), [1, 22], 6, False,
     "q8:v2"),
    ("q8_golden_f80", dict(golden="mixtral_e3k1_gqa4_swa8_f32"), [1, 14], 6, True, "q8"),
    ("fp8_channel_ct", dict(vocab=384, hidden=64, intermediate=224, layers=2, heads=4,
                            kv_heads=2, experts=4, top_k=2, seed=34),
     [3, 25], 8, True, "fp8:compressed-tensors:channel"),
    ("fp8_tensor_static", dict(vocab=384, hidden=96, intermediate=80, layers=2, heads=3,
                               kv_heads=1, experts=4, top_k=2, seed=35),
     [7], 8, False, "fp8:fp8:tensor:static"),
]


# The QUANT_CONFIGS variants the GPU target runs (--gemm-bf16): all but the --cpu ones.
GPU_QUANT_VARIANTS = ("pack", "q8", "q4", "fp8")


def prompt_for(vocab, length, seed):
    rng = np.random.default_rng(seed)
    return [1] + [int(t) for t in rng.integers(3, vocab, size=length - 1)]


def make_model(work, ckpt_args, variant):
    """The checkpoint folder, the extra compile flags and the reference's --quantize."""
    model_dir = os.path.join(work, "model")
    if not (variant or "").startswith("fp8:"):
        if "golden" in ckpt_args:
            model_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                     "goldens", ckpt_args["golden"])
            with open(os.path.join(model_dir, "config.json")) as f:
                cfg = json.load(f)
            os.makedirs(work, exist_ok=True)
        else:
            cfg = make_checkpoint.make_checkpoint(model_dir, **ckpt_args)
        fmt = (variant or "").split(":")[0]
        flags = ["--pack"] if variant == "pack" else []
        if fmt in ("q8", "q4"):
            # "<fmt>:v2": also for a CPU without AVX2 (other vector widths and tiles).
            # f32 activations (q4's default is int8 ones): the reference runs the same
            # quantized weights on unrounded activations.
            flags = ["--quantize", fmt, "--int8-activations=false"] + (
                ["--cpu", "x86-64-v2"] if variant.endswith(":v2") else [])
            return model_dir, cfg, flags, fmt
        return model_dir, cfg, flags, None
    _, layout, scheme, *static = variant.split(":")
    src = os.path.join(work, "f32")
    cfg = make_checkpoint.make_checkpoint(src, **ckpt_args)
    make_fp8_checkpoint.main([src, model_dir, "--layout", layout, "--scheme", scheme,
                              "--rest-dtype", "bf16"] + (["--input-scales"] if static else []))
    return model_dir, cfg, [], None


def packed_file_problem(exe, model_dir):
    """"" when every tensor of OUT.weights holds the bytes quant_ref's independent encoders
    give for its sources (q8/q4 data and f16 scales; FP8 data as on disk and one f32 scale per
    row; float and q8 tensors as on disk, or in panel order where the manifest says so), else
    the first difference."""
    blob = open(exe, "rb").read()
    start = blob.index(b'{"magic":"MOEC"')
    manifest = json.loads(blob[start:blob.index(b"\0", start)])
    arena = np.fromfile(exe + ".weights", dtype=np.uint8)[4096:]
    tensors = mixtral_ref.load_tensors(model_dir)
    raw = read_raw(model_dir)
    for t in manifest["weights"]["tensors"]:
        def at(offset, n):
            return arena[offset:offset + n].tobytes()
        if t["dtype"] in ("q8", "q4"):
            enc = quant_ref.q8_encode if t["dtype"] == "q8" else quant_ref.q4_encode
            parts = [enc(tensors[s]) for s in t["sources"]]
            if "panels" in t:  # q8 on a CPU: codes and scales in panel order
                parts = [q8_panel_order(q, sc, t) for q, sc in parts]
            data = b"".join(p[0].tobytes() for p in parts)
            scales = b"".join(p[1].astype("<f2").tobytes() for p in parts)
        elif t["dtype"] == "f8e4m3":
            data = b"".join(raw[s] for s in t["sources"])
            rows = [np.broadcast_to(np.asarray(tensors[s], np.float32).reshape(-1),
                                    (int(np.prod(tensors[w].shape[:-1])),))
                    for s, w in zip(t["scale_sources"], t["sources"])]
            scales = np.concatenate(rows).astype("<f4").tobytes()
        elif "panels" in t:
            data, scales = b"".join(panel_order(raw[s], t) for s in t["sources"]), b""
        else:
            data, scales = b"".join(raw[s] for s in t["sources"]), b""
        if at(t["offset"], len(data)) != data:
            return f"tensor {t['name']} ({t['dtype']}): data bytes differ"
        if scales and at(t["scale"]["offset"], len(scales)) != scales:
            return f"tensor {t['name']} ({t['dtype']}): scale bytes differ"
    return ""


def panel_order(raw, t):
    """One source's bytes in the manifest's panel order ("panels": [cols, lanes], #moe.panels):
    per panel p of cols rows, lane l, step j, the rows' W[cols p + r, l + lanes j] for r < cols."""
    cols, lanes = t["panels"]
    n, k = t["shape"][-2], t["shape"][-1]
    item = {"f32": "<u4", "bf16": "<u2", "f16": "<u2"}[t["dtype"]]
    w = np.frombuffer(raw, dtype=item).reshape(n // cols, cols, k // lanes, lanes)  # [p, r, j, l]
    return np.ascontiguousarray(w.transpose(0, 3, 2, 1)).tobytes()  # [p, l, j, r]


def q8_panel_order(codes, scales, t):
    """One source's q8 codes [n, k] and scales [n, k / 32] in the manifest's panel order
    (manifest.h): the codes as panel_order puts elements; the scales per panel p and group g,
    the rows' scales of group g for r < cols."""
    cols, lanes = t["panels"]
    n, k = codes.shape[-2], codes.shape[-1]
    q = codes.reshape(n // cols, cols, k // lanes, lanes).transpose(0, 3, 2, 1)  # [p, l, j, r]
    s = scales.reshape(n // cols, cols, -1).transpose(0, 2, 1)  # [p, g, r]
    return np.ascontiguousarray(q), np.ascontiguousarray(s)


def read_raw(model_dir):
    """{name: raw bytes} of every tensor of the folder's safetensors files."""
    out = {}
    for f in sorted(os.listdir(model_dir)):
        if f.endswith(".safetensors"):
            data = open(os.path.join(model_dir, f), "rb").read()
            n = int.from_bytes(data[:8], "little")
            for name, info in json.loads(data[8:8 + n]).items():
                if name != "__metadata__":
                    b, e = info["data_offsets"]
                    out[name] = data[8 + n + b:8 + n + e]
    return out


def check_config(args, tally, name, ckpt_args, lengths, n_new, variant=None):
    work = os.path.join(args.workdir, name)
    exe = os.path.join(work, "model.out")
    dtype = ckpt_args.get("dtype", "f32")
    rtol = args.rtol_f32 if dtype == "f32" else args.rtol_lowp
    model_dir, cfg, flags, quant = make_model(work, ckpt_args, variant)
    vocab = cfg["vocab_size"]
    try:
        # Room for the longest prompt and its continuation (the flag's value is a minimum).
        seq_len = max(args.max_seq_len, max(lengths) + n_new) if args.max_seq_len else 0
        e2e_lib.compile_model(args.compiler, model_dir, exe, seq_len, args.compile_arg + flags)
        if variant and not os.path.exists(exe + ".weights"):
            raise CaseError(f"no packed weights file {exe}.weights")
    except CaseError as e:
        tally.report(False, f"{name} compile", str(e))
        return
    if variant:
        problem = packed_file_problem(exe, model_dir)
        tally.report(not problem, f"{name} packed bytes = quant_ref's encoding",
                     problem or f"{os.path.getsize(exe + '.weights')} bytes")
    # "pack" on a CPU: the same compiler without --pack puts the experts in the same panel
    # order at load (the loader's permutation, not the packer's), so its logits must be the
    # packed binary's bit for bit.
    arena_exe = None
    if variant == "pack" and not any("nvptx" in a for a in args.compile_arg):
        arena_exe = os.path.join(work, "arena.out")
        try:
            e2e_lib.compile_model(args.compiler, model_dir, arena_exe, seq_len, args.compile_arg)
        except CaseError as e:
            tally.report(False, f"{name} compile without --pack", str(e))
            arena_exe = None
    ref_model = mixtral_ref.load_model(model_dir, np.float32, quant)
    for i, length in enumerate(lengths):
        label = f"{name}/T{length}"
        prompt = prompt_for(vocab, length, 1000 * i + length)
        # With --gemm-bf16 the reference rounds every GEMM's operands as the GPU target's step
        # does (mixtral_ref.Model.gemm_bf16_all): prefill and decode rows alike.
        ref_model.gemm_bf16_all = args.gemm_bf16
        want_ids, ref_steps = mixtral_ref.greedy_steps(ref_model, prompt, n_new)  # [n_new, V]
        seq = prompt + want_ids[:-1]
        ref_last = mixtral_ref.forward(ref_model, seq)[-1]        # [V]: a prefill of all of seq
        try:
            got = e2e_lib.run_logits(exe, seq, vocab, os.path.join(work, "logits.bin"))
            got_ids, rows = e2e_lib.run_greedy_steps(exe, prompt, n_new, vocab,
                                                     os.path.join(work, "steps.bin"))
        except CaseError as e:
            tally.report(False, label, str(e))
            continue
        if arena_exe:
            try:
                same = (e2e_lib.run_logits(arena_exe, seq, vocab, os.path.join(work, "arena.bin"))
                        .tobytes() == got.tobytes())
                a_ids, a_rows = e2e_lib.run_greedy_steps(arena_exe, prompt, n_new, vocab,
                                                         os.path.join(work, "arena-steps.bin"))
                same = same and a_ids == got_ids and np.asarray(a_rows).tobytes() == \
                    np.asarray(rows).tobytes()
                tally.report(same, f"{label} without --pack (panels at load) = --pack, bit for bit",
                             "prefill and every decode step" if same else "logits differ")
            except CaseError as e:
                tally.report(False, f"{label} without --pack", str(e))
        step_errs = e2e_lib.compare_steps(rows, got_ids, want_ids, ref_steps)
        ids_ok, note = e2e_lib.compare_ids(got_ids, want_ids, ref_steps,
                                           near_tie_rel=args.near_tie_rel)
        # Rows: every greedy step (row 0 = the prompt end), then the prefill of all of seq.
        rows_ok, text = tally.rows_gate(step_errs + [rel_err(got, ref_last)], rtol)
        tally.report(rows_ok and ids_ok, label,
                     f"{len(step_errs)} decode steps + prefill T={len(seq)}: {text}, {note}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compiler", required=True, help="path of mixtral-compile")
    ap.add_argument("--workdir", required=True, help="scratch folder for checkpoints and programs")
    ap.add_argument("--quick", action="store_true", help="only the configs marked quick")
    ap.add_argument("--gemm-bf16", action="store_true",
                    help="reference logits with bf16 operands in every GEMM (the GPU target's step)")
    ap.add_argument("--near-tie-rel", type=float,
                    help="greedy divergence allowed where the top-2 gap is below this * max|logit|")
    ap.add_argument("--compile-arg", action="append", default=[],
                    help="extra mixtral-compile argument (repeatable), e.g. --target=nvptx")
    ap.add_argument("--only", help="run only the config with this name")
    ap.add_argument("--quant", dest="quant", action="store_true", default=None,
                    help="only the packed/quantized configs (QUANT_CONFIGS)")
    ap.add_argument("--no-quant", dest="quant", action="store_false",
                    help="only the float configs")
    ap.add_argument("--rtol-median", type=float,
                    help="also require the median of all cases' rows' rel err <= this (the GPU path)")
    ap.add_argument("--max-seq-len", type=int, default=128,
                    help="passed to the compiler; 0 = do not pass the flag")
    ap.add_argument("--rtol-f32", type=float, help="default: e2e_lib.CPU_RTOL, GPU_RTOL with --gemm-bf16")
    ap.add_argument("--rtol-lowp", type=float,
                    help="tolerance for bf16/f16 checkpoints (default as --rtol-f32)")
    args = ap.parse_args()
    e2e_lib.resolve_tolerances(args)
    args.compiler = os.path.abspath(args.compiler)
    args.workdir = os.path.abspath(args.workdir)
    os.makedirs(args.workdir, exist_ok=True)
    tally = e2e_lib.Tally("check_reference", args.rtol_median)
    configs = [c + (None,) for c in CONFIGS] if args.quant is not True else []
    if args.quant is not False:
        configs += [c for c in QUANT_CONFIGS
                    if not args.gemm_bf16 or (c[-1].split(":")[0] in GPU_QUANT_VARIANTS
                                              and not c[-1].endswith(":v2"))]
    for name, ckpt_args, lengths, n_new, quick, variant in configs:
        if args.only and name != args.only:
            continue
        if args.quick and not quick:
            continue
        check_config(args, tally, name, ckpt_args, lengths, n_new, variant)
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
