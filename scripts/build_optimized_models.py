#!/usr/bin/env python3
"""Build the optimised variants of all-MiniLM-L6-v2 from its safetensors.

Both start from the fp32 graph of scripts/build_fp32_models.py (same weights,
same opset 17 graph, in its `fusable` form: the attention mask and score
scaling written as Hugging Face's export writes them) and are deterministic for the pinned packages of
.cache/venv (onnx 1.23.2, onnxruntime 1.31.1, sympy 1.14.0), so
scripts/fetch_models.py checks them against the sha256 in models/registry.toml
like any downloaded file.

--variant fused
    ONNX Runtime's transformer optimiser (onnxruntime.transformers, model type
    bert, 12 heads, hidden 384, Python fusions only: opt_level 0 so that
    nothing machine-specific is baked in): multi-head attention fused into
    `Attention`, residual + LayerNorm into `SkipLayerNormalization`, bias +
    GELU into `BiasGelu`. fp32 throughout.

--variant int8
    int8 weights and activations where that keeps the answers: every MatMul
    with constant weights computes in int8 (weights per output column;
    activations per token, at run time, so a text's vector does not depend on
    its batch), except that the few input channels whose activations are
    outliers (the [CLS] token's massive values in some LayerNorm and GELU
    outputs: up to 30 where the median channel reaches 1) are taken out of the
    int8 product and computed in fp32 beside it (`x[:, c] @ W[c, :]`, added
    back after the bias). Which channels those are was measured once on a
    calibration text (`--calibrate`) and is recorded in
    models/calibration/all-MiniLM-L6-v2-int8.json, so the build does not
    depend on the machine it runs on. Measured while choosing this
    (docs/embeddings.md): ONNX Runtime's dynamic quantisation (one scale per
    tensor) reached cosine 0.980 alone and 0.9977 with the split, but a
    text's vector then changed with its batch (cosine 0.984 batched against
    single); per-token activations without the split reached 0.986.

    .cache/venv/bin/python scripts/build_optimized_models.py --variant int8 --model-zip model.zip --out model.onnx
    .cache/venv/bin/python scripts/build_optimized_models.py --calibrate models/calibration/all-MiniLM-L6-v2-int8.json --model-zip model.zip
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_fp32_models  # noqa: E402  (the fp32 graph these variants start from)

REPO = Path(__file__).resolve().parent.parent
OUTLIERS = REPO / "models" / "calibration" / "all-MiniLM-L6-v2-int8.json"
# A channel is an outlier when its calibration maximum |x| is above this
# multiple of the median channel's.
OUTLIER_FACTOR = 4.0


def fp32_graph(model_zip: Path) -> onnx.ModelProto:
    config, weights = build_fp32_models.load(model_zip)
    return build_fp32_models.build(config, weights, fusable=True)


def serialize(model: onnx.ModelProto) -> bytes:
    return model.SerializeToString(deterministic=True)


def fused(model: onnx.ModelProto) -> onnx.ModelProto:
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "fp32.onnx"
        source.write_bytes(serialize(model))
        optimised = optimizer.optimize_model(
            str(source), model_type="bert", num_heads=12, hidden_size=384,
            optimization_options=FusionOptions("bert"), opt_level=0, use_gpu=False, only_onnxruntime=False,
        )
    counts = {k: v for k, v in optimised.get_fused_operator_statistics().items() if v}
    print(f"build_optimized_models: fused {counts}", file=sys.stderr)
    for op, expected in (("Attention", 6), ("SkipLayerNormalization", 12), ("BiasGelu", 6)):
        if counts.get(op, 0) < expected:
            sys.exit(f"build_optimized_models: expected {expected} {op} fusions, got {counts}")
    optimised.model.producer_name = "spindle-build-optimized"
    return optimised.model


def weighted_matmuls(model: onnx.ModelProto) -> dict[str, list]:
    """MatMuls with constant weights, grouped by the activation they read."""
    initializers = {init.name for init in model.graph.initializer}
    groups: dict[str, list] = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in initializers:
            groups.setdefault(node.input[0], []).append(node)
    return groups


def calibration_text() -> list[str]:
    """Text to find outlier channels on: generated like the gate corpus but
    from another seed (the gate's own text is never used to build)."""
    sys.path.insert(0, str(REPO / "scripts"))
    import make_gate_corpus as grammar

    rng = random.Random(7)
    topics = list(grammar.TOPICS)
    text = [grammar.fill(rng, grammar.TOPICS[rng.choice(topics)]) for _ in range(300)]
    text += [" ".join(grammar.fill(rng, grammar.TOPICS[t]) for _ in range(3)) for t in topics * 4]
    text += [grammar.foreign(rng) for _ in range(20)]
    text += ["", "a", "OK", "?", "123", "hello world"]
    return text


def calibrate(model: onnx.ModelProto, tokenizer_json: bytes, out: Path) -> None:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    groups = weighted_matmuls(model)
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for name in groups:
        probe.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(serialize(probe), options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_str(tokenizer_json.decode())
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=256)
    maxima = {name: None for name in groups}
    for text in calibration_text():
        ids = np.array([tokenizer.encode(text).ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        for name, value in zip(groups, session.run(list(groups), feeds)):
            peak = np.abs(value).reshape(-1, value.shape[-1]).max(axis=0)
            maxima[name] = peak if maxima[name] is None else np.maximum(maxima[name], peak)
    outliers = {}
    for name, peak in maxima.items():
        median = float(np.median(peak))
        channels = [int(c) for c in np.nonzero(peak > OUTLIER_FACTOR * median)[0]]
        if channels:
            outliers[name] = {"channels": channels, "max_over_median": round(float(peak.max()) / median, 1)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "model": "all-MiniLM-L6-v2",
        "rule": f"channels whose max |activation| over the calibration text exceeds {OUTLIER_FACTOR} x the median channel's",
        "calibration": "scripts/build_optimized_models.py calibration_text() (the gate corpus grammar, seed 7)",
        "outliers": outliers,
    }, indent=1, sort_keys=True) + "\n")
    total = sum(len(v["channels"]) for v in outliers.values())
    print(f"build_optimized_models: {total} outlier channels in {len(outliers)} activations -> {out}", file=sys.stderr)


def split_outliers(model: onnx.ModelProto, outliers: dict) -> tuple[onnx.ModelProto, list[str]]:
    """Takes the outlier channels out of each MatMul's int8 product: the main
    MatMul reads the activation with those channels zeroed (and their weight
    rows zeroed), a small fp32 MatMul computes them, and the two are added
    after the bias. Returns the graph and the names of the fp32 MatMuls."""
    groups = weighted_matmuls(model)
    initializers = {init.name: init for init in model.graph.initializer}
    missing = [name for name in outliers if name not in groups]
    if missing:
        sys.exit(f"build_optimized_models: {OUTLIERS} names activations this graph lacks: {missing[:3]}; "
                 "rerun --calibrate")
    consumers_of = {}
    for node in model.graph.node:
        for name in node.input:
            consumers_of.setdefault(name, []).append(node)
    new_nodes, fp32_matmuls = [], []
    for activation, spec in sorted(outliers.items()):
        channels = np.array(spec["channels"], dtype=np.int64)
        width = numpy_helper.to_array(initializers[groups[activation][0].input[1]]).shape[0]
        keep = np.ones(width, dtype=np.float32)
        keep[channels] = 0.0
        model.graph.initializer.append(numpy_helper.from_array(keep, activation + ".inlier_mask"))
        model.graph.initializer.append(numpy_helper.from_array(channels, activation + ".outlier_channels"))
        new_nodes.append(helper.make_node("Mul", [activation, activation + ".inlier_mask"],
                                          [activation + ".inliers"], name=activation + ".inliers"))
        new_nodes.append(helper.make_node("Gather", [activation, activation + ".outlier_channels"],
                                          [activation + ".outliers"], name=activation + ".outliers", axis=-1))
        for matmul in groups[activation]:
            weight_name = matmul.input[1]
            weight = numpy_helper.to_array(initializers[weight_name])
            rows = np.ascontiguousarray(weight[channels, :])
            model.graph.initializer.append(numpy_helper.from_array(rows, weight_name + ".outlier_rows"))
            zeroed = weight.copy()
            zeroed[channels, :] = 0.0
            initializers[weight_name].CopyFrom(numpy_helper.from_array(zeroed, weight_name))
            matmul.input[0] = activation + ".inliers"
            bias_add = next(node for node in consumers_of[matmul.output[0]] if node.op_type == "Add")
            total = bias_add.output[0]
            bias_add.output[0] = total + ".inliers"
            side = matmul.name + ".outliers"
            new_nodes.append(helper.make_node("MatMul", [activation + ".outliers", weight_name + ".outlier_rows"],
                                              [total + ".outliers"], name=side))
            new_nodes.append(helper.make_node("Add", [total + ".inliers", total + ".outliers"], [total],
                                              name=matmul.name + ".outliers_added"))
            fp32_matmuls.append(side)
    topological(model, new_nodes)
    return model, fp32_matmuls


def quantize_per_token(model: onnx.ModelProto) -> onnx.ModelProto:
    """Every MatMul with constant weights (but the fp32 outlier ones) becomes
    an int8 product: its activation quantised per token (row) to uint8 with
    zero point 128 and scale max|row| / 127, its weights per output column to
    int8 with scale max|column| / 127; the int32 result is scaled back per
    row (DequantizeLinear) and per column (Mul). A token's quantisation
    depends on that token alone, so a text's vector does not depend on the
    other texts of its batch (ONNX Runtime's dynamic quantisation uses one
    scale per tensor, i.e. per batch: batched and single vectors of the same
    text then differ by up to 1.5 %)."""
    initializers = {init.name: init for init in model.graph.initializer}
    groups: dict[str, list] = {}
    for node in model.graph.node:
        if (node.op_type == "MatMul" and node.input[1] in initializers
                and not node.name.endswith(".outliers")):
            groups.setdefault(node.input[0], []).append(node)

    def constant(name: str, array: np.ndarray) -> str:
        model.graph.initializer.append(numpy_helper.from_array(array, name))
        return name

    constant("int8.inverse_127", np.array(1.0 / 127.0, dtype=np.float32))
    constant("int8.epsilon", np.array(1e-8, dtype=np.float32))
    constant("int8.zero_point", np.array(128, dtype=np.uint8))
    constant("int8.zero", np.array([0], dtype=np.int64))
    constant("int8.two", np.array([2], dtype=np.int64))
    new_nodes = []

    def op(op_type: str, inputs: list[str], output: str, **attrs) -> str:
        new_nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output

    for activation, matmuls in sorted(groups.items()):
        q = activation + ".int8"
        width = numpy_helper.to_array(initializers[matmuls[0].input[1]]).shape[0]
        rows = op("Reshape", [activation, constant(q + ".rows_shape", np.array([-1, width], dtype=np.int64))],
                  q + ".rows")
        peak = op("ReduceMax", [op("Abs", [rows], q + ".abs")], q + ".peak", axes=[1], keepdims=0)
        scale = op("Mul", [op("Max", [peak, "int8.epsilon"], q + ".peak_floor"), "int8.inverse_127"], q + ".scale")
        zero_points = op("Expand", ["int8.zero_point", op("Shape", [scale], q + ".count")], q + ".zero_points")
        quantised = op("QuantizeLinear", [rows, scale, zero_points], q + ".u8", axis=0)
        leading = op("Slice", [op("Shape", [activation], q + ".shape"), "int8.zero", "int8.two"],
                     q + ".leading")
        for matmul in matmuls:
            weight_name = matmul.input[1]
            weight = numpy_helper.to_array(initializers[weight_name])
            column_scale = (np.maximum(np.abs(weight).max(axis=0), 1e-12) / 127.0).astype(np.float32)
            weight_int8 = np.clip(np.round(weight / column_scale), -127, 127).astype(np.int8)
            constant(weight_name + ".int8", weight_int8)
            constant(weight_name + ".column_scale", column_scale)
            output = matmul.output[0]
            matmul.op_type = "MatMulInteger"
            del matmul.input[:]
            matmul.input.extend([quantised, weight_name + ".int8", "int8.zero_point"])
            matmul.output[0] = output + ".int32"
            scaled_rows = op("DequantizeLinear", [output + ".int32", scale], output + ".rows_scaled", axis=0)
            scaled = op("Mul", [scaled_rows, weight_name + ".column_scale"], output + ".scaled")
            target = op("Concat", [leading, constant(output + ".width", np.array([weight.shape[1]], dtype=np.int64))],
                        output + ".target", axis=0)
            new_nodes.append(helper.make_node("Reshape", [scaled, target], [output], name=output + ".reshape"))
    used = {name for node in list(model.graph.node) + new_nodes for name in node.input}
    kept = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    return topological(model, new_nodes)


def topological(model: onnx.ModelProto, new_nodes: list) -> onnx.ModelProto:
    """The graph's nodes plus `new_nodes`, producers before consumers."""
    nodes = list(model.graph.node) + new_nodes
    available = {i.name for i in model.graph.input} | {i.name for i in model.graph.initializer} | {""}
    ordered = []
    while nodes:
        ready = [node for node in nodes if all(name in available for name in node.input)]
        if not ready:
            sys.exit("build_optimized_models: the graph has a cycle or a missing input")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        ready_ids = {id(node) for node in ready}
        nodes = [node for node in nodes if id(node) not in ready_ids]
    del model.graph.node[:]
    model.graph.node.extend(ordered)
    return model


def int8(model: onnx.ModelProto) -> onnx.ModelProto:
    outliers = json.loads(OUTLIERS.read_text())["outliers"]
    model, _fp32_matmuls = split_outliers(model, outliers)
    quantised = quantize_per_token(model)
    onnx.checker.check_model(quantised)
    quantised.producer_name = "spindle-build-optimized"
    return quantised


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-zip", required=True, type=Path)
    parser.add_argument("--variant", choices=["fused", "int8"])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--calibrate", type=Path, metavar="OUT.json",
                        help="measure the outlier channels and write them (for --variant int8)")
    args = parser.parse_args()

    model = fp32_graph(args.model_zip)
    if args.calibrate:
        import zipfile

        with zipfile.ZipFile(args.model_zip) as zf:
            tokenizer_json = zf.read("tokenizer.json")
        calibrate(model, tokenizer_json, args.calibrate)
        return
    if not (args.variant and args.out):
        parser.error("give --variant and --out (or --calibrate)")
    built = fused(model) if args.variant == "fused" else int8(model)
    data = serialize(built)
    args.out.write_bytes(data)
    print(f"build_optimized_models: wrote {args.out} ({len(data)} bytes, variant {args.variant})", file=sys.stderr)


if __name__ == "__main__":
    main()
