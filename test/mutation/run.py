#!/usr/bin/env python3
"""Mutation check: do the tests catch deliberate bugs? (Not part of the default test command.)

Copies the working tree (tracked and untracked-but-not-ignored files) into a scratch tree,
builds it there, and for each mutation below: applies the small source edit, rebuilds only
what its catching tests need, runs those tests, and restores the file. A mutation is caught
when a catching test fails (its build must succeed: a mutation that does not compile says
nothing). First every catching test runs once on the unmutated copy and must pass, so a
"caught" means the bug, not a broken test. Prints a table; exit 1 if any mutation survives.

Usage: test/mutation/run.py [--tree DIR] [--only NAME] [--list]
  --tree  scratch copy (default build/mutation/tree; kept between runs, so rebuilds are
          incremental; set CCACHE_BASEDIR=/work or any parent of both trees to share ccache)
Runtime on 2 busy cores: the first run builds the copy (ccache makes it mostly hits), then
each mutation costs one recompile of the mutated file, a relink and its tests.
"""

import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
LIT = "/usr/lib/llvm-22/bin/lit"
LOWER = "codegen/cpu/moe-lower-to-linalg.cpp"

# Catching tests: name -> (build targets, command run in the copy's root).
TESTS = {
    "lit cpu-kernels-numeric": (["moe-opt"], [LIT, "-q", "build/test/Codegen/cpu-kernels-numeric.mlir"]),
    "e2e-reference base_e4k2_gqa2": (
        ["mixtral-compile", "moec_runtime_artifacts"],
        [sys.executable, "test/e2e/check_reference.py", "--compiler", "build/bin/mixtral-compile",
         "--workdir", "build/mutation-e2e/reference", "--only", "base_e4k2_gqa2"]),
    "e2e-goldens mixtral_e3k1_gqa4_swa8_f32": (
        ["mixtral-compile", "moec_runtime_artifacts"],
        [sys.executable, "test/e2e/check_goldens.py", "--compiler", "build/bin/mixtral-compile",
         "--workdir", "build/mutation-e2e/goldens", "--only", "mixtral_e3k1_gqa4_swa8_f32"]),
    "gtest Sampler.*": (["moec_runtime_tests"],
                        ["build/test/runtime/moec_runtime_tests", "--gtest_filter=Sampler.*"]),
    "gtest KvLayout.*": (["moec_kv_layout_tests"],
                         ["build/test/runtime/moec_kv_layout_tests"]),
}

