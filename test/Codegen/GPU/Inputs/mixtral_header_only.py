#!/usr/bin/env python3
"""Writes a Mixtral-shaped checkpoint folder whose model.safetensors holds only a header.

mixtral-compile reads config.json and the safetensors header (every tensor's name, dtype and
shape), never the weights, so this is enough to compile Mixtral-sized kernels in a test
without GBs on disk.
The file is extended sparsely to the size the header promises.
Usage: mixtral_header_only.py OUT_DIR [--layers 1]
"""
import json, os, struct, sys

out = sys.argv[1]
layers = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == "--layers" else 1
os.makedirs(out, exist_ok=True)
config = {
    "architectures": ["MixtralForCausalLM"], "vocab_size": 32000, "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": layers, "num_attention_heads": 32,
    "num_key_value_heads": 8, "num_local_experts": 8, "num_experts_per_tok": 2,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-5, "rope_theta": 1e6,
    "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
    "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
}
json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=1)
D, F, V, E, HD = 4096, 14336, 32000, 8, 128
shapes = {"model.embed_tokens.weight": [V, D], "model.norm.weight": [D], "lm_head.weight": [V, D]}
for l in range(layers):
    p = f"model.layers.{l}."
    shapes.update({p + "input_layernorm.weight": [D], p + "post_attention_layernorm.weight": [D],
                   p + "self_attn.q_proj.weight": [32 * HD, D],
                   p + "self_attn.k_proj.weight": [8 * HD, D],
                   p + "self_attn.v_proj.weight": [8 * HD, D],
                   p + "self_attn.o_proj.weight": [D, 32 * HD],
                   p + "block_sparse_moe.gate.weight": [E, D]})
    for e in range(E):
        for w, shape in (("w1", [F, D]), ("w3", [F, D]), ("w2", [D, F])):
            shapes[p + f"block_sparse_moe.experts.{e}.{w}.weight"] = shape
header, n = {}, 0
for name, shape in shapes.items():
    size = 2
    for d in shape:
        size *= d
    header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [n, n + size]}
    n += size
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
with open(os.path.join(out, "model.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(text)))
    f.write(text)
    f.truncate(8 + len(text) + n)
