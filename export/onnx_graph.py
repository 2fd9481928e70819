"""Build the ONNX graph of the deep clustering network from plain weight arrays (no torch needed).

Graph: ``features (batch, frames, n_mels)`` -> Transpose -> [LSTM (bidirectional) -> (frames, batch, 2H)] x layers
-> MatMul + Add -> Reshape ``(batch, frames, n_mels, dim)`` -> Tanh -> divide by the L2 norm over ``dim`` ->
``embeddings``; a Chimera network's mask head adds MatMul + Add -> Sigmoid -> ``voice_mask`` ``(batch, frames,
n_mels)``. The chunked graph (``build_chunked_model``) computes the same network one chunk at a time for
low-latency streaming. Weights may be stored as float16 (half the file size); they are cast to float32 inside the graph,
which ONNX Runtime folds once when the session is created.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
INPUT_NAME, OUTPUT_NAME, MASK_NAME = "features", "embeddings", "voice_mask"


class _Graph:
    """Nodes and initialisers of a graph under construction; float weights optionally stored as float16."""

    def __init__(self, weight_dtype: str):
        if weight_dtype not in ("float32", "float16"):
            raise ValueError("weight_dtype must be float32 or float16")
        self.weight_dtype, self.nodes, self.initializers = weight_dtype, [], []

    def node(self, op: str, inputs: list[str], outputs: list[str], **attributes) -> None:
        self.nodes.append(helper.make_node(op, inputs, outputs, **attributes))

    def constant(self, name: str, array: np.ndarray, store: bool = True) -> str:
        """Add a weight; float16 storage gets a Cast back to float32."""
        array = np.asarray(array)
        if array.dtype.kind == "f" and self.weight_dtype == "float16" and store:
            self.initializers.append(numpy_helper.from_array(array.astype(np.float16), name + "_f16"))
            self.node("Cast", [name + "_f16"], [name], to=TensorProto.FLOAT)
        else:
            self.initializers.append(numpy_helper.from_array(
                array.astype(np.float32) if array.dtype.kind == "f" else array, name))
        return name

    def embedding_head(self, x: str, weights: dict, n_mels: int, embedding_dim: int) -> None:
        """``x`` ``(batch, frames, 2H)`` -> unit-length ``embeddings`` ``(batch, frames, n_mels, dim)``."""
        self.node("MatMul", [x, self.constant("out_w", weights["output_weight"])], ["z0"])
        self.node("Add", ["z0", self.constant("out_b", weights["output_bias"])], ["z1"])
        shape = self.constant("out_shape", np.array([0, 0, n_mels, embedding_dim], np.int64), store=False)
        self.node("Reshape", ["z1", shape], ["z2"])
        self.node("Tanh", ["z2"], ["t"])
        self.node("ReduceSumSquare", ["t"], ["sq"], axes=[-1], keepdims=1)
        self.node("Max", ["sq", self.constant("eps", np.array(1e-16, np.float32), store=False)], ["sqc"])
        self.node("Sqrt", ["sqc"], ["norm"])
        self.node("Div", ["t", "norm"], [OUTPUT_NAME])

    def mask_head(self, x: str, weights: dict, n_mels: int) -> list:
        """With a mask head in ``weights``: ``x`` ``(batch, frames, 2H)`` -> ``voice_mask`` ``(batch, frames, n_mels)``
        in (0, 1); returns the graph outputs it adds (none without a mask head)."""
        if "mask_weight" not in weights:
            return []
        self.node("MatMul", [x, self.constant("mask_w", weights["mask_weight"])], ["m0"])
        self.node("Add", ["m0", self.constant("mask_b", weights["mask_bias"])], ["m1"])
        self.node("Sigmoid", ["m1"], [MASK_NAME])
        return [helper.make_tensor_value_info(MASK_NAME, TensorProto.FLOAT, ["batch", "frames", n_mels])]

    def serialise(self, name: str, inputs: list, outputs: list, metadata: dict | None) -> bytes:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="stream-dc")
        model.ir_version = 8
        for key, value in (metadata or {}).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, str(value)
        onnx.checker.check_model(model)
        return model.SerializeToString()


def build_model(weights: dict, n_mels: int, embedding_dim: int, weight_dtype: str = "float32",
                metadata: dict | None = None) -> bytes:
    """weights: ``{"layers": [{"W", "R", "B"}...], "output_weight": (2H, n_mels*dim), "output_bias": (n_mels*dim,)}``
    in ONNX gate order (see ``training.model.inference_weights``). Returns the serialised model."""
    g = _Graph(weight_dtype)
    g.node("Transpose", [INPUT_NAME], ["x0"], perm=[1, 0, 2])  # (frames, batch, n_mels)
    x = "x0"
    for index, layer in enumerate(weights["layers"]):
        hidden = layer["R"].shape[-1]
        w, r, b = (g.constant(f"lstm{index}_{k}", layer[k]) for k in ("W", "R", "B"))
        g.node("LSTM", [x, w, r, b], [f"y{index}"], direction="bidirectional", hidden_size=hidden)
        # Y (frames, 2, batch, H) -> (frames, batch, 2, H) -> (frames, batch, 2H)
        g.node("Transpose", [f"y{index}"], [f"yt{index}"], perm=[0, 2, 1, 3])
        shape = g.constant(f"shape{index}", np.array([0, 0, 2 * hidden], np.int64), store=False)
        g.node("Reshape", [f"yt{index}", shape], [f"h{index}"])
        x = f"h{index}"
    g.node("Transpose", [x], ["hb"], perm=[1, 0, 2])  # (batch, frames, 2H)
    g.embedding_head("hb", weights, n_mels, embedding_dim)
    mask_outputs = g.mask_head("hb", weights, n_mels)
    return g.serialise(
        "deep_clustering",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", "frames", n_mels])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", "frames", n_mels, embedding_dim])]
        + mask_outputs,
        metadata)


GPU_WEIGHTS = "float16"  # the GPU graph's weight storage (export.gpu_graph says why)


def build_gpu_model(weights: dict, n_mels: int, embedding_dim: int) -> bytes:
    """``build_model`` with float16 storage (computed in float32): the window graph for CUDA, which has no int8
    LSTM kernels."""
    return build_model(round_to_storage(weights, GPU_WEIGHTS), n_mels, embedding_dim, GPU_WEIGHTS,
                       metadata={"producer": "stream-dc export", "weights": GPU_WEIGHTS, "for": "CUDA"})


CHUNK_NAME, STATE_NAMES, STATE_OUT_NAMES = "chunk", ("state_h", "state_c"), ("state_h_out", "state_c_out")


def build_chunked_model(weights: dict, n_mels: int, embedding_dim: int, weight_dtype: str = "float32",
                        metadata: dict | None = None) -> bytes:
    """The latency-controlled BLSTM step (see ``training.model.chunked_embeddings``), same weights.

    Inputs: ``features (batch, frames, n_mels)`` holding a chunk and its look-ahead, ``chunk`` (int64, ``(1,)``:
    how many of the frames are the chunk, at least one look-ahead frame must follow), and the forward LSTMs'
    states ``state_h``/``state_c (layers, batch, H)`` after the previous chunk (zeros at the start). Outputs:
    ``embeddings (batch, chunk, n_mels, dim)`` of the chunk's frames and ``state_h_out``/``state_c_out``, the
    forward states after the chunk (the look-ahead frames are read again with the next chunk), and with a mask head
    ``voice_mask (batch, chunk, n_mels)``.
    """
    g = _Graph(weight_dtype)
    g.node("Transpose", [INPUT_NAME], ["x0"], perm=[1, 0, 2])  # (frames, batch, n_mels)
    zero, axis0 = (g.constant(n, np.array(v, np.int64), store=False) for n, v in (("zero", [0]), ("axis0", [0])))
    end = g.constant("end", np.array([np.iinfo(np.int64).max], np.int64), store=False)
    x, hidden, finals = "x0", None, {"h": [], "c": []}
    for index, layer in enumerate(weights["layers"]):
        hidden = layer["R"].shape[-1]
        forward = [g.constant(f"lstm{index}_{k}_fw", layer[k][:1]) for k in ("W", "R", "B")]
        # the look-ahead pass gets its own copy: ONNX Runtime's dynamic quantisation corrupts an LSTM weight that
        # two nodes share (seen with onnxruntime 1.32: both nodes then compute with a mangled matrix)
        lookahead = [g.constant(f"lstm{index}_{k}_fw_lookahead", layer[k][:1]) for k in ("W", "R", "B")]
        backward = [g.constant(f"lstm{index}_{k}_bw", layer[k][1:]) for k in ("W", "R", "B")]
        at = g.constant(f"layer{index}", np.array([index], np.int64), store=False)
        after = g.constant(f"layer{index}_end", np.array([index + 1], np.int64), store=False)
        for state in STATE_NAMES:  # (1, batch, H) slice of this layer
            g.node("Slice", [state, at, after, axis0], [f"{state}{index}"])
        g.node("Slice", [x, zero, CHUNK_NAME, axis0], [f"xc{index}"])
        g.node("Slice", [x, CHUNK_NAME, end, axis0], [f"xr{index}"])
        g.node("LSTM", [f"xc{index}", *forward, "", f"state_h{index}", f"state_c{index}"],
               [f"yc{index}", f"hn{index}", f"cn{index}"], direction="forward", hidden_size=hidden)
        g.node("LSTM", [f"xr{index}", *lookahead, "", f"hn{index}", f"cn{index}"], [f"yr{index}"],
               direction="forward", hidden_size=hidden)
        g.node("LSTM", [x, *backward], [f"yb{index}"], direction="reverse", hidden_size=hidden)
        g.node("Concat", [f"yc{index}", f"yr{index}"], [f"yf{index}"], axis=0)  # (frames, 1, batch, H)
        g.node("Concat", [f"yf{index}", f"yb{index}"], [f"y{index}"], axis=1)  # (frames, 2, batch, H)
        g.node("Transpose", [f"y{index}"], [f"yt{index}"], perm=[0, 2, 1, 3])
        shape = g.constant(f"shape{index}", np.array([0, 0, 2 * hidden], np.int64), store=False)
        g.node("Reshape", [f"yt{index}", shape], [f"h{index}"])
        finals["h"].append(f"hn{index}")
        finals["c"].append(f"cn{index}")
        x = f"h{index}"
    g.node("Concat", finals["h"], [STATE_OUT_NAMES[0]], axis=0)
    g.node("Concat", finals["c"], [STATE_OUT_NAMES[1]], axis=0)
    g.node("Slice", [x, zero, CHUNK_NAME, axis0], ["hc"])  # only the chunk's frames are emitted
    g.node("Transpose", ["hc"], ["hb"], perm=[1, 0, 2])
    g.embedding_head("hb", weights, n_mels, embedding_dim)
    mask_outputs = g.mask_head("hb", weights, n_mels)
    layers = len(weights["layers"])
    state = ["layers", "batch", hidden]
    return g.serialise(
        "deep_clustering_chunked",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", "frames", n_mels]),
         helper.make_tensor_value_info(CHUNK_NAME, TensorProto.INT64, [1])]
        + [helper.make_tensor_value_info(name, TensorProto.FLOAT, state) for name in STATE_NAMES],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", "chunk", n_mels, embedding_dim])]
        + [helper.make_tensor_value_info(name, TensorProto.FLOAT, [layers, "batch", hidden])
           for name in STATE_OUT_NAMES] + mask_outputs,
        metadata)


def quantize_int8(model_bytes: bytes) -> bytes:
    """Dynamic int8 quantisation (ONNX Runtime's ``quantize_dynamic``): int8 LSTM and MatMul weights, activations
    quantised on the fly. About 4x smaller and 2x faster on a CPU than float32."""
    import logging
    import tempfile
    from pathlib import Path

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # quantize_dynamic logs advice about pre-processing on the root logger
    try:
        with tempfile.TemporaryDirectory() as folder:
            source, target = Path(folder) / "float32.onnx", Path(folder) / "int8.onnx"
            source.write_bytes(model_bytes)
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
            return target.read_bytes()
    finally:
        root.setLevel(level)


def round_to_storage(weights: dict, weight_dtype: str) -> dict:
    """The weights as the graph will see them after storage (float16 rounding when stored as float16)."""
    if weight_dtype in ("float32", "int8"):  # int8 is quantised from the float32 graph
        return weights

    def rounded(a):
        return np.asarray(a).astype(np.float16).astype(np.float32)

    return {name: [{k: rounded(v) for k, v in layer.items()} for layer in value] if name == "layers" else rounded(value)
            for name, value in weights.items()}
