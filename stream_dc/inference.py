"""ONNX Runtime sessions for a bundle's network: feature windows in, unit-length embeddings out; and the chunked
graph that streams the same network a few frames at a time.

The execution provider is chosen at run time: CUDA when onnxruntime has it (the ``onnxruntime-gpu`` package) and
the caller allows it, the CPU otherwise. ``EmbeddingModel.provider`` names the one that runs. On CUDA the window
network runs the bundle's GPU graph (``model_gpu.onnx``: float weights) when it has one: CUDA has no kernels for
the int8 graph's quantised LSTM, which would run on the CPU between copies. The chunked graph has no GPU copy (see
``export.gpu_graph``): in a CUDA session its int8 LSTMs run on the CPU.
"""
from __future__ import annotations

import os

import numpy as np

from .bundle import GPU_MODEL_FILE, MODEL_FILE, Bundle, BundleError

DEVICES = ("auto", "cpu", "cuda")
MASK_OUTPUT = "voice_mask"  # a Chimera network's second head: a voice mask per bin


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
        raise DeviceError("--device cuda: this onnxruntime has no CUDA provider (install onnxruntime-gpu in place of "
                          "onnxruntime)")
    if device in ("cuda", "auto") and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def thread_setting(threads: int | None, default: int | None = None) -> int | None:
    """onnxruntime's intra-op threads: ``threads`` if given, else ``STREAM_DC_THREADS``, else ``default`` (None:
    onnxruntime's own choice, one per core)."""
    return threads or int(os.environ.get("STREAM_DC_THREADS", "0")) or default


def window_graph(bundle: Bundle, providers: list[str]) -> tuple[bytes, str]:
    """The window network's graph to run on ``providers`` (best first) and its file name: the GPU graph for CUDA when
    the bundle has one, ``model.onnx`` otherwise."""
    if providers[0] == "CUDAExecutionProvider" and bundle.config.gpu_model_sha256:
        return bundle.gpu_model_bytes(), GPU_MODEL_FILE
    return bundle.model_bytes, MODEL_FILE


