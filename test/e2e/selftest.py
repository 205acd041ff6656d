#!/usr/bin/env python3
"""Self-checks of the drivers' comparison logic (e2e_lib), no compiler needed.

Usage: python3 test/e2e/selftest.py   -- prints `N passed, M failed`, exit 1 on failure.
"""

import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

import numpy as np

import e2e_lib

passed, failed = 0, 0


def check(name, ok, detail=""):
    global passed, failed
    passed, failed = passed + bool(ok), failed + (not ok)
    print(f"{'PASS' if ok else 'FAIL'} e2e-selftest {name}{': ' + detail if detail else ''}")


def main():
    b = np.array([1.0, -4.0, 2.0])
    check("rel_err is max|a-b| / max|b|", abs(e2e_lib.rel_err(b + [0, 0.4, 0], b) - 0.1) < 1e-12)
    check("rel_err of NaN is inf", e2e_lib.rel_err([np.nan, 0, 0], b) == float("inf"))
    check("rel_err of wrong shape is inf", e2e_lib.rel_err([1.0, 2.0], b) == float("inf"))

    want = [5, 7, 2, 9]
    check("equal ids", e2e_lib.compare_ids([5, 7, 2, 9], want)[0])
    check("stop right after EOS accepted", e2e_lib.compare_ids([5, 7, 2], want)[0])
    check("stop before EOS rejected", not e2e_lib.compare_ids([5, 7], want)[0])
    check("longer output rejected", not e2e_lib.compare_ids([5, 7, 2, 9, 1], want)[0])
    check("different id rejected", not e2e_lib.compare_ids([5, 8, 2, 9], want)[0])

    logits = np.zeros((4, 10))
    logits[0, 5] = 10.0
    logits[1, 7], logits[1, 8] = 5.0, 5.0 - 1e-4      # gap 1e-5 of max|logits| = 10
    check("near-tie divergence accepted",
          e2e_lib.compare_ids([5, 8, 0, 0], want, logits, e2e_lib.NEAR_TIE_REL)[0])
    logits[1, 8] = 4.0                                # gap 0.1: a real difference
    check("clear divergence rejected",
          not e2e_lib.compare_ids([5, 8, 0, 0], want, logits, e2e_lib.NEAR_TIE_REL)[0])

    rows = np.ones((4, 10))
    expected = np.ones((4, 10))
    rows[3] += 1.0                                    # after the divergence: not compared
    check("steps compared up to and including the first divergence",
          len(e2e_lib.compare_steps(rows, [5, 8, 1, 1], want, expected)) == 2)
    rows[1, 0] = np.nan
    errs = e2e_lib.compare_steps(rows, want, want, expected)
    check("a NaN step fails the gate", not e2e_lib.gate(errs, 1e-5)[0], repr(errs))
    check("no rows fail the gate", not e2e_lib.gate([], 1e-5)[0])
    few = [1e-7] * 9 + [4e-3]                         # one bf16 boundary falling differently
    check("GPU gate: a few boundary rows pass",
          e2e_lib.gate(few, e2e_lib.GPU_RTOL, e2e_lib.GPU_RTOL_MEDIAN)[0])
    check("GPU gate: every row 1.2e-2 off (all-bf16) fails",
          not e2e_lib.gate([1.2e-2] * 10, e2e_lib.GPU_RTOL, e2e_lib.GPU_RTOL_MEDIAN)[0])
    check("GPU gate: every row 3e-3 off fails (median)",
          not e2e_lib.gate([3e-3] * 10, e2e_lib.GPU_RTOL, e2e_lib.GPU_RTOL_MEDIAN)[0])

    def suite(cases):  # the drivers' GPU gate: worst per case, median over all cases' rows
        import contextlib, io
        t = e2e_lib.Tally("selftest-suite", e2e_lib.GPU_RTOL_MEDIAN)
        with contextlib.redirect_stdout(io.StringIO()):
            for errs in cases:
                t.report(t.rows_gate(errs, e2e_lib.GPU_RTOL)[0], "case", "")
            return t.finish() == 0
    check("GPU suite gate: one case moved by a boundary flip (3.2e-3 on every row) passes",
          suite([[3.2e-3] * 12] + [[1e-7] * 12] * 3))
    check("GPU suite gate: every case 3e-3 off (all-f32) fails", not suite([[3e-3] * 12] * 4))
    check("GPU suite gate: one row over 1e-2 fails its case", not suite([[1e-7] * 11 + [1.1e-2]]))

    # The GPU gate on real data: the target's model (bf16 operands in every GEMM) of each bf16 golden
    # against HF computing everything in bf16 (p<i>_hf_bf16) and HF's f32 logits: both must
    # fail, so neither an all-bf16 nor an all-f32 GPU path would pass.
    import json, os, mixtral_ref
    goldens = os.path.join(e2e_lib.REPO_TEST, "goldens")
    for name in ("mixtral_e4k2_bf16", "mixtral_e5k3_mha_swa8_bf16"):
        d = os.path.join(goldens, name)
        case = json.load(open(os.path.join(d, "goldens.json")))["cases"][1]
        arrays = np.load(os.path.join(d, "logits.npz"))
        model = mixtral_ref.load_model(d)
        seq = case["prompt_ids"] + case["greedy_ids"][:-1]
        model.gemm_bf16_all = True
        want = mixtral_ref.forward(model, seq)
        for what, got in (("all-bf16", arrays["p1_hf_bf16"]), ("all-f32", arrays["p1"])):
            errs = [e2e_lib.rel_err(g, w) for g, w in zip(got, want)]
            ok, text = e2e_lib.gate(errs, e2e_lib.GPU_RTOL, e2e_lib.GPU_RTOL_MEDIAN)
            check(f"GPU gate rejects an {what} path ({name}/p1)", not ok, text)

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
