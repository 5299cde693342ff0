"""all-MiniLM-L6-v2 on onnxruntime: a BERT sentence encoder without torch.

The model's weights (safetensors) and tokenizer (`tokenizers`' JSON) come from a folder, in
practice a packaged copy in site-packages (`semantic.py` finds it); nothing is fetched.
`bert_graph` writes the BERT encoder as an ONNX graph with those weights (the `onnx` package
only serialises it), onnxruntime runs it, and the mean pooling over the real tokens and the L2
normalisation follow in numpy, as sentence-transformers does for this model: the vectors are
sentence-transformers' (min cosine 1.000000 over 500 papers; tests/test_semantic.py pins a few
values of its vectors).

Inputs are sorted by length and batched, so padding is small; texts are cut at MAX_TOKENS word
pieces, the model's own limit (`max_seq_length` 256).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MAX_TOKENS = 256
BATCH_SIZE = 16
THREADS = 2  # onnxruntime threads: the two cores of the machines this runs on
_SAFETENSORS_DTYPES = {"F32": np.float32, "I64": np.int64}
def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file, as numpy arrays (the format: an 8-byte little-endian
    header length, a JSON header of dtype/shape/offsets, then the raw data)."""
    data = path.read_bytes()
    (header_size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_size])
    start = 8 + header_size
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        dtype = _SAFETENSORS_DTYPES.get(spec["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {name} has unsupported dtype {spec['dtype']}")
        begin, end = spec["data_offsets"]
        tensors[name] = np.frombuffer(data, dtype=dtype, count=(end - begin) // np.dtype(dtype).itemsize,
                                      offset=start + begin).reshape(spec["shape"])
    return tensors


class MiniLM:
    """A BERT encoder with mean pooling: `encode(texts)` gives unit-length float32 vectors."""

    def __init__(self, folder: Path, threads: int = THREADS) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        config = json.loads((folder / "config.json").read_text())
        self.dimension = int(config["hidden_size"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        graph = bert_graph(read_safetensors(folder / "model.safetensors"), config)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # its warnings about unused initialisers are noise here
        # Idle threads sleep instead of spinning: spinning workers took the cores from the
        # ranking that follows an encode in the same process (rank_many 4.4 s instead of 1 s).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            graph.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimension) unit vectors, in order."""
        result = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return result
        ids = [encoding.ids for encoding in self.tokenizer.encode_batch(list(texts))]
        order = sorted(range(len(ids)), key=lambda at: len(ids[at]))
        for start in range(0, len(order), BATCH_SIZE):
            chosen = order[start : start + BATCH_SIZE]
            width = max(len(ids[at]) for at in chosen)
            batch = np.zeros((len(chosen), width), dtype=np.int64)
            mask = np.zeros((len(chosen), width), dtype=np.float32)
            for row, at in enumerate(chosen):
                batch[row, : len(ids[at])] = ids[at]
                mask[row, : len(ids[at])] = 1
            result[chosen] = self._forward(batch, mask)
        return result

    def _forward(self, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        width = ids.shape[1]
        # Padding never receives attention: a large negative added before the softmax.
        blocked = ((1.0 - mask) * -1e9)[:, None, None, :].astype(np.float32)
        positions = np.arange(width, dtype=np.int64)[None, :]
        (hidden,) = self._session.run(
            None, {"input_ids": ids, "positions": positions, "blocked": blocked}
        )
        pooled = (hidden * mask[:, :, None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


def bert_graph(weights: dict[str, np.ndarray], config: dict) -> Any:
    """The BERT encoder as an ONNX graph (opset 17) with the weights as initialisers:
    inputs `input_ids` (batch, width), `positions` (1, width) and `blocked` (batch, 1, 1,
    width: 0 for a token, -1e9 for padding); output the last hidden states."""
    from onnx import TensorProto, helper, numpy_helper

    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    size = hidden // heads
    eps = float(config.get("layer_norm_eps", 1e-12))
    nodes: list = []
    initializers: list = []

    def constant(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(value, name))
        return name

    def weight(name: str, transpose: bool = False) -> str:
        value = np.asarray(weights[name], dtype=np.float32)
        return constant(name, np.ascontiguousarray(value.T if transpose else value))

    def node(op: str, inputs: list[str], output: str, **attributes: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def layer_norm(x: str, prefix: str, output: str) -> str:
        return node("LayerNormalization", [x, weight(prefix + ".weight"), weight(prefix + ".bias")],
                    output, axis=-1, epsilon=eps)

    def dense(x: str, prefix: str, output: str) -> str:
        product = node("MatMul", [x, weight(prefix + ".weight", transpose=True)], output + "_mm")
        return node("Add", [product, weight(prefix + ".bias")], output)

    words = node("Gather", [weight("embeddings.word_embeddings.weight"), "input_ids"], "words")
    places = node("Gather", [weight("embeddings.position_embeddings.weight"), "positions"], "places")
    token_type = constant("token_type", np.asarray(weights["embeddings.token_type_embeddings.weight"][0],
                                                  dtype=np.float32))
    summed = node("Add", [node("Add", [words, places], "wp"), token_type], "embedded")
    x = layer_norm(summed, "embeddings.LayerNorm", "x0")
    split_heads = constant("split_heads", np.array([0, 0, heads, size], dtype=np.int64))
    join_heads = constant("join_heads", np.array([0, 0, hidden], dtype=np.int64))
    scale = constant("scale", np.array(1 / np.sqrt(size), dtype=np.float32))
    root_half = constant("root_half", np.array(1 / np.sqrt(2), dtype=np.float32))
    one = constant("one", np.array(1, dtype=np.float32))
    half = constant("half", np.array(0.5, dtype=np.float32))
    for at in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{at}."
        t = f"l{at}_"
        per_head = {}
        for part, perm in (("query", [0, 2, 1, 3]), ("key", [0, 2, 3, 1]), ("value", [0, 2, 1, 3])):
            projected = dense(x, p + "attention.self." + part, t + part)
            shaped = node("Reshape", [projected, split_heads], t + part + "_heads")
            per_head[part] = node("Transpose", [shaped], t + part + "_t", perm=perm)
        query = node("Mul", [per_head["query"], scale], t + "q_scaled")
        scores = node("MatMul", [query, per_head["key"]], t + "scores")
        scores = node("Add", [scores, "blocked"], t + "masked")
        probs = node("Softmax", [scores], t + "probs", axis=-1)
        context = node("MatMul", [probs, per_head["value"]], t + "context")
        context = node("Transpose", [context], t + "context_t", perm=[0, 2, 1, 3])
        context = node("Reshape", [context, join_heads], t + "context_joined")
        attended = dense(context, p + "attention.output.dense", t + "attended")
        x = layer_norm(node("Add", [x, attended], t + "res1"), p + "attention.output.LayerNorm", t + "x1")
        up = dense(x, p + "intermediate.dense", t + "up")
        # GELU as BERT has it: x * (1 + erf(x / sqrt 2)) / 2 (onnxruntime fuses the pattern)
        erf = node("Erf", [node("Mul", [up, root_half], t + "up_scaled")], t + "erf")
        gelu = node("Mul", [node("Mul", [up, node("Add", [erf, one], t + "erf1")], t + "g1"), half], t + "gelu")
        down = dense(gelu, p + "output.dense", t + "down")
        x = layer_norm(node("Add", [x, down], t + "res2"), p + "output.LayerNorm", f"x{at + 1}")
    graph = helper.make_graph(
        nodes, "bert",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "width"]),
         helper.make_tensor_value_info("positions", TensorProto.INT64, [1, "width"]),
         helper.make_tensor_value_info("blocked", TensorProto.FLOAT, ["batch", 1, 1, "width"])],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, ["batch", "width", hidden])],
        initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
