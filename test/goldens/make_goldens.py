#!/usr/bin/env python3
"""Builds tiny random Mixtral checkpoints with Hugging Face transformers and
records their logits and greedy continuations as goldens.

Needs torch + transformers 4.x (tested: torch 2.15.0, transformers 4.57.6);
not needed by the test suite, which only reads what this writes. Run:

    /work/venv-hf/bin/python test/goldens/make_goldens.py [--out test/goldens] [--check]

For each config in CONFIGS it writes test/goldens/<name>/ with
  config.json, model.safetensors   -- MixtralForCausalLM.save_pretrained(safe_serialization=True)
  goldens.json                      -- prompts, greedy ids, provenance
  logits.npz                        -- p<i>: float32 [len(prompt) + n_new - 1, vocab], the
                                       logits of every position of prompt + greedy[:-1]
                                       from one full (no-cache) forward in float32
                                    p<i>_steps: float32 [n_new, vocab], HF's per-step logits
                                       along the greedy path from generate() with its KV
                                       cache (row i: the logits token i was picked from)
  (bf16 checkpoints also) p<i>_hf_bf16 in logits.npz: the same forward with the
                                       model in bfloat16 (informational, labelled)

Weights: HF's own init would give near-zero activations and near-tied router
logits, so every parameter is overwritten from a seeded torch generator:
embeddings N(0,1), norms 1 + 0.1 N(0,1), linear N(0,1)/sqrt(fan_in), router
3 N(0,1)/sqrt(fan_in). bf16 checkpoints are saved after model.to(bfloat16);
their float32 goldens come from reloading the saved file with
torch_dtype=float32 (the bf16 values widen exactly), which is what the
compiler computes.

Greedy ids: a manual argmax loop, one full no-cache forward per step, never
stopping at EOS. As a check the same continuation is also produced with the KV
cache (model.generate, do_sample=False, eos disabled) and must agree.

--check additionally runs test/reference/mixtral_ref.py on every checkpoint
and prints max|ref - hf| / max|hf| per prompt (the numbers in README.md).
"""

import argparse
import json
import os
import struct
import sys

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

import numpy as np
import torch
import transformers
from transformers import MixtralConfig, MixtralForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))

BASE = dict(vocab_size=512, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, num_local_experts=4,
            num_experts_per_tok=2, rope_theta=1e6, max_position_embeddings=256,
            sliding_window=None, rms_norm_eps=1e-5, tie_word_embeddings=False)

# name -> (config overrides, stored dtype, seed)
CONFIGS = {
    # E=4 top-2, GQA 2, no sliding window, float32 weights.
    "mixtral_e4k2_f32": ({}, torch.float32, 1),
    # Same shape, different weights, stored as bfloat16.
    "mixtral_e4k2_bf16": ({}, torch.bfloat16, 2),
    # E=3 top-1, GQA 4 (8 heads / 2 KV heads, head_dim 12), sliding window 8, theta 1e4.
    "mixtral_e3k1_gqa4_swa8_f32": (dict(vocab_size=384, hidden_size=96, intermediate_size=80,
                                        num_attention_heads=8, num_key_value_heads=2,
                                        num_local_experts=3, num_experts_per_tok=1,
                                        sliding_window=8, rope_theta=1e4), torch.float32, 3),
    # E=5 top-3, no GQA (4/4 heads), sliding window 8, 4 layers, bfloat16.
    "mixtral_e5k3_mha_swa8_bf16": (dict(vocab_size=320, hidden_size=48, intermediate_size=72,
                                        num_hidden_layers=4, num_attention_heads=4,
                                        num_key_value_heads=4, num_local_experts=5,
                                        num_experts_per_tok=3, sliding_window=8),
                                   torch.bfloat16, 4),
}

PROMPT_LENGTHS = [1, 7, 20, 40]   # 40 > sliding window 8
N_NEW = 12


