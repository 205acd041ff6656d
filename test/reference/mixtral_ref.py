#!/usr/bin/env python3
"""Independent numpy reference forward pass of a Mixtral-style MoE model.

Purpose: the oracle that the compiler's output is checked against. It is meant
to be read in one sitting and to be obviously correct, not fast: every forward
recomputes the whole sequence (no KV cache), attention and experts are plain
loops over heads and experts.

Semantics (see shared/notes/mixtral.md; they follow Hugging Face
`modeling_mixtral.py`):
  * weights of any stored dtype (F32/F16/BF16) are widened to the working dtype
    (float32 by default, float64 on request) and all math happens there; this
    is also what the compiler does;
  * RMSNorm: x * 1/sqrt(mean(x^2) + eps), then * weight;
  * RoPE: half-split (rotate_half), inv_freq[i] = theta^(-2i/head_dim) computed
    in float32, angles = position * inv_freq rounded to float32, 0-based
    positions;
  * attention: GQA (kv head = q head // (H / KVH)), scale head_dim^-0.5,
    causal; with `sliding_window` = W set, query i sees keys j with
    i - W < j <= i (W keys including itself), the convention of Hugging Face's
    mask utilities for Mistral/Mixtral;
  * router: softmax of the gate logits, top-k by a stable sort (ties go to the
    lower expert index), weights renormalised to sum to 1;
  * expert: w2(silu(w1 x) * w3 x), weighted sum over the chosen experts;
  * final norm, then lm_head (the embedding matrix if tie_word_embeddings).

The GPU target's model (--gpu-step, Model.gemm_bf16_all): the nvptx binary runs every row
through moec_step, whose projections are tensor-core GEMMs: both operands of Q/K/V/O, the
experts' w1/w3/w2 and lm_head are rounded to bf16 (round to nearest even, to_bf16 below) as
the kernels stage them, at every position; products and sums stay f32. Everything else
(router, norms, RoPE, attention, softmax, top-k, combine) is the f32 model above.

Quantized weights (issue 10; formats in quant_ref.py, written from the contract):
  * FP8 checkpoints as the Hub publishes them: F8_E4M3 weights with a "<name>.weight_scale"
    (per tensor [] / [1], or per output row [N] / [N, 1]) are widened exactly and scaled in
    float64, w = f8(q) * s. "input_scale" tensors (static activation quantization) are read
    and ignored: activations stay in the working dtype, as in the compiled binary;
  * --quantize q8|q4 replaces every attention projection whose K is a multiple of 32, and
    the expert w1/w3/w2 when hidden and intermediate both are (the three go together, or all
    stay), by its quantize->dequantize image: the weights a --quantize binary holds.

Stored checkpoint: Hugging Face folder with config.json and model.safetensors
or model.safetensors.index.json + shards. The safetensors parser is written
here by hand (8-byte little-endian header length, JSON header, raw data), so it
does not need the `safetensors` package; only numpy is required.

CLI:
  python3 mixtral_ref.py MODEL_DIR --prompt-ids 1,2,3 -n 8 [--logits-out F] [--f64]
                        [--quantize q8|q4] [--gpu-step]
prints the n greedily generated ids (not the prompt) space-separated on one
line; --logits-out writes the logits of every greedy step as little-endian
float32 rows of vocab_size: row i is the one token i was picked from (row 0 the
last prompt position), max(n, 1) rows — the compiled binary's format.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import quant_ref  # noqa: E402


# ---------------------------------------------------------------------------
# safetensors reading
# ---------------------------------------------------------------------------

def read_safetensors(path):
    """Returns {name: np.ndarray float32-or-wider} for one .safetensors file.

    BF16 is widened exactly by placing the 16 stored bits in the high half of a
    float32; F16 is widened by numpy (exact); F32/F64 are taken as they are.
    """
    with open(path, "rb") as f:
        data = f.read()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len].decode("utf-8"))
    base = 8 + header_len
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = data[base + start:base + end]
        shape = tuple(info["shape"])
        dtype = info["dtype"]
        if dtype == "F32":
            arr = np.frombuffer(raw, dtype="<f4").copy()
        elif dtype == "F64":
            arr = np.frombuffer(raw, dtype="<f8").copy()
        elif dtype == "F16":
            arr = np.frombuffer(raw, dtype="<f2").astype(np.float32)
        elif dtype == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        elif dtype == "F8_E4M3":  # exact in float32; the weight_scale is applied by Model
            arr = quant_ref.f8_decode(np.frombuffer(raw, dtype=np.uint8)).astype(np.float32)
        else:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dtype}")
        expected = int(np.prod(shape)) if shape else 1
        if arr.size != expected:
            raise ValueError(f"{path}: tensor {name}: {arr.size} values for shape {shape}")
        out[name] = arr.reshape(shape)
    return out


def load_tensors(model_dir):
    """All tensors of a checkpoint folder, single-file or sharded."""
    index_path = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index_path):
        with open(index_path) as f:
            weight_map = json.load(f)["weight_map"]
        tensors = {}
        for shard in sorted(set(weight_map.values())):
            for name, arr in read_safetensors(os.path.join(model_dir, shard)).items():
                if weight_map.get(name) != shard:
                    raise ValueError(f"{shard}: tensor {name} not mapped to this shard in the index")
                tensors[name] = arr
        missing = set(weight_map) - set(tensors)
        if missing:
            raise ValueError(f"index lists tensors not found in shards: {sorted(missing)[:5]}")
        return tensors
    return read_safetensors(os.path.join(model_dir, "model.safetensors"))


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------

class Model:
    """Config fields plus widened weights, in the working dtype."""

    def __init__(self, config, tensors, dtype=np.float32, quantize=None):
        c = config
        self.dtype = dtype
        # The GPU target's model (--gpu-step): the runtime runs OUT --prompt, --chat and
        # --serve alike through moec_step there, whose projections are tensor-core GEMMs for
        # every row (prefill and decode rows alike): each operand is rounded to bf16 as a GEMM
        # tile is staged into shared memory (the activation's cvt.rn.bf16x2.f32, an f32
        # weight's too; bf16 weights are already there), products accumulate in f32. That is
        # Q/K/V/O, the experts' w1/w3/w2 and lm_head. The router (a GEMV per row), RMSNorm,
        # RoPE, attention, softmax/top-k and the combine stay f32. False: plain f32 model.
        self.gemm_bf16_all = False
        self.vocab = c["vocab_size"]
        self.dim = c["hidden_size"]
        self.ffn = c["intermediate_size"]
        self.n_layers = c["num_hidden_layers"]
        self.n_heads = c["num_attention_heads"]
        self.n_kv_heads = c.get("num_key_value_heads") or self.n_heads
        self.head_dim = c.get("head_dim") or self.dim // self.n_heads
        self.n_experts = c["num_local_experts"]
        self.top_k = c["num_experts_per_tok"]
        self.eps = c.get("rms_norm_eps", 1e-5)
        self.theta = c.get("rope_theta", 1e6)
        self.sliding_window = c.get("sliding_window")
        assert self.n_heads % self.n_kv_heads == 0
        assert 1 <= self.top_k <= self.n_experts
        assert c.get("hidden_act", "silu") == "silu"

        used = set()
        D, F = self.dim, self.ffn

        def w(name, shape):
            if name not in tensors:
                raise KeyError(f"checkpoint lacks tensor {name}")
            arr = tensors[name]
            if tuple(arr.shape) != tuple(shape):
                raise ValueError(f"{name}: shape {arr.shape}, expected {shape}")
            used.add(name)
            scale = name + "_scale"                 # FP8: "<name>.weight_scale"
            if scale in tensors:
                used.add(scale)
                used.add(name[:-len(".weight")] + ".input_scale")  # activations stay unscaled
                s_ = np.asarray(tensors[scale], dtype=np.float64).reshape(-1)
                s_ = s_.reshape(-1, 1) if s_.size > 1 else s_[0]
                return (arr.astype(np.float64) * s_).astype(dtype)
            if quantize and quant_ref.is_quantized_name(name) and all(
                    k % quant_ref.GROUP == 0 for k in
                    ((D, F) if ".block_sparse_moe.experts." in name else (shape[-1],))):
                return quant_ref.quantize_dequantize(arr, quantize).astype(dtype)
            return arr.astype(dtype)

        D, F, V, hd = self.dim, self.ffn, self.vocab, self.head_dim
        qd, kvd = self.n_heads * hd, self.n_kv_heads * hd
        self.embed = w("model.embed_tokens.weight", (V, D))
        self.layers = []
        for n in range(self.n_layers):
            p = f"model.layers.{n}."
            layer = {
                "in_norm": w(p + "input_layernorm.weight", (D,)),
                "post_norm": w(p + "post_attention_layernorm.weight", (D,)),
                "wq": w(p + "self_attn.q_proj.weight", (qd, D)),
                "wk": w(p + "self_attn.k_proj.weight", (kvd, D)),
                "wv": w(p + "self_attn.v_proj.weight", (kvd, D)),
                "wo": w(p + "self_attn.o_proj.weight", (D, qd)),
                "gate": w(p + "block_sparse_moe.gate.weight", (self.n_experts, D)),
                "experts": [
                    {
                        "w1": w(p + f"block_sparse_moe.experts.{e}.w1.weight", (F, D)),
                        "w3": w(p + f"block_sparse_moe.experts.{e}.w3.weight", (F, D)),
                        "w2": w(p + f"block_sparse_moe.experts.{e}.w2.weight", (D, F)),
                    }
                    for e in range(self.n_experts)
                ],
            }
            self.layers.append(layer)
        self.final_norm = w("model.norm.weight", (D,))
        if c.get("tie_word_embeddings", False):
            self.lm_head = self.embed
        else:
            self.lm_head = w("lm_head.weight", (V, D))
        unused = set(tensors) - used
        if unused:
            raise ValueError(f"checkpoint has unexpected tensors: {sorted(unused)[:5]}")


def load_model(model_dir, dtype=np.float32, quantize=None):
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    return Model(config, load_tensors(model_dir), dtype, quantize)


# ---------------------------------------------------------------------------
# Forward pass
# ---------------------------------------------------------------------------

def to_bf16(a):
    """a rounded to the nearest bfloat16 (ties to even), returned as float32."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) & np.uint32(0xFFFF0000)
    return rounded.view(np.float32)


