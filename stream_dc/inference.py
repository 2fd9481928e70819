"""ONNX Runtime session for a bundle's network: feature windows in, unit-length embeddings out.

The execution provider is chosen at run time: CUDA when onnxruntime has it (the ``onnxruntime-gpu`` package) and
the caller allows it, the CPU otherwise. ``EmbeddingModel.provider`` names the one that runs.
"""
from __future__ import annotations

import os

import numpy as np

from .bundle import Bundle, BundleError

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(RuntimeError):
    """The requested execution device is not available."""


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError as error:  # pragma: no cover - a broken installation
        raise DeviceError(f"onnxruntime is not installed ({error}); pip install onnxruntime") from None
    return onnxruntime


def choose_providers(device: str = "auto") -> list[str]:
    """Execution providers for ``device`` ('auto', 'cpu' or 'cuda'), best first."""
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    available = _onnxruntime().get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not has_cuda:
        raise DeviceError("--device cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu in place of onnxruntime)")
    if device in ("cuda", "auto") and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class EmbeddingModel:
    """Runs the bundle's network.

    ``embed(features)`` maps normalised log-mel windows ``(batch, frames, n_mels)`` float32 to embeddings
    ``(batch, frames, n_mels, embedding_dim)`` float32, one unit-length vector per time-frequency bin.
    """

    def __init__(self, bundle: Bundle, device: str = "auto", threads: int | None = None):
        ort = _onnxruntime()
        self.config = bundle.config
        options = ort.SessionOptions()
        options.log_severity_level = 3
        threads = threads or int(os.environ.get("STREAM_DC_THREADS", "0")) or None
        if threads:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(bundle.model_bytes, options, providers=choose_providers(device))
        except DeviceError:
            raise
        except Exception as error:  # onnxruntime raises its own exception types for a bad graph
            raise BundleError(f"{bundle.directory}/model.onnx cannot be loaded: {str(error).splitlines()[0]}") from None
        self.provider = self.session.get_providers()[0]
        if device == "cuda" and self.provider != "CUDAExecutionProvider":  # onnxruntime fell back silently
            raise DeviceError("--device cuda: onnxruntime could not start its CUDA provider (driver or CUDA "
                              f"libraries missing?) and would run on {self.provider}")
        self._check_signature(bundle)

    def _check_signature(self, bundle: Bundle) -> None:
        config = self.config
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != [config.input_name] or config.output_name not in [o.name for o in outputs]:
            raise BundleError(f"{bundle.directory}/model.onnx does not have the inputs/outputs its config.json names")
        in_shape = inputs[0].shape
        out_shape = next(o.shape for o in outputs if o.name == config.output_name)
        if len(in_shape) != 3 or in_shape[2] != config.features.n_mels:
            raise BundleError(f"model.onnx takes {in_shape}, expected (batch, frames, {config.features.n_mels})")
        expected = [config.features.n_mels, config.embedding_dim]
        if len(out_shape) != 4 or list(out_shape[2:]) != expected:
            raise BundleError(f"model.onnx gives {out_shape}, expected (batch, frames, {expected[0]}, {expected[1]})")

    @property
    def device_name(self) -> str:
        return "cuda" if self.provider == "CUDAExecutionProvider" else "cpu"

    def embed(self, features: np.ndarray) -> np.ndarray:
        features = np.ascontiguousarray(features, dtype=np.float32)
        (embeddings,) = self.session.run([self.config.output_name], {self.config.input_name: features})
        return embeddings
