#!/usr/bin/env python3
"""Expected token ids and texts for the tokenizer fidelity test, from the Python package.

Reads Inputs/tokenizer_texts.json ({"texts": [...], "id_lists": [[...], ...]}) and writes, with
the official `sentencepiece` Python binding loading the same tokenizer.model, a JSON file
  {"model": PATH, "sentencepiece": VERSION,
   "texts":    [{"text": T, "ids": [1, ...encode(T)], "decoded": decode(ids)}, ...],
   "id_lists": [{"ids": [...], "decoded": decode(ids)}, ...]}
that the GoogleTest TokenizerFidelity.* compares with the C++ runtime's Tokenizer (libsentencepiece
from Debian, a separate build). BOS (1) is prepended as `--tokenize` does.

Usage:
  tokenizer_expected.py --model tokenizer.model [--texts Inputs/tokenizer_texts.json] --out FILE
  tokenizer_expected.py --model tokenizer.model --check Inputs/tokenizer_expected.json
(--check: exit 1 if the committed file differs from what the package produces now.)
"""

import argparse
import json
import os
import sys

import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))


def expected(model, texts_path):
    sp = spm.SentencePieceProcessor(model_file=model)
    with open(texts_path, encoding="utf-8") as f:
        spec = json.load(f)
    bos = sp.bos_id()
    out = {"sentencepiece": spm.__version__, "texts": [], "id_lists": []}
    for text in spec["texts"]:
        ids = [bos] + sp.encode(text)
        out["texts"].append({"text": text, "ids": ids, "decoded": sp.decode(ids)})
    for ids in spec["id_lists"]:
        out["id_lists"].append({"ids": ids, "decoded": sp.decode(ids)})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="sentencepiece tokenizer.model")
    ap.add_argument("--texts", default=os.path.join(HERE, "Inputs", "tokenizer_texts.json"))
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--out", help="write the expected JSON here")
    group.add_argument("--check", help="compare with this committed expected JSON")
    args = ap.parse_args(argv)
    got = expected(args.model, args.texts)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(got, f, ensure_ascii=True, indent=1)
            f.write("\n")
        print(f"{args.out}: {len(got['texts'])} texts, {len(got['id_lists'])} id lists "
              f"(sentencepiece {got['sentencepiece']})")
        return 0
    with open(args.check, encoding="utf-8") as f:
        committed = json.load(f)
    got.pop("sentencepiece"), committed.pop("sentencepiece", None)
    if got != committed:
        print(f"{args.check} is stale: regenerate it with --out", file=sys.stderr)
        return 1
    print(f"{args.check}: up to date ({len(got['texts'])} texts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