def proj(model, x, w):
    """x @ w.T for a projection (and lm_head): [n, in] x [out, in] -> [n, out]. Under
    model.gemm_bf16_all both operands are first rounded to bf16, as the GPU step's tensor-core
    GEMMs stage them (f32 products and sums: bf16 x bf16 is exact in f32)."""
    if model.gemm_bf16_all:
        return (to_bf16(x) @ to_bf16(w).T).astype(model.dtype)
    return x @ w.T


def rms_norm(x, weight, eps):
    # x: [T, D]
    ms = np.mean(x * x, axis=-1, keepdims=True)          # [T, 1]
    return (x / np.sqrt(ms + x.dtype.type(eps))) * weight  # [T, D]


def rope_tables(model, T):
    """cos, sin: [T, head_dim], computed as HF does (float32 inv_freq and angles)."""
    hd = model.head_dim
    exponents = np.arange(0, hd, 2, dtype=np.float32) / np.float32(hd)   # [hd/2]
    inv_freq = (np.float32(1.0) / (np.float32(model.theta) ** exponents)).astype(np.float32)
    pos = np.arange(T, dtype=np.float32)                                  # [T]
    angles = np.outer(pos, inv_freq).astype(np.float32)                  # [T, hd/2]
    emb = np.concatenate([angles, angles], axis=-1).astype(model.dtype)   # [T, hd]
    return np.cos(emb), np.sin(emb)


