#!/usr/bin/env python3
"""End-to-end check of the compiler against Hugging Face goldens (test/goldens).

For every golden checkpoint (a folder with goldens.json): compile it, then for
every recorded prompt
  * compare the program's logits with HF's at several prefix lengths: every
    length up to 4, then a stride, always including the full prompt (the last
    prompt position) and the full prompt + greedy[:-1] sequence;
  * compare its greedy ids (n = len(greedy_ids)) with HF's, exactly (EOS stop
    and near-tie allowances: see e2e_lib.compare_ids), and the logits of every
    greedy step (--logits-out rows: the prompt end, then each decode) with HF's
    per-step logits from generate() with its KV cache (logits.npz p<i>_steps).
The error is rel_err = max|got - hf| / max|hf| per vocab row; tolerance
e2e_lib.CPU_RTOL for float32 and bf16 checkpoints alike: the goldens of bf16
checkpoints are HF's float32 forward of the exactly widened bf16 weights, so a
compiler that widens to f32 lands near 1e-6 there too. With --gemm-bf16 (the GPU
target) the expected values are the reference's model of the target on these
checkpoints and the GPU tolerances apply (e2e_lib.gate); HF's error is reported.

Usage: check_goldens.py --compiler PATH --workdir DIR [--goldens DIR] [--quick] [--only NAME]
                        [--compile-arg=ARG ...]
With --compile-arg=--target=nvptx and $MOEC_CUDA_DRIVER naming test/gpu-emu's PTX
interpreter, the GPU binaries run their PTX on the CPU (see test/gpu-emu).
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
import mixtral_ref


def prefix_lengths(n_prompt, n_total, quick):
    if quick:
        return sorted({n_prompt, n_total})
    stride = max(1, n_total // 6)
    lengths = set(range(1, min(4, n_total) + 1)) | set(range(stride, n_total + 1, stride))
    return sorted(lengths | {n_prompt, n_total})


def check_checkpoint(args, tally, model_dir):
    name = os.path.basename(model_dir.rstrip("/"))
    with open(os.path.join(model_dir, "goldens.json")) as f:
        meta = json.load(f)
    with open(os.path.join(model_dir, "config.json")) as f:
        vocab = json.load(f)["vocab_size"]
    arrays = np.load(os.path.join(model_dir, "logits.npz"))
    rtol = args.rtol_f32 if meta["checkpoint_dtype"] == "f32" else args.rtol_lowp
    work = os.path.join(args.workdir, name)
    os.makedirs(work, exist_ok=True)
    exe = os.path.join(work, "model.out")
    try:
        e2e_lib.compile_model(args.compiler, model_dir, exe, args.max_seq_len, args.compile_arg)
    except CaseError as e:
        tally.report(False, f"{name} compile", str(e))
        return
    cases = meta["cases"][:2] if args.quick else meta["cases"]
    ref = mixtral_ref.load_model(model_dir) if args.gemm_bf16 else None
    for case in cases:
        label = f"{name}/{case['name']} (prompt {len(case['prompt_ids'])})"
        prompt = case["prompt_ids"]
        seq = prompt + case["greedy_ids"][:-1]
        gold = arrays[case["name"]]                       # [len(seq), V]: HF, full forward
        want_ids = case["greedy_ids"]
        steps = arrays[case["name"] + "_steps"]            # [len(want_ids), V]: HF, KV cache
        want_rows, want_steps = gold, steps
        if ref is not None:
            # The GPU target's model: bf16 operands in every GEMM at every position (the
            # step's). Row p of a forward depends on rows <= p only, so one forward serves
            # every prefix length.
            ref.gemm_bf16_all = True
            want_rows = mixtral_ref.forward(ref, seq)
            want_ids, want_steps = mixtral_ref.greedy_steps(ref, prompt, len(want_ids))
        try:
            errs = []
            for length in prefix_lengths(len(prompt), len(seq), args.quick):
                got = e2e_lib.run_logits(exe, seq[:length], vocab,
                                         os.path.join(work, "logits.bin"))
                errs.append(rel_err(got, want_rows[length - 1]))
            got_ids, rows = e2e_lib.run_greedy_steps(exe, prompt, len(want_ids), vocab,
                                                     os.path.join(work, "steps.bin"))
        except CaseError as e:
            tally.report(False, label, str(e))
            continue
        step_errs = e2e_lib.compare_steps(rows, got_ids, want_ids, want_steps)
        ids_ok, note = e2e_lib.compare_ids(got_ids, want_ids, want_steps,
                                           near_tie_rel=args.near_tie_rel)
        rows_ok, text = tally.rows_gate(errs + step_errs, rtol)
        hf = ""
        if ref is not None:
            hf_errs = e2e_lib.compare_steps(rows, got_ids, case["greedy_ids"], steps)
            hf = f"; vs HF f32 {max(hf_errs):.2e}"
        tally.report(rows_ok and ids_ok, label,
                     f"{len(errs)} prefills + {len(step_errs)} decode steps: {text}{hf}, {note}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compiler", required=True, help="path of mixtral-compile")
    ap.add_argument("--workdir", required=True, help="scratch folder for compiled programs")
    ap.add_argument("--goldens", default=os.path.join(e2e_lib.REPO_TEST, "goldens"))
    ap.add_argument("--max-seq-len", type=int, default=128,
                    help="passed to the compiler; 0 = do not pass the flag")
    ap.add_argument("--rtol-f32", type=float, help="default: e2e_lib.CPU_RTOL, GPU_RTOL with --gemm-bf16")
    ap.add_argument("--rtol-lowp", type=float, help="tolerance for bf16 checkpoints (default as --rtol-f32)")
    ap.add_argument("--quick", action="store_true", help="2 prompts per checkpoint, 2 prefixes")
    ap.add_argument("--near-tie-rel", type=float,
                    help="greedy divergence allowed where the top-2 gap is below this * max|logit|")
    ap.add_argument("--only", help="run only the golden folder with this name")
    ap.add_argument("--gemm-bf16", action="store_true",
                    help="expect the GPU target's model (the reference with bf16 operands in "
                         "every GEMM) instead of HF's f32 logits; HF's is reported")
    ap.add_argument("--rtol-median", type=float,
                    help="also require the median of all cases' rows' rel err <= this (the GPU path)")
    ap.add_argument("--compile-arg", action="append", default=[],
                    help="extra mixtral-compile argument (repeatable), e.g. --target=nvptx")
    args = ap.parse_args()
    e2e_lib.resolve_tolerances(args)
    args.compiler = os.path.abspath(args.compiler)
    args.workdir = os.path.abspath(args.workdir)
    os.makedirs(args.workdir, exist_ok=True)
    tally = e2e_lib.Tally("check_goldens", args.rtol_median)
    dirs = sorted(os.path.join(args.goldens, d) for d in os.listdir(args.goldens)
                  if os.path.exists(os.path.join(args.goldens, d, "goldens.json"))
                  and (not args.only or d == args.only))
    if not dirs:
        tally.report(False, "setup", f"no goldens under {args.goldens}")
    for d in dirs:
        check_checkpoint(args, tally, d)
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