def _session(bundle: Bundle, model_bytes: bytes, device: str, threads: int | None, file_name: str):
    """An onnxruntime session for ``model_bytes`` and the provider it runs on; ``--device cuda`` never falls back
    to the CPU silently (onnxruntime does when CUDA fails to start)."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    threads = thread_setting(threads)
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        session = ort.InferenceSession(model_bytes, options, providers=choose_providers(device))
    except DeviceError:
        raise
    except Exception as error:  # onnxruntime raises its own exception types for a bad graph
        raise BundleError(f"{bundle.directory}/{file_name} cannot be loaded: {str(error).splitlines()[0]}") from None
    provider = session.get_providers()[0]
    if device == "cuda" and provider != "CUDAExecutionProvider":
        raise DeviceError("--device cuda: onnxruntime could not start its CUDA provider (driver or CUDA "
                          f"libraries missing?) and would run on {provider}")
    return session, provider


class EmbeddingModel:
    """Runs the bundle's network.

    ``embed(features)`` maps normalised log-mel windows ``(batch, frames, n_mels)`` float32 to embeddings
    ``(batch, frames, n_mels, embedding_dim)`` float32, one unit-length vector per time-frequency bin. ``run``
    gives the pair (embeddings, voice mask ``(batch, frames, n_mels)``) of a Chimera network (``has_mask``), the
    mask None for a network without a mask head.
    """

    def __init__(self, bundle: Bundle, device: str = "auto", threads: int | None = None):
        self.config = bundle.config
        model_bytes, self.file_name = window_graph(bundle, choose_providers(device))
        self.session, self.provider = _session(bundle, model_bytes, device, threads, self.file_name)
        if self.provider != "CUDAExecutionProvider" and self.file_name != MODEL_FILE:
            # CUDA was offered but did not start (``auto``): the CPU runs the int8 graph, 2.4x faster there
            model_bytes, self.file_name = bundle.model_bytes, MODEL_FILE
            self.session, self.provider = _session(bundle, model_bytes, device, threads, self.file_name)
        self._check_signature(bundle)
        self.has_mask = MASK_OUTPUT in [o.name for o in self.session.get_outputs()]
        self.outputs = [self.config.output_name] + ([MASK_OUTPUT] if self.has_mask else [])

    def _check_signature(self, bundle: Bundle) -> None:
        config = self.config
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if [i.name for i in inputs] != [config.input_name] or config.output_name not in [o.name for o in outputs]:
            raise BundleError(f"{bundle.directory}/{self.file_name} does not have the inputs/outputs its config.json "
                              "names")
        in_shape = inputs[0].shape
        out_shape = next(o.shape for o in outputs if o.name == config.output_name)
        if len(in_shape) != 3 or in_shape[2] != config.features.n_mels:
            raise BundleError(f"{self.file_name} takes {in_shape}, expected (batch, frames, {config.features.n_mels})")
        expected = [config.features.n_mels, config.embedding_dim]
        if len(out_shape) != 4 or list(out_shape[2:]) != expected:
            raise BundleError(f"{self.file_name} gives {out_shape}, expected (batch, frames, {expected[0]}, "
                              f"{expected[1]})")

    @property
    def device_name(self) -> str:
        return "cuda" if self.provider == "CUDAExecutionProvider" else "cpu"

    def embed(self, features: np.ndarray) -> np.ndarray:
        features = np.ascontiguousarray(features, dtype=np.float32)
        (embeddings,) = self.session.run([self.config.output_name], {self.config.input_name: features})
        return embeddings

    def run(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        features = np.ascontiguousarray(features, dtype=np.float32)
        outputs = self.session.run(self.outputs, {self.config.input_name: features})
        return outputs[0], (outputs[1] if self.has_mask else None)


class ChunkedEmbeddingModel:
    """Runs the bundle's chunked graph (the latency-controlled BLSTM): one chunk of frames and its look-ahead at a
    time, carrying the forward LSTMs' states from chunk to chunk.

    ``embed(features, chunk)``: normalised log-mel ``(chunk + lookahead, n_mels)`` float32 -> embeddings of the first
    ``chunk`` frames ``(chunk, n_mels, embedding_dim)``; ``run`` gives them with the chunk's voice mask ``(chunk,
    n_mels)`` (None without a mask head). ``reset()`` starts a new stream.
    """

    def __init__(self, bundle: Bundle, device: str = "auto", threads: int | None = None):
        if bundle.chunked_model_bytes is None:
            raise BundleError(f"model bundle {bundle.directory} has no chunked graph (model_chunked.onnx) for the "
                              "low-latency presets: export it again with this stream-dc, or use a window preset")
        self.session, self.provider = _session(bundle, bundle.chunked_model_bytes, device, threads,
                                               "model_chunked.onnx")
        inputs = {i.name: i for i in self.session.get_inputs()}
        if set(inputs) != {"features", "chunk", "state_h", "state_c"}:
            raise BundleError(f"{bundle.directory}/model_chunked.onnx does not have the chunked graph's inputs")
        self.layers, self.hidden = (int(v) for v in (bundle.config.architecture.get("layers", 0),
                                                     bundle.config.architecture.get("hidden", 0)))
        shape = inputs["state_h"].shape
        if isinstance(shape[2], int):
            self.hidden = shape[2]
        if not (self.layers > 0 and self.hidden > 0):
            raise BundleError(f"{bundle.directory}/config.json does not give the network's layers and units")
        self.has_mask = MASK_OUTPUT in [o.name for o in self.session.get_outputs()]
        self.outputs = ["embeddings", "state_h_out", "state_c_out"] + ([MASK_OUTPUT] if self.has_mask else [])
        self.reset()

    def reset(self) -> None:
        self.state_h = np.zeros((self.layers, 1, self.hidden), np.float32)
        self.state_c = np.zeros((self.layers, 1, self.hidden), np.float32)

    def embed(self, features: np.ndarray, chunk: int) -> np.ndarray:
        return self.run(features, chunk)[0]

    def run(self, features: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray | None]:
        features = np.ascontiguousarray(features[None], dtype=np.float32)
        embeddings, self.state_h, self.state_c, *mask = self.session.run(self.outputs, {
            "features": features, "chunk": np.array([chunk], np.int64), "state_h": self.state_h,
            "state_c": self.state_c})
        return embeddings[0], (mask[0][0] if mask else None)
