#!/usr/bin/env python3
"""End-to-end check of the compiler against Hugging Face goldens (test/goldens).

For every golden checkpoint (a folder with goldens.json): compile it, then for
every recorded prompt
  * compare the program's logits with HF's at several prefix lengths: every
    length up to 4, then a stride, always including the full prompt (the last
    prompt position) and the full prompt + greedy[:-1] sequence;
  * compare its greedy ids (n = len(greedy_ids)) with HF's, exactly (EOS stop
    and near-tie allowances: see e2e_lib.compare_ids).
The error is rel_err = max|got - hf| / max|hf| over the vocab row; tolerance
1e-4 for float32 checkpoints and --rtol-lowp (default 1e-2) for bf16 ones.
The goldens of bf16 checkpoints are HF's float32 forward of the exactly
widened bf16 weights, so a compiler that widens to f32 lands near 1e-6 there too.

Usage: check_goldens.py --compiler PATH --workdir DIR [--goldens DIR] [--quick]
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
    for case in cases:
        label = f"{name}/{case['name']} (prompt {len(case['prompt_ids'])})"
        prompt, want_ids = case["prompt_ids"], case["greedy_ids"]
        seq = prompt + want_ids[:-1]
        gold = arrays[case["name"]]                       # [len(seq), V]
        try:
            worst, where = 0.0, None
            for length in prefix_lengths(len(prompt), len(seq), args.quick):
                got = e2e_lib.run_logits(exe, seq[:length], vocab,
                                         os.path.join(work, "logits.bin"))
                err = rel_err(got, gold[length - 1])
                if err > worst or where is None:
                    worst, where = err, length
            got_ids = e2e_lib.run_greedy(exe, prompt, len(want_ids))
        except CaseError as e:
            tally.report(False, label, str(e))
            continue
        ids_ok, note = e2e_lib.compare_ids(got_ids, want_ids, gold[len(prompt) - 1:],
                                           near_tie_rel=args.near_tie_rel)
        ok = worst <= rtol and ids_ok
        tally.report(ok, label, f"logits rel err {worst:.2e} (worst at prefix {where}, "
                                f"tol {rtol:.0e}), {note}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compiler", required=True, help="path of mixtral-compile")
    ap.add_argument("--workdir", required=True, help="scratch folder for compiled programs")
    ap.add_argument("--goldens", default=os.path.join(e2e_lib.REPO_TEST, "goldens"))
    ap.add_argument("--max-seq-len", type=int, default=128,
                    help="passed to the compiler; 0 = do not pass the flag")
    ap.add_argument("--rtol-f32", type=float, default=1e-4)
    ap.add_argument("--rtol-lowp", type=float, default=1e-2, help="tolerance for bf16 checkpoints")
    ap.add_argument("--quick", action="store_true", help="2 prompts per checkpoint, 2 prefixes")
    ap.add_argument("--near-tie-rel", type=float, default=e2e_lib.NEAR_TIE_REL,
                    help="greedy divergence allowed where the top-2 gap is below this * max|logit|")
    ap.add_argument("--compile-arg", action="append", default=[],
                    help="extra mixtral-compile argument (repeatable), e.g. --target=nvptx")
    args = ap.parse_args()
    args.compiler = os.path.abspath(args.compiler)
    args.workdir = os.path.abspath(args.workdir)
    os.makedirs(args.workdir, exist_ok=True)
    tally = e2e_lib.Tally("check_goldens")
    dirs = sorted(os.path.join(args.goldens, d) for d in os.listdir(args.goldens)
                  if os.path.exists(os.path.join(args.goldens, d, "goldens.json")))
    if not dirs:
        tally.report(False, "setup", f"no goldens under {args.goldens}")
    for d in dirs:
        check_checkpoint(args, tally, d)
    return tally.finish()


if __name__ == "__main__":
    sys.exit(main())