def apply_rope(x, cos, sin):
    # x: [T, nh, hd]; rotate_half(x) = cat(-x2, x1) with x1, x2 the two halves.
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[:, None, :] + rotated * sin[:, None, :]


def softmax(x, axis=-1):
    m = np.max(x, axis=axis, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=axis, keepdims=True)


def attention_mask(model, T):
    """[T, T] bool, True where query i may attend key j."""
    i = np.arange(T)[:, None]
    j = np.arange(T)[None, :]
    allowed = j <= i
    if model.sliding_window is not None:
        allowed &= j > i - model.sliding_window
    return allowed


def attention(model, layer, x, cos, sin, mask):
    T = x.shape[0]
    H, KVH, hd = model.n_heads, model.n_kv_heads, model.head_dim
    group = H // KVH
    q = proj(model, x, layer["wq"]).reshape(T, H, hd)     # [T, H, hd]
    k = proj(model, x, layer["wk"]).reshape(T, KVH, hd)   # [T, KVH, hd]
    v = proj(model, x, layer["wv"]).reshape(T, KVH, hd)   # [T, KVH, hd]
    q = apply_rope(q, cos, sin)
    k = apply_rope(k, cos, sin)
    scale = model.dtype(hd ** -0.5)
    out = np.zeros((T, H, hd), dtype=model.dtype)
    for h in range(H):
        kv = h // group
        scores = (q[:, h, :] @ k[:, kv, :].T) * scale          # [T, T]
        scores = np.where(mask, scores, -np.inf)
        out[:, h, :] = softmax(scores) @ v[:, kv, :]           # [T, hd]
    return proj(model, out.reshape(T, H * hd), layer["wo"])     # [T, D]


