#!/usr/bin/env python3
"""The Python anchor of `cargo bench --bench embed`.

Python onnxruntime + the `tokenizers` package + numpy on the same model files
(from the cache), the same corpus file and the same batch size as the Rust
engine; the same work per batch: tokenize (no padding, truncation at the
registry's max_seq_length), pad to the longest input of the batch, run,
mean-pool over the mask, L2-normalise. Batches are taken in corpus order
(no sorting). Prints one JSON object on stdout.

    .cache/venv/bin/python benches/embed_anchor.py --model all-MiniLM-L6-v2 \
        --corpus target/bench/embed_corpus.txt --batch 8 --threads 2

With --serve it keeps its session and answers requests on stdin, one JSON
object per line, `{"batch": 8, "start": 0, "end": 250, "sorted": true}`, with
`{"latencies": [...], "real_tokens": ..., "padded_tokens": ..., "seconds": ...}`:
the Rust benchmarks interleave segments of the implementations so that other
load on a shared machine hits all alike. `"sorted": true` is Python
onnxruntime at its best: the segment is tokenized, ordered by token count,
then cut into batches (tokenizing is inside the timed region either way).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from reference_vectors import load_model  # noqa: E402  (same registry and cache resolution)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--corpus", required=True, type=Path)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--serve", action="store_true", help="answer segment requests on stdin")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=3, help="batches run before timing")
    args = parser.parse_args()

    spec, files, tokenizer = load_model(args.model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(files["onnx"]), options, providers=["CPUExecutionProvider"])
    sentences = args.corpus.read_text().splitlines()
    batches = [sentences[i : i + args.batch] for i in range(0, len(sentences), args.batch)]

    def run(batch: list[str], encodings=None) -> tuple[int, int]:
        if encodings is None:
            encodings = tokenizer.encode_batch(batch)
        seq = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(batch), seq), dtype=np.int64)
        mask = np.zeros_like(ids)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            mask[row, : len(e.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        (hidden,) = session.run([spec["output"]], {name: feeds[name] for name in spec["inputs"]})
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        return int(mask.sum()), len(batch) * seq

    for batch in batches[: args.warmup]:
        run(batch)
    if args.serve:
        print(json.dumps({"ready": True, "implementation": f"python onnxruntime {ort.__version__}"}), flush=True)
        for line in sys.stdin:
            request = json.loads(line)
            part = sentences[request["start"] : request["end"]]
            size = request["batch"]
            latencies, real, padded = [], 0, 0
            started = time.perf_counter()
            encoded = None
            if request.get("sorted"):
                # Tokenized once, ordered by length, batched in that order.
                encoded = sorted(tokenizer.encode_batch(part), key=lambda e: len(e.ids))
            for i in range(0, len(part), size):
                t0 = time.perf_counter()
                r, p = run(part[i : i + size], encoded[i : i + size] if encoded else None)
                latencies.append(time.perf_counter() - t0)
                real += r
                padded += p
            seconds = time.perf_counter() - started
            print(json.dumps({"latencies": latencies, "real_tokens": real, "padded_tokens": padded, "seconds": seconds}),
                  flush=True)
        return
    latencies = []
    real = padded = 0
    started = time.perf_counter()
    for batch in batches:
        t0 = time.perf_counter()
        r, p = run(batch)
        latencies.append(time.perf_counter() - t0)
        real += r
        padded += p
    total = time.perf_counter() - started
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    print(json.dumps({
        "implementation": f"python onnxruntime {ort.__version__}",
        "batch": args.batch,
        "sentences": len(sentences),
        "seconds": total,
        "sentences_per_s": len(sentences) / total,
        "real_tokens": real,
        "padded_tokens": padded,
        "real_tokens_per_s": real / total,
        "padded_tokens_per_s": padded / total,
        "p50_ms": pick(0.50) * 1e3,
        "p99_ms": pick(0.99) * 1e3,
    }))


if __name__ == "__main__":
    main()
