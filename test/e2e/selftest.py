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
    logits[1, 7], logits[1, 8] = 5.0, 5.0 - 5e-4      # gap 5e-5 of max|logits| = 10
    check("near-tie divergence accepted",
          e2e_lib.compare_ids([5, 8, 0, 0], want, logits, e2e_lib.NEAR_TIE_REL)[0])
    logits[1, 8] = 4.0                                # gap 0.1: a real difference
    check("clear divergence rejected",
          not e2e_lib.compare_ids([5, 8, 0, 0], want, logits, e2e_lib.NEAR_TIE_REL)[0])

    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