def init_weights(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("embed_tokens.weight"):
                v = torch.randn(p.shape, generator=g)
            elif "norm" in name:
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
            elif name.endswith("block_sparse_moe.gate.weight"):
                v = 3.0 * torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5
            elif p.dim() == 2:
                v = torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5
            else:
                raise ValueError(f"unexpected parameter {name}")
            p.copy_(v.to(p.dtype))


def expected_names(cfg):
    names = ["model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"]
    for n in range(cfg.num_hidden_layers):
        p = f"model.layers.{n}."
        names += [p + "input_layernorm.weight", p + "post_attention_layernorm.weight",
                  p + "block_sparse_moe.gate.weight"]
        names += [p + f"self_attn.{x}_proj.weight" for x in "qkvo"]
        names += [p + f"block_sparse_moe.experts.{e}.{w}.weight"
                  for e in range(cfg.num_local_experts) for w in ("w1", "w2", "w3")]
    return set(names)


def header_of(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def make_prompts(vocab, seed):
    g = np.random.default_rng(seed)
    # bos (1) then random ids above the special ones.
    return [[1] + [int(t) for t in g.integers(3, vocab, size=n - 1)] for n in PROMPT_LENGTHS]


def full_logits(model, ids):
    with torch.no_grad():
        out = model(torch.tensor([ids]), use_cache=False)
    return out.logits[0].float().numpy()


def greedy_no_cache(model, prompt, n):
    seq = list(prompt)
    for _ in range(n):
        seq.append(int(np.argmax(full_logits(model, seq)[-1])))
    return seq[len(prompt):]


def greedy_generate(model, prompt, n):
    """HF's own decode loop with its KV cache: (ids, step logits [n, V]); row i is the
    logits token i was picked from (row 0 from the prefill, the rest from cached decodes)."""
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=n,
                             eos_token_id=None, pad_token_id=0, temperature=None, top_p=None,
                             top_k=None, use_cache=True, return_dict_in_generate=True,
                             output_logits=True)
    steps = torch.cat([l.float() for l in out.logits], dim=0).numpy()
    return [int(t) for t in out.sequences[0, len(prompt):]], steps


def build(name, out_root):
    overrides, dtype, seed = CONFIGS[name]
    cfg = MixtralConfig(**{**BASE, **overrides}, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    model = MixtralForCausalLM(cfg).eval()
    init_weights(model, seed)
    out_dir = os.path.join(out_root, name)
    os.makedirs(out_dir, exist_ok=True)
    model.to(dtype).save_pretrained(out_dir, safe_serialization=True)
    for junk in ("generation_config.json",):
        if os.path.exists(os.path.join(out_dir, junk)):
            os.remove(os.path.join(out_dir, junk))

    # On-disk layout must be the classic one (no fused / renamed experts).
    header = header_of(os.path.join(out_dir, "model.safetensors"))
    on_disk = set(header) - {"__metadata__"}
    if on_disk != expected_names(cfg):
        raise SystemExit(f"{name}: unexpected tensor names on disk: "
                         f"{sorted(on_disk ^ expected_names(cfg))[:8]}")
    disk_dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}

    # Goldens from the saved file, reloaded in float32.
    m32 = MixtralForCausalLM.from_pretrained(out_dir, torch_dtype=torch.float32,
                                             attn_implementation="eager").eval()
    m_sdpa = MixtralForCausalLM.from_pretrained(out_dir, torch_dtype=torch.float32,
                                                attn_implementation="sdpa").eval()
    m16 = None
    if dtype == torch.bfloat16:
        m16 = MixtralForCausalLM.from_pretrained(out_dir, torch_dtype=torch.bfloat16,
                                                 attn_implementation="eager").eval()
    prompts = make_prompts(cfg.vocab_size, 100 + seed)
    arrays, cases = {}, []
    for i, prompt in enumerate(prompts):
        ids = greedy_no_cache(m32, prompt, N_NEW)
        ids_cache, cached_steps = greedy_generate(m32, prompt, N_NEW)
        if ids != ids_cache:
            raise SystemExit(f"{name} p{i}: no-cache greedy {ids} != generate() {ids_cache}")
        seq = prompt + ids[:-1]
        logits = full_logits(m32, seq)
        cache_err = float(np.max(np.abs(cached_steps - logits[len(prompt) - 1:]))
                          / np.max(np.abs(logits)))
        sdpa_err = float(np.max(np.abs(full_logits(m_sdpa, seq) - logits)) / np.max(np.abs(logits)))
        # Smallest top-1 minus top-2 gap over the greedy steps, relative to max |logit|.
        steps = np.sort(logits[len(prompt) - 1:], axis=-1)
        margin = float(np.min(steps[:, -1] - steps[:, -2]) / np.max(np.abs(logits)))
        arrays[f"p{i}"] = logits.astype(np.float32)
        arrays[f"p{i}_steps"] = cached_steps.astype(np.float32)
        case = {"name": f"p{i}", "prompt_ids": prompt, "greedy_ids": ids,
                "min_greedy_margin_rel": margin, "sdpa_vs_eager_rel_err": sdpa_err,
                "kv_cache_vs_full_forward_rel_err": cache_err}
        if m16 is not None:
            arrays[f"p{i}_hf_bf16"] = full_logits(m16, seq).astype(np.float32)
            case["hf_bf16_greedy_ids"] = greedy_no_cache(m16, prompt, N_NEW)
        cases.append(case)
        print(f"{name} p{i}: T={len(prompt)} ids={ids} margin={margin:.3g} sdpa_err={sdpa_err:.2g} "
              f"kv_cache_vs_full={cache_err:.2g}")
    np.savez(os.path.join(out_dir, "logits.npz"), **arrays)
    meta = {
        "checkpoint_dtype": {torch.float32: "f32", torch.bfloat16: "bf16"}[dtype],
        "on_disk_dtypes": sorted(disk_dtypes),
        "compute_dtype": "float32",
        "attn_implementation": "eager",
        "greedy": "manual argmax loop, full no-cache forward per step, no EOS stop; "
                  "equal to model.generate(do_sample=False) with KV cache",
        "steps": "logits.npz[p<i>_steps]: float32 [len(greedy_ids), vocab], the logits of each "
                 "greedy step from model.generate(do_sample=False, use_cache=True, "
                 "output_logits=True): row 0 the prefill's last position, row i the cached "
                 "decode of greedy_ids[i-1]",
        "logits": "logits.npz[p<i>]: float32 [len(prompt_ids) + len(greedy_ids) - 1, vocab] "
                  "for the sequence prompt_ids + greedy_ids[:-1]; row len(prompt_ids)-1 is the "
                  "last prompt position",
        "hf_bf16": "logits.npz[p<i>_hf_bf16] and hf_bf16_greedy_ids: same, model in bfloat16 "
                   "(informational; not what the compiler computes)" if m16 is not None else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "seed": seed,
        "cases": cases,
    }
    with open(os.path.join(out_dir, "goldens.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    return out_dir


def check_against_reference(out_dir):
    sys.path.insert(0, os.path.join(HERE, "..", "reference"))
    import mixtral_ref
    with open(os.path.join(out_dir, "goldens.json")) as f:
        meta = json.load(f)
    arrays = np.load(os.path.join(out_dir, "logits.npz"))
    worst = {}
    for precision in (np.float32, np.float64):
        model = mixtral_ref.load_model(out_dir, precision)
        for case in meta["cases"]:
            gold = arrays[case["name"]]
            seq = case["prompt_ids"] + case["greedy_ids"][:-1]
            ref = mixtral_ref.forward(model, seq)
            err = float(np.max(np.abs(ref - gold)) / np.max(np.abs(gold)))
            ref_ids, ref_steps = mixtral_ref.greedy_steps(model, case["prompt_ids"], N_NEW)
            ids_ok = ref_ids == case["greedy_ids"]
            steps = arrays[case["name"] + "_steps"]
            err = max(err, float(np.max(np.abs(ref_steps - steps)) / np.max(np.abs(steps))))
            key = np.dtype(precision).name
            worst[key] = max(worst.get(key, 0.0), err)
            print(f"  ref[{key}] {case['name']}: rel err {err:.3g}  greedy {'ok' if ids_ok else 'DIFFER'}")
            if "hf_bf16_greedy_ids" in case and precision is np.float32:
                e16 = float(np.max(np.abs(ref - arrays[case['name'] + '_hf_bf16'])) / np.max(np.abs(ref)))
                worst["hf_bf16"] = max(worst.get("hf_bf16", 0.0), e16)
                same = case["hf_bf16_greedy_ids"] == case["greedy_ids"]
                print(f"  ref[float32] vs HF-in-bf16 {case['name']}: rel err {e16:.3g}  "
                      f"greedy {'same' if same else 'differs'}")
    # Sensitivity: a reference with the sliding window off by one must disagree.
    if meta.get("cases") and json.load(open(os.path.join(out_dir, "config.json"))).get("sliding_window"):
        model = mixtral_ref.load_model(out_dir, np.float32)
        w = model.sliding_window
        for alt in (w - 1, w + 1):
            model.sliding_window = alt
            case = meta["cases"][-1]
            seq = case["prompt_ids"] + case["greedy_ids"][:-1]
            gold = arrays[case["name"]]
            err = float(np.max(np.abs(mixtral_ref.forward(model, seq) - gold)) / np.max(np.abs(gold)))
            print(f"  sensitivity: reference with sliding_window {alt} (not {w}): rel err {err:.3g}")
    print("  worst: " + ", ".join(f"{k} {v:.3g}" for k, v in worst.items()))
    return worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=HERE)
    ap.add_argument("--check", action="store_true", help="compare with the numpy reference")
    ap.add_argument("--only", help="build only this config")
    args = ap.parse_args()
    torch.set_num_threads(1)   # reproducible reductions
    for name in CONFIGS:
        if args.only and name != args.only:
            continue
        out_dir = build(name, args.out)
        if args.check:
            check_against_reference(out_dir)


if __name__ == "__main__":
    main()
