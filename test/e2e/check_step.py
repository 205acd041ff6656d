"""moec_step's logits against the numpy reference (test/reference/mixtral_ref.py).

Runs a step test binary (test/runtime/step_test.cpp, linked with a model compiled from
MODEL_DIR) with MOEC_STEP_DUMP set: its mixed schedule — several sequences of different
lengths, chunked prefills interleaved with other sequences' rows, shuffled rows and blocks —
writes the sequences' tokens and the logits of every (sequence, position) row. Each sequence
is then run alone through the reference's full forward, and every row is compared:
rel_err = max|got - want| / max|want| <= CPU_RTOL (as check_reference.py).

With --gemm-bf16 (a binary compiled for nvptx, run with MOEC_CUDA_DRIVER set to the PTX
interpreter) the reference rounds the GEMM operands to bf16 as the GPU step's tensor-core GEMMs
do, and the tolerance is e2e_lib.GPU_RTOL.

  python3 test/e2e/check_step.py --binary build/test/runtime/moec_step_tests_NAME --model DIR
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from e2e_lib import CPU_RTOL, GPU_RTOL, rel_err

import mixtral_ref


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--binary", required=True, help="a moec_step_tests_* binary")
    ap.add_argument("--model", required=True, help="the checkpoint it was compiled from")
    ap.add_argument("--gemm-bf16", action="store_true",
                    help="the GPU target's model: bf16 GEMM operands (default --rtol: GPU_RTOL)")
    ap.add_argument("--rtol", type=float)
    args = ap.parse_args(argv)
    if args.rtol is None:
        args.rtol = GPU_RTOL if args.gemm_bf16 else CPU_RTOL

    with tempfile.TemporaryDirectory(prefix="moec_step_") as tmp:
        env = dict(os.environ, MOEC_STEP_DUMP=tmp)
        run = subprocess.run([args.binary, "--gtest_filter=Step.RowsAreBitIdentical*"], env=env,
                             capture_output=True, text=True, timeout=300)
        if run.returncode != 0:
            print(run.stdout[-3000:], run.stderr[-3000:])
            print("FAIL: the step test binary failed")
            return 1
        with open(os.path.join(tmp, "step.json")) as f:
            meta = json.load(f)
        got = np.fromfile(os.path.join(tmp, "step_logits.f32"), dtype="<f4")

    vocab = meta["vocab_size"]
    seqs = meta["sequences"]
    rows = sum(len(s) for s in seqs)
    if got.size != rows * vocab:
        print(f"FAIL: {got.size} floats but {rows} rows of {vocab}")
        return 1
    got = got.reshape(rows, vocab)
    model = mixtral_ref.load_model(args.model)
    worst, failed, at = 0.0, 0, 0
    for s, tokens in enumerate(seqs):
        model.gemm_bf16_all = args.gemm_bf16  # every row of the step, lm_head too
        want = mixtral_ref.forward(model, tokens)  # [len, V], the sequence alone
        for p in range(len(tokens)):
            e = rel_err(got[at + p], want[p])
            worst = max(worst, e)
            if not e <= args.rtol:
                failed += 1
                if failed <= 5:
                    print(f"FAIL: sequence {s} (length {len(tokens)}) position {p}: "
                          f"rel_err {e:.2e} > {args.rtol:.0e}")
        at += len(tokens)
    print(f"{len(seqs)} sequences, {rows} rows (lengths {[len(t) for t in seqs]}): "
          f"worst rel_err {worst:.1e} (tol {args.rtol:.0e})")
    print(f"{rows - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
