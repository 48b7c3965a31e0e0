#!/usr/bin/env python3
"""Reference embeddings from Python onnxruntime + numpy + tokenizers.

The anchor the Rust engine is tested against: the same model files from the
cache, the same registry entry (inputs, output, maximum sequence length), but
an independent implementation of tokenizing (the Python `tokenizers`
package), padding, mean pooling (in float64) and L2 normalisation. Each
sentence is run on its own (no padding at all), so the reference is also
free of any batching effect.

Run with the pinned venv that `python3 scripts/fetch_models.py --venv` makes:

    .cache/venv/bin/python scripts/reference_vectors.py \
        --model all-MiniLM-L6-v2 --out target/embed-reference/all-MiniLM-L6-v2.json

The Rust tests (kernel/embed/tests/embed_reference.rs) run exactly this and
compare with cosine >= 0.9999.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

REPO = Path(__file__).resolve().parent.parent
SENTENCES = REPO / "kernel" / "embed" / "tests" / "data" / "sentences.json"


def cache_dir() -> Path:
    if os.environ.get("SPINDLE_CACHE"):
        return Path(os.environ["SPINDLE_CACHE"])
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]) / "spindle"
    return Path.home() / ".cache" / "spindle"


def load_model(name: str):
    with open(REPO / "models" / "registry.toml", "rb") as f:
        registry = tomllib.load(f)
    spec = next((m for m in registry["models"] if m["name"] == name), None)
    if spec is None:
        sys.exit(f"reference_vectors: unknown model {name!r}")
    directory = cache_dir() / "models" / name
    files = {f["role"]: directory / f["path"] for f in spec["files"]}
    for path in files.values():
        if not path.exists():
            sys.exit(f"reference_vectors: {path} is missing; run python3 scripts/fetch_models.py --model {name}")
    tokenizer = Tokenizer.from_file(str(files["tokenizer"]))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=spec["max_seq_length"])
    return spec, files, tokenizer


def session(path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def embed(spec: dict, sess: ort.InferenceSession, encodings) -> tuple[np.ndarray, int]:
    """Pads to the longest encoding, runs, mean-pools over the mask, L2-normalises."""
    seq = max(len(e.ids) for e in encodings)
    ids = np.zeros((len(encodings), seq), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for row, e in enumerate(encodings):
        ids[row, : len(e.ids)] = e.ids
        mask[row, : len(e.ids)] = e.attention_mask
        types[row, : len(e.ids)] = e.type_ids
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    (hidden,) = sess.run([spec["output"]], {name: feeds[name] for name in spec["inputs"]})
    weights = mask[..., None].astype(np.float64)
    pooled = (hidden.astype(np.float64) * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
    if spec["normalization"] == "l2":
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return pooled, seq


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--sentences", type=Path, default=SENTENCES)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    spec, files, tokenizer = load_model(args.model)
    sess = session(files["onnx"], args.threads)
    sentences = json.loads(args.sentences.read_text())["sentences"]
    rows = []
    for text in sentences:
        encoding = tokenizer.encode(text)
        vector, _ = embed(spec, sess, [encoding])
        rows.append({
            "text": text,
            "tokens": len(encoding.ids),
            "truncated": len(encoding.overflowing) > 0,
            "vector": [float(x) for x in vector[0]],
        })
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "model": spec["name"],
        "max_seq_length": spec["max_seq_length"],
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "sentences": rows,
    }
    args.out.write_text(json.dumps(payload, ensure_ascii=False))
    print(f"reference_vectors: {len(rows)} vectors for {spec['name']} -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
