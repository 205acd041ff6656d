#!/usr/bin/env python3
"""Writes a random Mixtral checkpoint in Hugging Face layout, for tests.

The folder gets config.json (every field of the released Mixtral config, with
architectures MixtralForCausalLM, bos 1, eos 2) and either model.safetensors
or N shards model-0000i-of-0000N.safetensors plus model.safetensors.index.json.
Tensor names and [out, in] layouts are those of shared/notes/mixtral.md.

Weights are deterministic from --seed (numpy PCG64) and scaled so activations
stay O(1): linear weights ~ N(0, 1/fan_in), embeddings ~ N(0, 1), norm weights
1 + 0.1 N(0, 1). Router weights get --router-scale (default 3) times that, so
router logits have a spread of a few units and near-ties between the k-th and
(k+1)-th expert are rare (f32 vs f32 comparisons then do not flip experts).
--router-tie A,B copies router row A onto row B in every layer to make exact
ties on purpose (the lower index must win).

The safetensors writer is hand-written (8-byte LE header length, JSON header
padded with spaces to 8 bytes, raw little-endian data); BF16 is rounded from
float32 to nearest-even by bit arithmetic, F16 by numpy. Only numpy is needed.

Usage:
  python3 make_checkpoint.py OUT_DIR --vocab 512 --hidden 64 --intermediate 96 \
      --layers 3 --heads 4 --kv-heads 2 --experts 4 --top-k 2 [--dtype bf16] \
      [--sliding-window 8] [--shards 3] [--seed 0]
"""

import argparse
import json
import os
import struct
import sys

import numpy as np

DTYPES = {"f32": ("F32", "float32"), "bf16": ("BF16", "bfloat16"), "f16": ("F16", "float16")}


def to_bytes(arr, dtype):
    """Raw little-endian bytes of a float32 array stored as dtype (f32/bf16/f16)."""
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if dtype == "f32":
        return arr.astype("<f4").tobytes()
    if dtype == "f16":
        return arr.astype("<f2").tobytes()
    if dtype == "bf16":
        # Round to nearest even in uint32: a finite float's bits + 0x8000 stay below 2**32.
        bits = arr.view(np.uint32)
        rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16
        return rounded.astype("<u2").tobytes()
    raise ValueError(dtype)


ELEMENT_BYTES = {"f32": 4, "bf16": 2, "f16": 2}