def route(model, layer, x):
    """Returns (expert ids [T, k], weights [T, k]) for each token."""
    probs = softmax(x @ layer["gate"].T)                       # [T, E]
    # Stable sort of -probs: equal probabilities keep ascending expert order.
    order = np.argsort(-probs, axis=-1, kind="stable")         # [T, E]
    ids = order[:, :model.top_k]                               # [T, k]
    weights = np.take_along_axis(probs, ids, axis=-1)          # [T, k]
    weights = weights / np.sum(weights, axis=-1, keepdims=True)
    return ids, weights


def silu(x):
    with np.errstate(over="ignore"):  # exp(-x) may overflow to inf: silu -> -0, as intended
        return x / (1 + np.exp(-x))


def moe(model, layer, x):
    ids, weights = route(model, layer, x)
    out = np.zeros_like(x)                                     # [T, D]
    for e, expert in enumerate(layer["experts"]):
        rows, slots = np.nonzero(ids == e)                     # tokens routed to e
        if rows.size == 0:
            continue
        xe = x[rows]                                           # [n, D]
        h = silu(proj(model, xe, expert["w1"])) * proj(model, xe, expert["w3"])
        ye = proj(model, h, expert["w2"])                      # [n, D]; h: [n, F]
        out[rows] += weights[rows, slots][:, None] * ye
    return out


def forward(model, token_ids):
    """Logits [T, V] for every position of token_ids (a full causal forward)."""
    token_ids = np.asarray(token_ids, dtype=np.int64)
    if token_ids.ndim != 1 or token_ids.size == 0:
        raise ValueError("token_ids must be a non-empty 1-D sequence")
    if token_ids.min() < 0 or token_ids.max() >= model.vocab:
        raise ValueError("token id out of range")
    T = token_ids.size
    cos, sin = rope_tables(model, T)
    mask = attention_mask(model, T)
    x = model.embed[token_ids]                                 # [T, D]
    for layer in model.layers:
        h = x + attention(model, layer, rms_norm(x, layer["in_norm"], model.eps), cos, sin, mask)
        x = h + moe(model, layer, rms_norm(h, layer["post_norm"], model.eps))
    x = rms_norm(x, model.final_norm, model.eps)
    return proj(model, x, model.lm_head)                       # [T, V]


def greedy_steps(model, prompt_ids, n):
    """(ids, step_logits): n greedily generated ids (argmax, ties to the lower id; never stops
    at EOS) and the logits each was picked from, [n, V] (row 0: the last prompt position)."""
    seq = list(prompt_ids)
    out, rows = [], []
    for _ in range(n):
        rows.append(forward(model, seq)[-1])
        nxt = int(np.argmax(rows[-1]))
        out.append(nxt)
        seq.append(nxt)
    return out, np.array(rows, dtype=model.dtype).reshape(n, model.vocab)


def greedy(model, prompt_ids, n):
    """n greedily generated ids (argmax, ties to the lower id); never stops at EOS."""
    return greedy_steps(model, prompt_ids, n)[0]


# ---------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------

def parse_ids(text):
    return [int(t) for t in text.replace(" ", "").split(",") if t != ""]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("--prompt-ids", required=True, help="comma-separated token ids")
    ap.add_argument("-n", type=int, default=16, help="number of ids to generate greedily")
    ap.add_argument("--logits-out", help="write every greedy step's logits, [max(n, 1), vocab] "
                                         "LE float32 (row 0: the last prompt position)")
    ap.add_argument("--f64", action="store_true", help="compute in float64 instead of float32")
    ap.add_argument("--quantize", choices=["q8", "q4"],
                    help="run the weights a mixtral-compile --quantize binary holds")
    ap.add_argument("--gpu-step", action="store_true",
                    help="the GPU target's model: bf16 operands in every projection and lm_head")
    args = ap.parse_args(argv)

    model = load_model(args.model_dir, np.float64 if args.f64 else np.float32, args.quantize)
    model.gemm_bf16_all = args.gpu_step
    prompt = parse_ids(args.prompt_ids)
    ids, rows = greedy_steps(model, prompt, args.n)
    if args.logits_out:
        rows = rows if args.n > 0 else forward(model, prompt)[-1:]
        rows.astype("<f4").tofile(args.logits_out)
    if args.n > 0:
        print(" ".join(str(i) for i in ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