# name -> (file, exact text, replacement, catching tests). Each text must occur exactly once.
MUTATIONS = [
    ("RMSNorm epsilon dropped", LOWER,
     "math::SqrtOp::create(nb, l, arith::AddFOp::create(nb, l, mean, eps))",
     "math::SqrtOp::create(nb, l, mean)",
     ["lit cpu-kernels-numeric", "e2e-reference base_e4k2_gqa2"]),
    ("router softmax not renormalised over the top k", LOWER,
     "b, l, c0, cK, c1, ValueRange{zero},\n"
     "            [&](OpBuilder &b, Location l, Value s, ValueRange it) {\n"
     "              Value v = tensor::ExtractOp::create(b, l, chosen, ValueRange{t, s});",
     "b, l, c0, cE, c1, ValueRange{zero},\n"
     "            [&](OpBuilder &b, Location l, Value s, ValueRange it) {\n"
     "              Value v = tensor::ExtractOp::create(b, l, logits, ValueRange{t, s});",
     ["lit cpu-kernels-numeric", "e2e-reference base_e4k2_gqa2"]),
    ("RoPE rotation sign flipped", LOWER,
     "firstHalf, arith::SubFOp::create(b, l, xc, os),\n"
     "                                          arith::AddFOp::create(b, l, xc, os))",
     "firstHalf, arith::AddFOp::create(b, l, xc, os),\n"
     "                                          arith::SubFOp::create(b, l, xc, os))",
     ["lit cpu-kernels-numeric", "e2e-reference base_e4k2_gqa2"]),
    ("KV slot layout: decode swaps the K and V slots", "models/lib/Mixtral.cpp",
     "index(which * whichStride)",
     "index((ShapedType::isDynamic(T) ? which : 1 - which) * whichStride)",
     ["e2e-reference base_e4k2_gqa2", "gtest KvLayout.*"]),
    ("sampler ignores the temperature", "runtime/src/sampler.cpp",
     "max_logit) /\n                        static_cast<double>(options_.temperature));",
     "max_logit));",
     ["gtest Sampler.*"]),
    ("SwiGLU gate and up swapped", LOWER,
     "return swigluScalar(nb, l, a[0], a[1], elementType);",
     "return swigluScalar(nb, l, a[1], a[0], elementType);",
     ["lit cpu-kernels-numeric", "e2e-reference base_e4k2_gqa2"]),
    ("sliding window one key wider", LOWER,
     "arith::CmpIPredicate::sgt, ji, lowest)",
     "arith::CmpIPredicate::sge, ji, lowest)",
     ["lit cpu-kernels-numeric", "e2e-goldens mixtral_e3k1_gqa4_swa8_f32"]),
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def sync_tree(tree):
    """Copies tracked + untracked-not-ignored files; unchanged files keep their mtime."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, check=True, stdout=subprocess.PIPE).stdout.split(b"\0")
    copied = 0
    for f in filter(None, (x.decode() for x in files)):
        src, dst = os.path.join(ROOT, f), os.path.join(tree, f)
        if not os.path.isfile(src) or os.path.islink(src):
            continue
        with open(src, "rb") as a:
            data = a.read()
        if os.path.exists(dst):
            with open(dst, "rb") as b:
                if b.read() == data:
                    continue
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
        copied += 1
    venv = os.path.join(tree, ".venv")
    if os.path.isdir(os.path.join(ROOT, ".venv")) and not os.path.exists(venv):
        os.symlink(os.path.realpath(os.path.join(ROOT, ".venv")), venv)
    log(f"[mutation] {copied} files copied into {tree}")


def configure(tree):
    if os.path.exists(os.path.join(tree, "build", "build.ninja")):
        return
    cache = os.path.join(ROOT, "build", "CMakeCache.txt")
    tok = ""
    if os.path.exists(cache):
        for line in open(cache):
            if line.startswith("MOEC_TOKENIZER_MODEL"):
                tok = line.split("=", 1)[1].strip()
    llvm = "/usr/lib/llvm-22"
    subprocess.run(["cmake", "-S", tree, "-B", os.path.join(tree, "build"), "-G", "Ninja",
                    "-DCMAKE_BUILD_TYPE=Release", f"-DCMAKE_C_COMPILER={llvm}/bin/clang",
                    f"-DCMAKE_CXX_COMPILER={llvm}/bin/clang++", "-DLLVM_USE_LINKER=lld",
                    f"-DMLIR_DIR={llvm}/lib/cmake/mlir", f"-DMOEC_TOKENIZER_MODEL={tok}"],
                   check=True, stdout=subprocess.DEVNULL)


def build(tree, targets):
    p = subprocess.run(["ninja", "-C", "build"] + sorted(set(targets)), cwd=tree,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return p.returncode == 0, p.stdout[-2000:]


def run_test(tree, name):
    cmd = TESTS[name][1]
    t0 = time.time()
    try:
        p = subprocess.run(cmd, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=900)
        rc, out = p.returncode, p.stdout
    except subprocess.TimeoutExpired:
        rc, out = 124, "timed out"
    lines = [l for l in out.splitlines() if l.startswith(("FAIL", "[  FAILED", "error"))]
    return rc, (lines[0] if lines else out.strip().splitlines()[-1] if out.strip() else ""), time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", default=os.path.join(ROOT, "build", "mutation", "tree"))
    ap.add_argument("--only", help="run only the mutation whose name contains this")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    mutations = [m for m in MUTATIONS if not args.only or args.only in m[0]]
    if args.list:
        for m in mutations:
            print(f"{m[0]}: {m[1]} -> {', '.join(m[4])}")
        return 0
    tree = os.path.abspath(args.tree)
    os.makedirs(tree, exist_ok=True)
    sync_tree(tree)
    configure(tree)
    tests = sorted({t for m in mutations for t in m[4]})
    ok, out = build(tree, [x for t in tests for x in TESTS[t][0]])
    if not ok:
        log(out)
        log("[mutation] the unmutated copy does not build")
        return 1
    for t in tests:  # baseline: every catching test passes without a mutation
        rc, line, secs = run_test(tree, t)
        log(f"[mutation] baseline {t}: exit {rc} ({secs:.0f} s)")
        if rc != 0:
            log(f"[mutation] baseline fails, so nothing can be concluded: {line}")
            return 1
    rows, survived = [], 0
    for name, path, old, new, catchers in mutations:
        file = os.path.join(tree, path)
        with open(file) as f:
            original = f.read()
        if original.count(old) != 1:
            rows.append((name, path, "-", f"NOT APPLIED: text found {original.count(old)} times"))
            survived += 1
            continue
        with open(file, "w") as f:
            f.write(original.replace(old, new))
        try:
            ok, out = build(tree, [x for t in catchers for x in TESTS[t][0]])
            if not ok:
                log(out)
                rows.append((name, path, "-", "NOT BUILT (the mutation does not compile)"))
                survived += 1
                continue
            results = []
            for t in catchers:
                rc, line, secs = run_test(tree, t)
                log(f"[mutation] {name}: {t}: exit {rc} ({secs:.0f} s) {line}")
                results.append((t, rc, line))
            caught = [t for t, rc, _ in results if rc != 0]
            survived += not caught
            rows.append((name, path, ", ".join(caught) or "-",
                         "caught" if caught else "SURVIVED",
                         "; ".join(f"{t}: {'FAIL' if rc else 'pass'}" for t, rc, _ in results),
                         next((l for _, rc, l in results if rc), "")))
        finally:
            with open(file, "w") as f:
                f.write(original)
    print("| mutation | file | result | caught by | every catching test | first failure |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        r = tuple(r) + ("",) * (6 - len(r))
        print(f"| {r[0]} | `{r[1]}` | {r[3]} | {r[2]} | {r[4]} | {r[5][:140].replace('|', '/')} |")
    print(f"{len(rows) - survived} of {len(rows)} mutations caught")
    build(tree, [x for t in tests for x in TESTS[t][0]])  # leave the copy unmutated and built
    return 0 if survived == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
