#!/usr/bin/env python3
"""GPU golden check (Python standard library only): run each compiled golden model on its
prompts and compare the last-prompt-position logits with Hugging Face's (expected.json from
prepare.sh), and the greedy continuation with HF's.

Tolerance: rel_err = max|got - hf| / max|hf| <= --rtol (default 3e-2): the tensor-core GEMMs
round activations to bf16, so agreement is bf16-level, not the CPU path's 1e-4. Greedy ids are
reported (a near-tie may legitimately flip under bf16 rounding); logits decide pass/fail.
Usage: check_goldens.py BUNDLE_DIR [--rtol R]
"""
import array, json, os, subprocess, sys, tempfile

bundle = sys.argv[1]
rtol = float(sys.argv[sys.argv.index("--rtol") + 1]) if "--rtol" in sys.argv else 3e-2
passed = failed = 0
worst = 0.0
for name in sorted(os.listdir(os.path.join(bundle, "goldens"))):
    d = os.path.join(bundle, "goldens", name)
    exp = json.load(open(os.path.join(d, "expected.json")))
    for case in exp["cases"]:
        ids = ",".join(map(str, case["prompt_ids"]))
        with tempfile.NamedTemporaryFile(suffix=".f32") as tmp:
            r = subprocess.run([os.path.join(d, "model.out"), "--model", d, "--prompt-ids", ids,
                                "-n", "0", "--logits-out", tmp.name, "--quiet"],
                               capture_output=True, text=True, timeout=120)
            if r.returncode != 0:
                print(f"FAIL {name}/{case['name']}: exit {r.returncode}: {r.stderr.strip()}")
                failed += 1
                continue
            got = array.array("f")
            got.frombytes(open(tmp.name, "rb").read())
        want = case["logits"]
        scale = max(abs(x) for x in want)
        err = max(abs(a - b) for a, b in zip(got, want)) / scale
        worst = max(worst, err)
        g = subprocess.run([os.path.join(d, "model.out"), "--model", d, "--prompt-ids", ids, "-n",
                            str(len(case["greedy_ids"])), "--temperature", "0", "--print-ids",
                            "--quiet"], capture_output=True, text=True, timeout=120)
        greedy = [int(x) for x in g.stdout.split()] if g.returncode == 0 else []
        same = sum(1 for a, b in zip(greedy, case["greedy_ids"]) if a == b)
        ok = len(got) == len(want) and err <= rtol
        passed += ok
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}/{case['name']} (prompt {len(case['prompt_ids'])}): "
              f"rel_err {err:.2e}, greedy {same}/{len(case['greedy_ids'])} equal to HF")
print(f"goldens: {passed} passed, {failed} failed (worst rel_err {worst:.2e}, rtol {rtol})")
sys.exit(1 if failed else 0)
