"""Shared plumbing of the end-to-end drivers (check_goldens.py, check_reference.py).

The compiler CLI contract these drivers rely on:
  mixtral-compile MODEL_DIR -o OUT [--max-seq-len N]        -> executable OUT
  OUT --prompt-ids 1,415,2936 -n 16 --temperature 0 --print-ids
      prints the n generated ids (not the prompt), space-separated, on one stdout line
  OUT --prompt-ids 1,415,2936 -n 0 --logits-out FILE
      writes the last prompt position's logits: vocab_size little-endian float32
  OUT --prompt-ids 1,415,2936 -n N --temperature 0 --print-ids --logits-out FILE
      the ids as above, and FILE holds one row of vocab_size float32 per sampled token
      (row i is the logits token i was picked from: row 0 the last prompt position,
      row i > 0 the decode of token i-1), so decode is compared as numbers too

Error measure everywhere: rel_err(a, b) = max|a - b| / max|b|, with b the
expected logits (golden or reference), over the whole vocab row.
"""

import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_TEST = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO_TEST, "reference"))

COMPILE_TIMEOUT_S = 600
RUN_TIMEOUT_S = 300  # the interpreter on a busy machine: a 263-token GPU prefill took > 120 s
EOS_ID = 2
# Tolerances, from measured error with about 10x margin (table in test/e2e/README.md).
# CPU, f32 and bf16/f16-weight checkpoints alike (the weights widen exactly): rel_err per row.
CPU_RTOL = 1e-5
# A greedy divergence is forgiven only where the expected top-1 logit beats the
# program's pick by at most this fraction of max|logits|: a real tie, one that errors within
# CPU_RTOL on both logits can flip (2x CPU_RTOL); far below the goldens' margins (>= 9e-4).
NEAR_TIE_REL = 2 * CPU_RTOL
# The GPU target against its model (--gemm-bf16): the worst row, the median row, near-ties.
GPU_RTOL = 1e-2
GPU_RTOL_MEDIAN = 2e-3
GPU_NEAR_TIE_REL = 5e-3  # a flip needs a gap within the rows' error (worst measured 3.5e-3)


def resolve_tolerances(args):
    """Fills the drivers' unset tolerance flags: GPU values with --gemm-bf16, else CPU ones."""
    gpu = getattr(args, "gemm_bf16", False)
    for name in ("rtol_f32", "rtol_lowp"):
        if getattr(args, name) is None:
            setattr(args, name, GPU_RTOL if gpu else CPU_RTOL)
    if args.rtol_median is None and gpu:
        args.rtol_median = GPU_RTOL_MEDIAN
    if args.near_tie_rel is None:
        args.near_tie_rel = GPU_NEAR_TIE_REL if gpu else NEAR_TIE_REL


class CaseError(Exception):
    """A failure of the compiled program (bad exit, bad output) for one case."""


def rel_err(actual, expected):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        return float("inf")
    if not np.all(np.isfinite(actual)):
        return float("inf")
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-30))


def _run(cmd, timeout):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           text=True)
    except subprocess.TimeoutExpired:
        raise CaseError(f"timed out after {timeout}s: {' '.join(cmd)}")
    except OSError as e:
        raise CaseError(f"cannot run {cmd[0]}: {e}")
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
        raise CaseError(f"exit {p.returncode}: {' '.join(cmd)}\n    " + "\n    ".join(tail))
    return p.stdout


def compile_model(compiler, model_dir, out_path, max_seq_len, extra_args=()):
    cmd = [compiler, model_dir, "-o", out_path] + list(extra_args)
    if max_seq_len:
        cmd += ["--max-seq-len", str(max_seq_len)]
    _run(cmd, COMPILE_TIMEOUT_S)
    if not os.access(out_path, os.X_OK):
        raise CaseError(f"compiler wrote no executable {out_path}")


def ids_arg(ids):
    return ",".join(str(int(i)) for i in ids)


def run_logits(exe, prompt, vocab, out_file):
    if os.path.exists(out_file):
        os.remove(out_file)
    _run([exe, "--prompt-ids", ids_arg(prompt), "-n", "0", "--logits-out", out_file],
         RUN_TIMEOUT_S)
    if not os.path.exists(out_file):
        raise CaseError("--logits-out wrote no file")
    data = np.fromfile(out_file, dtype="<f4")
    if data.size != vocab:
        raise CaseError(f"--logits-out wrote {data.size} floats, expected vocab_size {vocab}")
    return data


def _ids_line(out):
    # The ids line is the last stdout line made only of integers.
    for line in reversed(out.strip().splitlines()):
        words = line.split()
        if words and all(w.lstrip("-").isdigit() for w in words):
            return [int(w) for w in words]
    raise CaseError(f"no line of ids on stdout: {out.strip()[-200:]!r}")


def run_greedy(exe, prompt, n):
    out = _run([exe, "--prompt-ids", ids_arg(prompt), "-n", str(n), "--temperature", "0",
                "--print-ids"], RUN_TIMEOUT_S)
    return _ids_line(out)


