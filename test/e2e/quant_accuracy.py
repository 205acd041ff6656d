#!/usr/bin/env python3
"""The accuracy table of issue 10: each weight format against the float64 reference on
unquantized random checkpoints, and q8 on the Hugging Face goldens. A benchmark, not a test.

  test/e2e/quant_accuracy.py --compiler build/bin/mixtral-compile --workdir build/quant-accuracy
                             [--seeds 3] [--prompts 4] [--steps 16] [--reuse]

For --seeds random float32 checkpoints (make_checkpoint.py; hidden = intermediate = 256, 4 layers,
8 experts top-2, 8/2 heads of 32, vocab 1024: every K a multiple of 32, and hidden ==
intermediate so that FP8's per-row groups have one size) the binary of each format is compiled:
  f32     the checkpoint as it is (the kernels' own error)
  bf16    the same weights rounded to bf16 by make_checkpoint (--dtype bf16)
  fp8     per-channel F8_E4M3 made from the f32 weights by make_fp8_checkpoint.py
  q8      mixtral-compile --quantize q8 (the kernels dequantise in registers; activations f32)
  q8 i8x  the same with --int8-activations (activations rounded to int8 per 32, integer dot
          products)
  q4      mixtral-compile --quantize q4 (its default: int8 activations, as q8 i8x)
  q4 f32x the same with --int8-activations=false (activations f32, as q8)
and run on --prompts random prompts. The reference is mixtral_ref.py in float64 on the f32
weights. Per prompt: the last prompt position's logits, scaled error max|ours - ref| /
max|ref| and KL(softmax(ref) || softmax(ours)); greedy agreement: how many of the first --steps
greedy ids equal the reference's (the prefix before the first difference). Printed as a
markdown table (means over all prompts, worst in brackets). Then every golden in test/goldens
is compiled with --quantize q8 (and --int8-activations) and its greedy ids compared with
Hugging Face's.
"""

import argparse
import json
import os
import subprocess
import sys

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "reference"))

import numpy as np  # noqa: E402

import make_checkpoint  # noqa: E402
import make_fp8_checkpoint  # noqa: E402
import mixtral_ref  # noqa: E402

GOLDENS = os.path.join(HERE, "..", "goldens")
SHAPE = dict(vocab=1024, hidden=256, intermediate=256, layers=4, heads=8, kv_heads=2, experts=8,
             top_k=2)
FORMATS = ["f32", "bf16", "fp8", "q8", "q8 i8x", "q4 f32x", "q4"]
BITS = {"f32": "32", "bf16": "16", "fp8": "8.125", "q8": "8.5", "q4": "4.5", "q8 i8x": "8.5",
        "q4 f32x": "4.5"}
FLAGS = {"q8": ["--quantize", "q8"], "q4": ["--quantize", "q4"],
         "q8 i8x": ["--quantize", "q8", "--int8-activations"],
         "q4 f32x": ["--quantize", "q4", "--int8-activations=false"]}
GOLDEN_FORMATS = ("q8", "q8 i8x")


def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()[-300:]}")
    return p.stdout


def build(compiler, work, seed, fmt, reuse=False):
    """The binary of `fmt` for checkpoint `seed` (the f32 checkpoint is made once; with
    `reuse`, a binary already in the workdir is run as it is)."""
    f32 = os.path.join(work, f"s{seed}-f32")
    if not os.path.exists(os.path.join(f32, "config.json")):
        make_checkpoint.make_checkpoint(f32, seed=seed, **SHAPE)
    model, flags = f32, []
    if fmt == "bf16":
        model = os.path.join(work, f"s{seed}-bf16")
        if not os.path.exists(os.path.join(model, "config.json")):
            make_checkpoint.make_checkpoint(model, seed=seed, dtype="bf16", **SHAPE)
    elif fmt == "fp8":
        model = os.path.join(work, f"s{seed}-fp8")
        if not os.path.exists(os.path.join(model, "config.json")):
            make_fp8_checkpoint.main([f32, model, "--scheme", "channel"])
    flags = FLAGS.get(fmt, [])
    exe = os.path.join(work, f"s{seed}-{fmt.replace(' ', '-')}.out")
    if not (reuse and os.path.exists(exe)):
        run([compiler, model, "-o", exe, "--max-seq-len", "64"] + flags)
    return exe


