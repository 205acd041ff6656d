#!/usr/bin/env python3
"""roofline.py - the expected time of each GPU kernel of one Mixtral 8x7B layer on an H200.

A model, not a measurement: each kernel's DRAM bytes (weights read once, activations and KV
cache as the nvptx target stores them: f32) and FLOPs, and its roofline time
max(bytes / HBM, FLOPs / peak) for a decode token (context CTX) and a P-token prefill.
Reads of data that fit in L2 (the activation row a GEMV block re-stages, the A tile a GEMM
block re-reads) are not DRAM bytes and are left out. Usage:
  python3 tools/gpu-check/roofline.py [--ctx 4096] [--prefill 512] [--hbm 4.8e12] [--peak 989e12]
"""
import argparse

D, F, H, KVH, HD, E, K, V, LAYERS = 4096, 14336, 32, 8, 128, 8, 2, 32000, 32
WB, AB = 2, 4  # bytes per weight (bf16), per activation / KV element (f32)


def decode(ctx):
    """(kernel, bytes, flops) of one layer for one token."""
    gemv = lambda n, k, rows=1: (rows * n * k * WB + rows * k * AB + rows * n * AB, 2 * rows * n * k)
    kv = ctx * KVH * HD * AB * 2
    return [
        ("rms_norm (x2)", 2 * (D * AB * 2 + D * WB), 2 * 4 * D),
        ("q proj gemv", *gemv(H * HD, D)),
        ("k, v proj gemv (x2)", *[2 * x for x in gemv(KVH * HD, D)]),
        ("rope + KV write", 4 * (H + 2 * KVH) * HD * AB, 6 * (H + KVH) * HD),
        ("attention (ctx %d)" % ctx, kv + 2 * H * HD * AB, 4 * H * HD * ctx),
        ("o proj gemv", *gemv(D, H * HD)),
        ("router gemv + top_k", *gemv(E, D)),
        ("experts gemv_swiglu (w1, w3)", 2 * K * F * D * WB + K * D * AB + K * F * AB, 2 * 2 * K * F * D),
        ("experts down gemv", *gemv(D, F, K)),
        ("combine + residual adds", 5 * D * AB, 3 * D),
    ]


def prefill(p):
    """(kernel, bytes, flops) of one layer for a p-token prompt (rows routed evenly)."""
    gemm = lambda n, k, m: (n * k * WB + m * k * AB + m * n * AB, 2 * m * n * k)
    rows = p * K  # expert rows; each expert's weights are read once (p * K / E rows each)
    return [
        ("q proj gemm", *gemm(H * HD, D, p)),
        ("k, v proj gemm (x2)", *[2 * x for x in gemm(KVH * HD, D, p)]),
        ("attention (causal)", p * (H + 2 * KVH) * HD * AB + p * H * HD * AB, 4 * H * HD * p * p // 2),
        ("o proj gemm", *gemm(D, H * HD, p)),
        ("experts gemm_mma_swiglu (w1, w3)", E * 2 * F * D * WB + rows * D * AB + rows * F * AB, 2 * 2 * rows * F * D),
        ("experts down gemm_mma", E * F * D * WB + rows * F * AB + rows * D * AB, 2 * rows * D * F),
    ]


def table(title, rows, hbm, peak, scale=1):
    print("%s\n%-34s %10s %10s %9s %6s" % (title, "kernel", "MB", "GFLOP", "us", "bound"))
    tb = tf = tt = 0
    for name, b, f in rows:
        t = max(b / hbm, f / peak)
        tb, tf, tt = tb + b, tf + f, tt + t
        print("%-34s %10.2f %10.3f %9.2f %6s" % (name, b / 1e6, f / 1e9, t * 1e6, "mem" if b / hbm >= f / peak else "flop"))
    print("%-34s %10.2f %10.3f %9.2f\n" % ("layer", tb / 1e6, tf / 1e9, tt * 1e6))
    return tb, tf, tt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--prefill", type=int, default=512)
    ap.add_argument("--hbm", type=float, default=4.8e12)
    ap.add_argument("--peak", type=float, default=989e12)
    a = ap.parse_args()
    head = V * D * WB + V * AB + D * AB  # lm_head gemv (the token's logits)
    b, f, t = table("decode, one token, one layer:", decode(a.ctx), a.hbm, a.peak)
    tok = LAYERS * t + head / a.hbm
    print("decode token: %d layers + lm_head: %.2f GB, %.2f ms at the roofline -> %.0f tok/s\n"
          % (LAYERS, (LAYERS * b + head) / 1e9, tok * 1e3, 1 / tok))
    b, f, t = table("prefill, %d tokens, one layer:" % a.prefill, prefill(a.prefill), a.hbm, a.peak)
    lm = max((V * D * WB) / a.hbm, 2 * a.prefill * V * D / a.peak)
    total = LAYERS * t + lm
    print("prefill %d tokens: %.2f ms at the roofline, %.1f TFLOP -> %.0f TFLOP/s (%.0f%% of peak)"
          % (a.prefill, total * 1e3, (LAYERS * f + 2 * a.prefill * V * D) / 1e12,
             (LAYERS * f + 2 * a.prefill * V * D) / total / 1e12,
             100 * (LAYERS * f + 2 * a.prefill * V * D) / total / a.peak))


if __name__ == "__main__":
    main()
