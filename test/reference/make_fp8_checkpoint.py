#!/usr/bin/env python3
"""Turns a checkpoint written by make_checkpoint.py into an FP8 one, as the Hub publishes them.

Every attention projection and expert weight (quant_ref.is_quantized_name) becomes F8_E4M3 with
a "<name>.weight_scale" in f32: per output channel (--scheme channel, scale = amax(row) / 448)
or per tensor (--scheme tensor, amax(tensor) / 448); q = e4m3(w / scale), nearest even,
computed in numpy (quant_ref.f8_encode). The router gate, norms, embedding and lm_head keep the
source's values (in --rest-dtype). config.json gains the "quantization_config" of --layout:

  fp8                 vLLM / AutoFP8: {"quant_method": "fp8", "activation_scheme": ...};
                      weight_scale shape [] (tensor) or [N] (channel)
  compressed-tensors  llm-compressor: {"quant_method": "compressed-tensors",
                      "format": "float-quantized", "config_groups": ...};
                      weight_scale shape [1] (tensor) or [N, 1] (channel)

--input-scales adds a scalar "<name>.input_scale" per weight and declares static activation
quantization (moec reads and ignores them: activations stay f32).

  make_fp8_checkpoint.py SRC_DIR OUT_DIR [--scheme channel|tensor] [--layout fp8|compressed-tensors]
                         [--input-scales] [--rest-dtype f32|bf16]
"""

import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import make_checkpoint  # noqa: E402
import mixtral_ref  # noqa: E402
import quant_ref  # noqa: E402


def fp8_tensor(w, scheme):
    """(e4m3 bytes, f32 scale per row [N] or per tensor [])."""
    w = np.asarray(w, dtype=np.float32)
    amax = np.abs(w).max(axis=-1) if scheme == "channel" else np.abs(w).max()
    scale = (np.asarray(amax, dtype=np.float32) / np.float32(448)).astype(np.float32)
    scale = np.where(scale == 0, np.float32(1), scale).astype(np.float32)
    q = quant_ref.f8_encode(w / (scale[:, None] if scale.ndim else scale))
    return q, scale


def write(path, entries):
    """entries: (name, safetensors dtype, shape, bytes) in file order."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, dtype, shape, blob in entries:
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def quantization_config(layout, scheme, static):
    if layout == "fp8":
        return {"quant_method": "fp8", "activation_scheme": "static" if static else "dynamic",
                "ignored_layers": ["lm_head"]}
    acts = ({"num_bits": 8, "type": "float", "strategy": "tensor", "dynamic": False,
             "symmetric": True} if static else
            {"num_bits": 8, "type": "float", "strategy": "token", "dynamic": True,
             "symmetric": True})
    return {"quant_method": "compressed-tensors", "format": "float-quantized",
            "quantization_status": "compressed",
            "config_groups": {"group_0": {
                "targets": ["Linear"],
                "weights": {"num_bits": 8, "type": "float", "strategy": scheme,
                            "dynamic": False, "symmetric": True},
                "input_activations": acts}},
            "ignore": ["lm_head", "re:.*block_sparse_moe.gate"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--scheme", choices=["channel", "tensor"], default="channel")
    ap.add_argument("--layout", choices=["fp8", "compressed-tensors"], default="compressed-tensors")
    ap.add_argument("--input-scales", action="store_true")
    ap.add_argument("--rest-dtype", choices=["f32", "bf16"], default="f32")
    args = ap.parse_args(argv)

    tensors = mixtral_ref.load_tensors(args.src)
    entries = []
    rest = make_checkpoint.DTYPES[args.rest_dtype][0]
    for name in sorted(tensors):
        w = tensors[name]
        if not quant_ref.is_quantized_name(name):
            entries.append((name, rest, w.shape, make_checkpoint.to_bytes(w, args.rest_dtype)))
            continue
        q, scale = fp8_tensor(w, args.scheme)
        entries.append((name, "F8_E4M3", w.shape, q.tobytes()))
        if args.scheme == "channel":
            shape = (w.shape[0],) if args.layout == "fp8" else (w.shape[0], 1)
        else:
            shape = () if args.layout == "fp8" else (1,)
        entries.append((name + "_scale", "F32", shape, scale.astype("<f4").tobytes()))
        if args.input_scales:
            entries.append((name[:-len(".weight")] + ".input_scale", "F32", (),
                            np.float32(0.05).astype("<f4").tobytes()))
    os.makedirs(args.out, exist_ok=True)
    write(os.path.join(args.out, "model.safetensors"), entries)
    with open(os.path.join(args.src, "config.json")) as f:
        config = json.load(f)
    config["quantization_config"] = quantization_config(args.layout, args.scheme, args.input_scales)
    config["torch_dtype"] = "bfloat16" if args.rest_dtype == "bf16" else "float32"
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    for extra in ("tokenizer.model",):
        if os.path.exists(os.path.join(args.src, extra)):
            shutil.copy(os.path.join(args.src, extra), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