def write_safetensors(path, specs, dtype):
    """specs: list of (name, shape, make) in file order, make() yielding the tensor's float32
    values as row blocks. The header comes from the shapes, then each tensor is drawn and
    written a block at a time, so memory stays at one block whatever the checkpoint's size."""
    header = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape, _ in specs:
        size = int(np.prod(shape)) * ELEMENT_BYTES[dtype]
        header[name] = {"dtype": DTYPES[dtype][0], "shape": list(shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name, shape, make in specs:
            written = 0
            for block in make():
                blob = to_bytes(block, dtype)
                f.write(blob)
                written += len(blob)
            assert written == header[name]["data_offsets"][1] - header[name]["data_offsets"][0]
    return offset


def make_config(vocab, hidden, intermediate, layers, heads, kv_heads, experts, top_k,
                sliding_window, rope_theta, max_pos, dtype, tie_embeddings, rms_norm_eps):
    return {
        "architectures": ["MixtralForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": intermediate,
        "max_position_embeddings": max_pos,
        "model_type": "mixtral",
        "num_attention_heads": heads,
        "num_experts_per_tok": top_k,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "num_local_experts": experts,
        "output_router_logits": False,
        "rms_norm_eps": rms_norm_eps,
        "rope_theta": rope_theta,
        "router_aux_loss_coef": 0.02,
        "sliding_window": sliding_window,
        "tie_word_embeddings": tie_embeddings,
        "torch_dtype": DTYPES[dtype][1],
        "transformers_version": "4.36.0",
        "use_cache": True,
        "vocab_size": vocab,
    }


# Values drawn per block of rows: ~32 MB of float64 normals, whatever the tensor's size.
BLOCK_VALUES = 1 << 22


def tensor_specs(cfg, seed, router_scale=3.0, router_tie=None):
    """List of (name, shape, make) in a fixed order; calling each make() in list order draws
    the values (float32 row blocks) from one generator, deterministic from seed. Blocks
    consume the generator exactly as one whole-tensor draw would (same values)."""
    rng = np.random.default_rng(seed)
    D, F, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    H, KVH, E = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["num_local_experts"]
    hd = D // H

    def normal_rows(out_dim, in_dim, scale):
        rows = max(1, BLOCK_VALUES // in_dim)
        for r in range(0, out_dim, rows):
            n = min(rows, out_dim - r)
            yield (rng.standard_normal((n, in_dim)) * scale).astype(np.float32)

    def linear(name, out_dim, in_dim, scale=1.0):
        return (name, (out_dim, in_dim),
                lambda: normal_rows(out_dim, in_dim, scale / np.sqrt(in_dim)))

    def norm(name, dim):
        return (name, (dim,),
                lambda: iter([(1.0 + 0.1 * rng.standard_normal(dim)).astype(np.float32)]))

    def gate(name):
        def make():
            g = (rng.standard_normal((E, D)) * (router_scale / np.sqrt(D))).astype(np.float32)
            if router_tie is not None:
                a, b = router_tie
                g[b] = g[a]
            yield g
        return (name, (E, D), make)

    specs = [("model.embed_tokens.weight", (V, D),
              lambda: normal_rows(V, D, 1.0))]
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        specs.append(norm(p + "input_layernorm.weight", D))
        specs.append(linear(p + "self_attn.q_proj.weight", H * hd, D))
        specs.append(linear(p + "self_attn.k_proj.weight", KVH * hd, D))
        specs.append(linear(p + "self_attn.v_proj.weight", KVH * hd, D))
        specs.append(linear(p + "self_attn.o_proj.weight", D, H * hd))
        specs.append(norm(p + "post_attention_layernorm.weight", D))
        specs.append(gate(p + "block_sparse_moe.gate.weight"))
        for e in range(E):
            q = p + f"block_sparse_moe.experts.{e}."
            specs.append(linear(q + "w1.weight", F, D))
            specs.append(linear(q + "w2.weight", D, F))
            specs.append(linear(q + "w3.weight", F, D))
    specs.append(norm("model.norm.weight", D))
    if not cfg["tie_word_embeddings"]:
        specs.append(linear("lm_head.weight", V, D))
    return specs


def make_tensors(cfg, seed, router_scale=3.0, router_tie=None):
    """List of (name, float32 array) in a fixed order, deterministic from seed."""
    return [(name, np.concatenate(list(make())).reshape(shape))
            for name, shape, make in tensor_specs(cfg, seed, router_scale, router_tie)]


def make_checkpoint(out_dir, vocab=512, hidden=64, intermediate=96, layers=3, heads=4,
                    kv_heads=2, experts=4, top_k=2, sliding_window=None, rope_theta=1e6,
                    max_pos=256, dtype="f32", seed=0, shards=1, tie_embeddings=False,
                    rms_norm_eps=1e-5, router_scale=3.0, router_tie=None):
    """Writes the checkpoint folder; returns its config dict."""
    if hidden % heads or heads % kv_heads or (hidden // heads) % 2:
        raise ValueError("need hidden % heads == 0, heads % kv_heads == 0, even head_dim")
    if not 1 <= top_k <= experts:
        raise ValueError("need 1 <= top_k <= experts")
    os.makedirs(out_dir, exist_ok=True)
    cfg = make_config(vocab, hidden, intermediate, layers, heads, kv_heads, experts, top_k,
                      sliding_window, rope_theta, max_pos, dtype, tie_embeddings, rms_norm_eps)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    tensors = tensor_specs(cfg, seed, router_scale, router_tie)
    for stale in os.listdir(out_dir):
        if stale.endswith(".safetensors") or stale == "model.safetensors.index.json":
            os.remove(os.path.join(out_dir, stale))
    if shards <= 1:
        write_safetensors(os.path.join(out_dir, "model.safetensors"), tensors, dtype)
        return cfg
    # Contiguous runs of tensors, cut so each shard holds about total/shards bytes.
    if shards > len(tensors):
        raise ValueError("more shards than tensors")
    sizes = [int(np.prod(shape)) for _, shape, _ in tensors]
    target = sum(sizes) / shards
    groups, current, acc = [], [], 0
    for i, item in enumerate(tensors):
        current.append(item)
        acc += sizes[i]
        left_tensors, left_groups = len(tensors) - i - 1, shards - len(groups) - 1
        if left_groups > 0 and (acc >= target * (len(groups) + 1) or left_tensors == left_groups):
            groups.append(current)
            current = []
    groups.append(current)
    assert len(groups) == shards and all(groups)
    weight_map, total_bytes = {}, 0
    for i, group in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        total_bytes += write_safetensors(os.path.join(out_dir, fname), group, dtype)
        for name, _, _ in group:
            weight_map[name] = fname
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total_bytes}, "weight_map": weight_map}, f, indent=2)
        f.write("\n")
    return cfg


def main(argv=None):
    ap = argparse.ArgumentParser(description="Write a random Mixtral checkpoint (HF layout).")
    ap.add_argument("out_dir")
    ap.add_argument("--vocab", type=int, default=512)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--intermediate", type=int, default=96)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--experts", type=int, default=4)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--sliding-window", type=int, default=None)
    ap.add_argument("--rope-theta", type=float, default=1e6)
    ap.add_argument("--max-pos", type=int, default=256, help="max_position_embeddings")
    ap.add_argument("--rms-norm-eps", type=float, default=1e-5)
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--tie-embeddings", action="store_true")
    ap.add_argument("--router-scale", type=float, default=3.0)
    ap.add_argument("--router-tie", help="A,B: copy router row A onto row B (exact ties)")
    args = ap.parse_args(argv)
    tie = tuple(int(t) for t in args.router_tie.split(",")) if args.router_tie else None
    make_checkpoint(args.out_dir, args.vocab, args.hidden, args.intermediate, args.layers,
                    args.heads, args.kv_heads, args.experts, args.top_k, args.sliding_window,
                    args.rope_theta, args.max_pos, args.dtype, args.seed, args.shards,
                    args.tie_embeddings, args.rms_norm_eps, args.router_scale, tie)
    return 0


if __name__ == "__main__":
    sys.exit(main())
