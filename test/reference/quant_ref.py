#!/usr/bin/env python3
"""Independent numpy implementation of moec's quantized weight formats.

Written from the contract (runtime/checkpoint/include/moec/checkpoint/quant.h and issue 10's
text), not from the C++ encoders, so that tests can compare the compiler's packed bytes and the
binaries' logits against it. A weight W[..., N, K] is cut into groups along K (its input axis):

  q8      s = f16(f32(amax(group)) / 127); q = clip(rint(f32(w) / f32(s)), -127, 127), 0 when
          s == 0; w ~ q * s. Data int8 [..., N, K], scales f16 [..., N, K/32]. 8.5 bits/weight.
  q4      s = f16(f32(m) / -8), m the group's first element of largest |w| (a signed scale,
          -0 for a zero group); n = clip(rint(w / s), -8, 7) + 8 (8 when s == 0); in row n, group g is bytes
          [16g, 16g + 16), byte j = n[32g + j] | n[32g + 16 + j] << 4. w ~ (n - 8) * s. 4.5 bits.
  f8e4m3  OCP FP8 E4M3FN bytes with one f32 scale per output row: w ~ f8(q) * s.

np.rint rounds half to even, numpy's float32 -> float16 cast rounds to nearest even: the two
rounding rules of the contract. Which tensors are quantized: attention q/k/v/o projections whose
K is a multiple of 32, and expert w1/w2/w3 when all three Ks are (hidden and intermediate: they
go together) (is_quantized_name); everything else keeps its dtype.
"""

import re

import numpy as np

GROUP = 32
BITS_PER_WEIGHT = {"q8": 8.5, "q4": 4.5}

_QUANTIZED = re.compile(r"^model\.layers\.\d+\.(self_attn\.[qkvo]_proj|"
                        r"block_sparse_moe\.experts\.\d+\.w[123])\.weight$")


def is_quantized_name(name):
    """The checkpoint tensors a --quantize build may store quantized (K % 32 == 0; experts:
    hidden and intermediate both)."""
    return bool(_QUANTIZED.match(name))


def _grouped(w):
    w = np.asarray(w, dtype=np.float32)
    k = w.shape[-1]
    if k % GROUP:
        raise ValueError(f"K = {k} is not a multiple of {GROUP}")
    return w.reshape(*w.shape[:-1], k // GROUP, GROUP)


def _encode(w, qmax, lo, hi, signed=False):
    """Integer codes [..., N, K/32, 32] (float) and f16 scales [..., N, K/32]: s = amax / qmax,
    or with `signed` m / qmax for m the first element of largest |w| (qmax negative)."""
    g = _grouped(w)
    if signed:
        first = np.argmax(np.abs(g), axis=-1)[..., None]       # the first of the largest
        amax = np.take_along_axis(g, first, axis=-1)[..., 0]   # signed, f32
        amax = np.where(amax == 0, np.float32(0), amax)        # a zero group: +0 / -8 = -0
    else:
        amax = np.abs(g).max(axis=-1)                          # f32
    s = (amax / np.float32(qmax)).astype(np.float16)           # round to nearest even
    sf = s.astype(np.float32)[..., None]
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.rint(g / sf)                                    # f32 division, half to even
    codes = np.where(sf == 0, 0.0, np.clip(r, lo, hi))
    if not np.all(np.isfinite(s.astype(np.float32))):
        raise ValueError("a group's scale overflows f16")
    return codes, s


def q8_encode(w):
    codes, s = _encode(w, 127, -127, 127)
    return codes.astype(np.int8).reshape(np.shape(w)), s


def q8_decode(q, s):
    g = q.reshape(*q.shape[:-1], -1, GROUP).astype(np.float64)
    return (g * s.astype(np.float64)[..., None]).reshape(q.shape)


def q4_encode(w):
    codes, s = _encode(w, -8, -8, 7, signed=True)
    n = (codes + 8).astype(np.uint8)                           # [..., G, 32]
    packed = n[..., :GROUP // 2] | (n[..., GROUP // 2:] << 4)  # [..., G, 16]
    shape = np.shape(w)
    return packed.reshape(*shape[:-1], shape[-1] // 2), s


def q4_decode(b, s):
    g = b.reshape(*b.shape[:-1], -1, GROUP // 2)
    n = np.concatenate([g & 15, g >> 4], axis=-1).astype(np.float64) - 8
    out = n * s.astype(np.float64)[..., None]
    return out.reshape(*b.shape[:-1], b.shape[-1] * 2)


def quantize_dequantize(w, fmt):
    """The values a `fmt` weight holds, in float64."""
    if fmt == "q8":
        return q8_decode(*q8_encode(w))
    if fmt == "q4":
        return q4_decode(*q4_encode(w))
    raise ValueError(fmt)


# --- FP8 E4M3FN ------------------------------------------------------------------------------
def _f8_table():
    v = np.arange(256)
    sign = np.where(v >> 7, -1.0, 1.0)
    exp, man = (v >> 3) & 15, v & 7
    mag = np.where(exp == 0, man / 8.0 * 2.0 ** -6, (1 + man / 8.0) * 2.0 ** (exp - 7))
    out = sign * mag
    out[(exp == 15) & (man == 7)] = np.nan                     # 0x7f, 0xff; no infinities
    return out


F8_VALUES = _f8_table()                                        # float64 [256]


def f8_decode(b):
    return F8_VALUES[np.asarray(b, dtype=np.uint8)]


def f8_encode(x):
    """Nearest E4M3FN value (ties to the even code), saturating at +-448; x finite."""
    x = np.asarray(x, dtype=np.float64)
    pos = F8_VALUES[:127]                                      # codes 0..126, increasing
    a = np.minimum(np.abs(x), 448.0)
    hi = np.clip(np.searchsorted(pos, a), 1, 126)
    lo = hi - 1
    d_lo, d_hi = a - pos[lo], pos[hi] - a
    code = np.where(d_lo < d_hi, lo, np.where(d_hi < d_lo, hi, np.where(lo % 2 == 0, lo, hi)))
    code = np.where(a >= 448.0, 126, code)
    return (code | np.where(np.signbit(x) & (code != 0), 0x80, 0)).astype(np.uint8)

