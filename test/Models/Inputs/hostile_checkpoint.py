#!/usr/bin/env python3
"""Writes a hostile variant of a checkpoint folder for the compiler's bad-input tests.

Usage: hostile_checkpoint.py SRC_DIR OUT_DIR CASE
SRC_DIR is a golden (config.json + one f32/bf16 model.safetensors); OUT_DIR is replaced.
Cases change one thing each: see CASES below.
"""
import json, os, shutil, struct, sys


def read_st(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", None)
    body = data[8 + n:]
    tensors = {k: (v["dtype"], v["shape"], body[v["data_offsets"][0]:v["data_offsets"][1]])
               for k, v in header.items()}
    return tensors, meta


def write_st(path, tensors, pad=b" "):
    header, blobs, n = {}, [], 0
    for name, (dtype, shape, blob) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [n, n + len(blob)]}
        blobs.append(blob)
        n += len(blob)
    text = json.dumps(header).encode()
    text += pad * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def main():
    src, out, case = sys.argv[1:4]
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    config = json.load(open(os.path.join(src, "config.json")))
    tensors, _ = read_st(os.path.join(src, "model.safetensors"))
    layers = config["num_hidden_layers"]
    embed = tensors["model.embed_tokens.weight"]
    st = os.path.join(out, "model.safetensors")
    if case == "extra-layer":  # a 4th layer's tensor in a 3-layer config
        tensors[f"model.layers.{layers}.input_layernorm.weight"] = \
            tensors["model.layers.0.input_layernorm.weight"]
    elif case == "bias":  # a tensor nobody reads
        dtype, shape, blob = tensors["model.layers.0.input_layernorm.weight"]
        tensors["model.layers.0.self_attn.q_proj.bias"] = (dtype, shape, blob)
    elif case == "inv-freq":  # RoPE's inverse frequencies, as older exports carry them
        tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = ("F32", [1], b"\0" * 4)
    elif case == "gelu":
        config["hidden_act"] = "gelu"
    elif case == "tie-differs":  # tied, with an lm_head that is not the embedding
        config["tie_word_embeddings"] = True
    elif case == "tie-same":  # tied, with an lm_head identical to the embedding
        config["tie_word_embeddings"] = True
        tensors["lm_head.weight"] = embed
    elif case == "nul-padded":  # safetensors pads with spaces, never NUL
        write_st(st, tensors, pad=b"\0")
    elif case == "shard-subdir" or case == "shard-dotdot":
        shard = "sub/s.safetensors" if case == "shard-subdir" else "../s.safetensors"
        os.makedirs(os.path.join(out, "sub"))
        write_st(os.path.join(out, "sub", "s.safetensors"), tensors)
        json.dump({"weight_map": {k: shard for k in tensors}},
                  open(os.path.join(out, "model.safetensors.index.json"), "w"))
        tensors = None
    elif case == "deep-config":  # 50,000 levels in 100 KB
        config["x"] = "DEEP"
    elif case.startswith("config:"):  # config:KEY=JSON, written as given (1e400 stays 1e400)
        key, raw = case[len("config:"):].split("=", 1)
        config[key] = "RAW"
    else:
        sys.exit(f"unknown case {case}")
    text = json.dumps(config, indent=1)
    if case == "deep-config":
        text = text.replace('"DEEP"', "[" * 50000 + "]" * 50000)
    if case.startswith("config:"):
        text = text.replace('"RAW"', raw)
    open(os.path.join(out, "config.json"), "w").write(text)
    if tensors is not None and case != "nul-padded":
        write_st(st, tensors)
    shutil.copy(os.path.join(src, "tokenizer.model"), out) if os.path.exists(
        os.path.join(src, "tokenizer.model")) else None


main()