def run_greedy_steps(exe, prompt, n, vocab, out_file):
    """Greedy ids and the logits row of every step: (ids, rows [len(ids), vocab]).
    A decode that did not run (no ids) or a row count other than one per id fails."""
    if os.path.exists(out_file):
        os.remove(out_file)
    out = _run([exe, "--prompt-ids", ids_arg(prompt), "-n", str(n), "--temperature", "0",
                "--print-ids", "--logits-out", out_file], RUN_TIMEOUT_S)
    ids = _ids_line(out)
    if not os.path.exists(out_file):
        raise CaseError("--logits-out wrote no file")
    data = np.fromfile(out_file, dtype="<f4")
    if data.size != len(ids) * vocab:
        raise CaseError(f"--logits-out wrote {data.size} floats for {len(ids)} sampled ids, "
                        f"expected {len(ids)} rows of vocab_size {vocab}")
    return ids, data.reshape(len(ids), vocab)


def compare_steps(rows, got_ids, want_ids, expected):
    """rel_err of each step's row that shares want_ids' path: row i was computed after
    got_ids[:i], so it is comparable while got_ids[:i] == want_ids[:i] (every row up to and
    including the first divergence). expected: [>= len(want_ids), V]. Returns a list."""
    errs = []
    for i in range(min(len(rows), len(expected))):
        errs.append(rel_err(rows[i], expected[i]))
        if i >= len(want_ids) or got_ids[i] != want_ids[i]:
            break
    return errs


def gate(errs, rtol, rtol_median=None):
    """(ok, text) for per-row errors: the worst <= rtol and, if given, the median <=
    rtol_median (the GPU path: a bf16 rounding boundary falling differently moves a few rows,
    a path computing everything in bf16 moves them all)."""
    if not errs:
        return False, "no rows compared"
    worst, where = max((e, i) for i, e in enumerate(errs))
    median = float(np.median(errs))
    ok = worst <= rtol and (rtol_median is None or median <= rtol_median)
    text = f"worst {worst:.2e} (row {where} of {len(errs)}, tol {rtol:.0e})"
    if rtol_median is not None:
        text += f", median {median:.2e} (tol {rtol_median:.0e})"
    return ok, text


def compare_ids(got, want, step_logits=None, near_tie_rel=0.0):
    """Returns (ok, note). Greedy ids must be identical, with two allowances:
    * the program may stop right after emitting EOS (id 2), so `got` may be the
      prefix of `want` that ends at want's first EOS;
    * if step_logits ([n, V], the expected logits of each greedy step) is given,
      a divergence at a step whose expected top-1 and the program's pick differ
      by at most near_tie_rel * max|logits| is a near-tie: accepted, and the
      rest of the sequence is not compared (it continues from another prefix).
      The note of an accepted near-tie starts with "ids ok up to a near-tie" (Tally
      counts them).
    """
    if got == want:
        return True, "ids ok"
    if EOS_ID in want:
        cut = want.index(EOS_ID) + 1
        if got == want[:cut]:
            return True, "ids ok (stopped at EOS)"
    for step, (g, w) in enumerate(zip(got, want)):
        if g == w:
            continue
        if step_logits is not None and 0 <= g < step_logits.shape[1]:
            row = step_logits[step]
            gap = float(row[w] - row[g]) / float(np.max(np.abs(step_logits)))
            if gap <= near_tie_rel:
                return True, f"ids ok up to a near-tie at step {step} (gap {gap:.2g})"
        return False, f"ids differ at step {step}: got {got}, want {want}"
    return False, f"ids length {len(got)}, want {len(want)}: got {got}, want {want}"


class Tally:
    """Counts cases. With rtol_median (the GPU path) the median row is gated over every row of
    the run (rows_gate collects them), not per case: under the GPU step's numerics one bf16
    rounding that falls the other way early in a case moves all of its later rows to the
    level of bf16 noise (~3e-3 on these small models, as far as an all-f32 path), so one
    case's median cannot tell such a flip from a wrong path; a wrong path moves every case's
    rows, a flip a few cases' (test/e2e/README.md, Tolerances)."""

    def __init__(self, prefix, rtol_median=None):
        self.prefix = prefix
        self.passed = 0
        self.failed = 0
        self.near_ties = 0
        self.rtol_median = rtol_median
        self.rows = []

    def rows_gate(self, errs, rtol):
        """(ok, text) of one case's rows: the worst <= rtol (its median is printed and,
        with rtol_median, gated at finish() together with every other case's rows)."""
        self.rows += list(errs)
        ok, text = gate(errs, rtol)
        if errs and self.rtol_median is not None:
            text += f", median {float(np.median(errs)):.2e}"
        return ok, text

    def report(self, ok, name, detail):
        if "near-tie at step" in detail:
            self.near_ties += 1
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(f"{'PASS' if ok else 'FAIL'} {self.prefix} {name}: {detail}", flush=True)

    def finish(self):
        print(f"near-tie allowance used in {self.near_ties} case(s)", flush=True)
        if self.rtol_median is not None and self.rows:
            median = float(np.median(self.rows))
            self.report(median <= self.rtol_median, f"all {len(self.rows)} rows",
                        f"median {median:.2e} (tol {self.rtol_median:.0e}), worst "
                        f"{max(self.rows):.2e}")
        print(f"{self.passed} passed, {self.failed} failed", flush=True)
        return 0 if self.failed == 0 and self.passed > 0 else 1