def softmax(x):
    e = np.exp(x - x.max())
    return e / e.sum()


def measure(exe, ref, prompt, steps, vocab, work):
    out = os.path.join(work, "steps.bin")
    ids = [int(t) for t in run([exe, "--prompt-ids", ",".join(map(str, prompt)), "-n",
                                str(steps), "--temperature", "0", "--print-ids", "--quiet",
                                "--logits-out", out]).split()]
    ours = np.fromfile(out, dtype="<f4").reshape(-1, vocab)[0].astype(np.float64)
    want_ids, rows = ref
    theirs = rows[0]
    err = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
    p, q = softmax(theirs), softmax(ours)
    kl = float(np.sum(p * (np.log(p) - np.log(q))))
    agree = 0
    while agree < min(len(ids), len(want_ids)) and ids[agree] == want_ids[agree]:
        agree += 1
    return err, kl, agree


def goldens(compiler, work):
    lines = []
    for name in sorted(os.listdir(GOLDENS)):
        d = os.path.join(GOLDENS, name)
        if not os.path.exists(os.path.join(d, "goldens.json")):
            continue
        cases = json.load(open(os.path.join(d, "goldens.json")))["cases"]
        eos = json.load(open(os.path.join(d, "config.json")))["eos_token_id"]
        cells = []
        for fmt in GOLDEN_FORMATS:
            exe = os.path.join(work, f"golden-{name}-{fmt.replace(' ', '-')}.out")
            try:
                run([compiler, d, "-o", exe, "--max-seq-len", "64"] + FLAGS[fmt])
            except RuntimeError as e:
                cells.append("does not compile: " + str(e).splitlines()[-1][-120:])
                continue
            same = 0
            for c in cases:
                got = [int(t) for t in run([exe, "--prompt-ids", ",".join(map(str, c["prompt_ids"])),
                                            "-n", str(len(c["greedy_ids"])), "--temperature", "0",
                                            "--print-ids", "--quiet"]).split()]
                want = c["greedy_ids"]
                # The binary stops at EOS where HF's generate() went on: the same ids up to it.
                same += got == want or (got[-1:] == [eos] and got == want[:len(got)])
            cells.append(f"{same}/{len(cases)} identical")
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compiler", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--steps", type=int, default=16)
    ap.add_argument("--reuse", action="store_true",
                    help="run the binaries a previous run left in --workdir (same compiler)")
    args = ap.parse_args()
    work = os.path.abspath(args.workdir)
    os.makedirs(work, exist_ok=True)
    results = {f: [] for f in FORMATS}
    for seed in range(1, args.seeds + 1):
        exes = {f: build(args.compiler, work, seed, f, args.reuse) for f in FORMATS}
        ref_model = mixtral_ref.load_model(os.path.join(work, f"s{seed}-f32"), np.float64)
        rng = np.random.default_rng(seed)
        for i in range(args.prompts):
            prompt = [1] + [int(t) for t in rng.integers(3, SHAPE["vocab"], size=4 + 6 * i)]
            ref = mixtral_ref.greedy_steps(ref_model, prompt, args.steps)
            for f in FORMATS:
                results[f].append(measure(exes[f], ref, prompt, args.steps, SHAPE["vocab"], work))
        print(f"seed {seed} done", file=sys.stderr, flush=True)
    n = args.seeds * args.prompts
    print(f"{args.seeds} random f32 checkpoints x {args.prompts} prompts ({n} cases); "
          f"reference: mixtral_ref.py in float64 on the f32 weights\n")
    print("| weights | bits/weight (experts, attention) | logits scaled error, mean [worst] "
          f"| KL(ref ‖ ours), mean [worst] | greedy agreement over {args.steps} steps, mean [worst] |")
    print("|---|---|---|---|---|")
    for f in FORMATS:
        e, k, a = (np.array(v) for v in zip(*results[f]))
        print(f"| {f} | {BITS[f]} | {e.mean():.2e} [{e.max():.2e}] | {k.mean():.2e} [{k.max():.2e}] "
              f"| {a.mean():.1f} [{a.min()}] |")
    print("\nOn the Hugging Face goldens (12 greedy ids per case against HF's):\n")
    print(f"| golden | {' | '.join(GOLDEN_FORMATS)} |")
    print("|---|" + "---|" * len(GOLDEN_FORMATS))
    for line in goldens(args.compiler, work):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
