"""The inverse of export: a model bundle's ONNX graph read back into plain weight arrays and a PyTorch network.

Float32 and float16 graphs hold the folded LSTM weights as they were exported. Int8 graphs (ONNX Runtime's
``DynamicQuantizeLSTM`` and ``MatMulInteger``) hold quantised weights, transposed, with a scale and zero point per
direction; they are dequantised here. The result feeds ``training.train --init``: fine-tuning starts from the
bundle's network, with its feature normalisation.
"""
from __future__ import annotations

import io

import numpy as np
import onnx
from onnx import numpy_helper

from stream_dc.bundle import Bundle, BundleError

from .model import DeepClusteringNet, ModelConfig, model_with_folded_weights


def _initialisers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for node in model.graph.node:  # float16 storage: a Cast node turns "<name>_f16" into "<name>"
        if node.op_type == "Cast" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]].astype(np.float32)
    return values


def _dequantised(values: dict, name: str) -> np.ndarray:
    """``(directions, in, 4H)`` int8 with per-direction scale/zero point -> ``(directions, 4H, in)`` float32."""
    quantised = values[f"{name}_quantized"].astype(np.float32)
    scale, zero = values[f"{name}_scale"].astype(np.float32), values[f"{name}_zero_point"].astype(np.float32)
    shape = (-1,) + (1,) * (quantised.ndim - 1)
    return np.swapaxes((quantised - zero.reshape(shape)) * scale.reshape(shape), -1, -2)


def read_weights(model_bytes: bytes) -> dict:
    """The network's weights in ``training.model.inference_weights`` layout, from any exported graph."""
    model = onnx.load(io.BytesIO(model_bytes))
    values = _initialisers(model)
    layers, index = [], 0
    while f"lstm{index}_B" in values:
        if f"lstm{index}_W" in values:
            w, r = values[f"lstm{index}_W"], values[f"lstm{index}_R"]
        elif f"lstm{index}_W_quantized" in values:
            w, r = _dequantised(values, f"lstm{index}_W"), _dequantised(values, f"lstm{index}_R")
        else:
            raise BundleError(f"the graph has no weights for LSTM layer {index}")
        layers.append({"W": w.astype(np.float32), "R": r.astype(np.float32), "B": values[f"lstm{index}_B"]})
        index += 1
    output_weight = _matrix(values, "out_w")
    if output_weight is None:
        raise BundleError("the graph has no output layer weights")
    if not layers:
        raise BundleError("the graph has no LSTM layers")
    weights = {"layers": layers, "output_weight": output_weight, "output_bias": values["out_b"].astype(np.float32)}
    mask_weight = _matrix(values, "mask_w")
    if mask_weight is not None:  # a Chimera network's mask head
        weights["mask_weight"], weights["mask_bias"] = mask_weight, values["mask_b"].astype(np.float32)
    return weights


def _matrix(values: dict, name: str) -> np.ndarray | None:
    """A feed-forward layer's weight ``(in, out)`` float32, stored plain or quantised; None when absent."""
    if name in values:
        return values[name].astype(np.float32)
    if f"{name}_quantized" in values:
        return ((values[f"{name}_quantized"].astype(np.float32) - values[f"{name}_zero_point"].astype(np.float32))
                * values[f"{name}_scale"].astype(np.float32))
    return None


def model_from_bundle(bundle: Bundle, mask_head: bool | None = None) -> DeepClusteringNet:
    """The bundle's network as a PyTorch model in evaluation mode (batch norm folded into the LSTM weights).
    ``mask_head`` True gives it a mask head, freshly initialised where the bundle has none; False drops the
    bundle's; None keeps what the bundle has."""
    architecture = {k: v for k, v in bundle.config.architecture.items() if k in ModelConfig.__dataclass_fields__}
    weights = read_weights(bundle.model_bytes)
    hidden = weights["layers"][0]["R"].shape[-1]
    has_head = "mask_weight" in weights
    config = ModelConfig(**{**architecture, "hidden": hidden, "layers": len(weights["layers"]),
                            "n_mels": bundle.config.features.n_mels, "embedding_dim": bundle.config.embedding_dim,
                            "mask_head": has_head if mask_head is None else mask_head})
    if not config.mask_head:
        weights.pop("mask_weight", None)
        weights.pop("mask_bias", None)
    if weights["output_weight"].shape != (2 * hidden, config.n_mels * config.embedding_dim):
        raise BundleError(f"{bundle.directory}: output layer {weights['output_weight'].shape} does not match the "
                          f"config ({config.n_mels} bands x {config.embedding_dim} dimensions)")
    return model_with_folded_weights(config, weights)
