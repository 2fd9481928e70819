"""``stream-dc export CHECKPOINT -o BUNDLE_DIR``: a training checkpoint -> a verified model bundle.

The network is folded (batch norm into the LSTM input weights), written as an ONNX graph, and run by ONNX Runtime
and by PyTorch on the same windows. With float16 weight storage, PyTorch runs the same float16-rounded weights.
With int8 weights the float32 graph is checked against PyTorch first, then the quantised graph against the
float32 one (mean cosine similarity of the embeddings and largest difference). If any check fails the export
fails and nothing is written; otherwise the bundle is written atomically (``model.onnx`` + ``config.json``).
The bundle also holds the chunked graph of the same weights (``model_chunked.onnx``, the live preset's
latency-controlled BLSTM), verified the same way against PyTorch's chunked computation, and an int8 bundle the
GPU graph (``model_gpu.onnx``: float16 weights, for CUDA; see ``export.gpu_graph``), verified against PyTorch with
the same float16-rounded weights.
"""
from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from stream_dc.activity import VoiceActivity
from stream_dc.apps.helptext import DefaultsFormatter
from stream_dc.apps.report import Reporter
from stream_dc.bundle import BundleConfig, sha256_of, write_bundle
from stream_dc.features import FeatureConfig
from training.model import (
    DeepClusteringNet,
    ModelConfig,
    chunked_embeddings,
    inference_weights,
    model_with_folded_weights,
)

from .onnx_graph import (
    CHUNK_NAME,
    GPU_WEIGHTS,
    INPUT_NAME,
    MASK_NAME,
    OUTPUT_NAME,
    STATE_NAMES,
    STATE_OUT_NAMES,
    build_chunked_model,
    build_gpu_model,
    build_model,
    quantize_int8,
    round_to_storage,
)

WEIGHT_TYPES = ("float16", "float32", "int8")


class ExportError(RuntimeError):
    """The checkpoint cannot be exported, or ONNX Runtime disagrees with PyTorch."""


def run_onnx(model_bytes: bytes, features: np.ndarray) -> dict[str, np.ndarray]:
    """The graph's heads on ``features``: ``{"embeddings": ..., "voice_mask": ...}`` (no mask without a mask head)."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs() if o.name in (OUTPUT_NAME, MASK_NAME)]
    return dict(zip(names, session.run(names, {INPUT_NAME: features})))


def torch_heads(model: DeepClusteringNet, features: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch's heads on ``features``, as ``run_onnx`` names them."""
    with torch.no_grad():
        embeddings, mask = model(torch.from_numpy(features), with_mask=True)
    return {OUTPUT_NAME: embeddings.numpy(), **({MASK_NAME: mask.numpy()} if mask is not None else {})}


def largest_difference(found: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> float:
    """The largest absolute difference over every head of two runs (each head must be in both, of one shape)."""
    if set(found) != set(expected):
        raise ExportError(f"the graph gives {sorted(found)}, the network {sorted(expected)}")
    for name, value in found.items():
        if value.shape != expected[name].shape:
            raise ExportError(f"ONNX {name} shape {value.shape} differs from PyTorch {expected[name].shape}")
    return max(float(np.max(np.abs(value - expected[name]))) for name, value in found.items())


def verify(model_bytes: bytes, model: DeepClusteringNet, features: np.ndarray) -> float:
    """Largest absolute difference between ONNX Runtime and PyTorch on ``features``, over both heads."""
    return largest_difference(run_onnx(model_bytes, features), torch_heads(model, features))


CHUNK_CHECK_FRAMES, CHUNK_CHECKS = 120, ((8, 16), (5, 3))  # frames and (chunk, look-ahead) pairs verified


def run_chunked(model_bytes: bytes, features: np.ndarray, chunk: int, lookahead: int, layers: int,
                hidden: int) -> dict[str, np.ndarray]:
    """Run a chunked graph over ``features (batch, frames, n_mels)`` chunk by chunk, carrying its states; the heads
    as ``run_onnx`` names them."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    heads = [o.name for o in session.get_outputs() if o.name in (OUTPUT_NAME, MASK_NAME)]
    state = [np.zeros((layers, features.shape[0], hidden), np.float32) for _ in STATE_NAMES]
    outputs: dict[str, list] = {name: [] for name in heads}
    for start in range(0, features.shape[1], chunk):
        decided = min(chunk, features.shape[1] - start)
        *values, state[0], state[1] = session.run(heads + list(STATE_OUT_NAMES), {
            INPUT_NAME: features[:, start:start + chunk + lookahead], CHUNK_NAME: np.array([decided], np.int64),
            STATE_NAMES[0]: state[0], STATE_NAMES[1]: state[1]})
        for name, value in zip(heads, values):
            outputs[name].append(value)
    return {name: np.concatenate(parts, axis=1) for name, parts in outputs.items()}


def quantisation_error(float_out: dict[str, np.ndarray], quantized_out: dict[str, np.ndarray]) -> tuple[float, float]:
    """How far an int8 graph strays from its float graph: the mean cosine of the embeddings and the largest
    difference over every head."""
    cosine = float(np.mean(np.sum(float_out[OUTPUT_NAME] * quantized_out[OUTPUT_NAME], axis=-1)))
    return cosine, largest_difference(quantized_out, float_out)


def export_chunked(config: ModelConfig, stored: dict, features: np.ndarray, weight_dtype: str, graph_dtype: str,
                   tolerance: float, min_cosine: float, max_abs: float) -> tuple[bytes, dict]:
    """The chunked graph of the same weights, verified against PyTorch's chunked computation (and the int8 graph
    against the float one) for every pair of ``CHUNK_CHECKS``. Returns the graph and what was measured."""
    reference = model_with_folded_weights(config, stored)
    float_bytes = build_chunked_model(stored, config.n_mels, config.embedding_dim, graph_dtype,
                                      metadata={"producer": "stream-dc export", "graph": "chunked"})
    model_bytes = quantize_int8(float_bytes) if weight_dtype == "int8" else float_bytes
    report = {"checked": [list(pair) for pair in CHUNK_CHECKS], "onnx_vs_torch_max_abs": 0.0}
    for chunk, lookahead in CHUNK_CHECKS:
        embeddings, mask = chunked_embeddings(reference, torch.from_numpy(features), chunk, lookahead, with_mask=True)
        expected = {OUTPUT_NAME: embeddings.numpy(), **({MASK_NAME: mask.numpy()} if mask is not None else {})}
        float_out = run_chunked(float_bytes, features, chunk, lookahead, config.layers, config.hidden)
        error = largest_difference(float_out, expected)
        report["onnx_vs_torch_max_abs"] = max(report["onnx_vs_torch_max_abs"], error)
        if not error <= tolerance:
            raise ExportError(f"the chunked graph and PyTorch's chunked network differ by {error:.2e} (chunk "
                              f"{chunk}, look-ahead {lookahead}; tolerance {tolerance:.0e}): bundle not written")
        if weight_dtype == "int8":
            out = run_chunked(model_bytes, features, chunk, lookahead, config.layers, config.hidden)
            cosine, largest = quantisation_error(float_out, out)
            report["int8_mean_cosine"] = min(report.get("int8_mean_cosine", 1.0), cosine)
            if not (cosine >= min_cosine and largest <= max_abs):
                raise ExportError(f"the int8 chunked graph strays from float32 (mean cosine {cosine:.5f}, largest "
                                  f"difference {largest:.3f}): bundle not written; export with --weights float16 "
                                  "instead")
    return model_bytes, report


def load_checkpoint(checkpoint: Path) -> tuple[dict, DeepClusteringNet]:
    """The finished run's ``best.pt`` and its network in evaluation mode. Raises ExportError."""
    try:
        # weights_only: a checkpoint holds tensors and plain values; unpickling anything else could run code
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ExportError(f"checkpoint not found: {checkpoint}") from None
    except Exception as error:
        raise ExportError(f"{checkpoint} is not a readable checkpoint ({type(error).__name__})") from None
    required = ("model_config", "model_state", "feature_config", "feature_mean", "feature_std")
    if not isinstance(state, dict) or any(k not in state for k in required):
        raise ExportError(f"{checkpoint} is not a stream-dc training checkpoint")
    if "references" not in state:
        raise ExportError(f"{checkpoint} has no reference centroids: export the best.pt of a finished training run")
    trained = DeepClusteringNet(ModelConfig.from_dict(state["model_config"]))
    trained.load_state_dict(state["model_state"])
    return state, trained.eval()


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, weight_dtype: str = "float16",
                      tolerance: float = 1e-4, window_frames: int = 500, seed: int = 0,
                      quantized_min_cosine: float = 0.999, quantized_max_abs: float = 0.1,
                      mask_softness: float = 0.0, mask_head_use: str = "off", gpu_graph: bool = True) -> dict:
    """Export ``checkpoint`` to the bundle ``out_dir``; returns a summary dict. Raises ExportError. ``mask_head_use``
    is how the runtime joins a Chimera network's mask head to the cluster masks by default; ``gpu_graph`` adds the
    GPU graph to an int8 bundle."""
    checkpoint = Path(checkpoint)
    state, trained = load_checkpoint(checkpoint)
    config = trained.config
    if mask_head_use != "off" and not config.mask_head:
        raise ExportError(f"--mask-head-use {mask_head_use}: {checkpoint} has no mask head")
    stored = round_to_storage(inference_weights(trained), weight_dtype)
    graph_dtype = "float32" if weight_dtype == "int8" else weight_dtype
    model_bytes = build_model(stored, config.n_mels, config.embedding_dim, graph_dtype,
                              metadata={"producer": "stream-dc export", "checkpoint": checkpoint.name})
    features = np.random.default_rng(seed).standard_normal((2, window_frames, config.n_mels)).astype(np.float32)
    onnx_error = verify(model_bytes, model_with_folded_weights(config, stored), features)
    if not onnx_error <= tolerance:
        raise ExportError(f"ONNX Runtime and PyTorch differ by {onnx_error:.2e} (tolerance {tolerance:.0e}): "
                          "bundle not written")
    quantization = {}
    if weight_dtype == "int8":
        float_out = run_onnx(model_bytes, features)
        model_bytes = quantize_int8(model_bytes)
        cosine, largest = quantisation_error(float_out, run_onnx(model_bytes, features))
        quantization = {"mean_cosine_vs_float32": cosine, "max_abs_vs_float32": largest}
        if not (cosine >= quantized_min_cosine and largest <= quantized_max_abs):
            raise ExportError(f"int8 model strays from float32 (mean cosine {cosine:.5f}, largest difference "
                              f"{largest:.3f}): bundle not written; export with --weights float16 instead")
    chunked_bytes, chunked = export_chunked(config, stored, features[:, :CHUNK_CHECK_FRAMES], weight_dtype, graph_dtype,
                                            tolerance, quantized_min_cosine, quantized_max_abs)
    gpu_bytes, gpu = None, {}
    if weight_dtype == "int8" and gpu_graph:
        gpu_bytes = build_gpu_model(inference_weights(trained), config.n_mels, config.embedding_dim)
        gpu_error = verify(gpu_bytes, model_with_folded_weights(config, round_to_storage(stored, GPU_WEIGHTS)),
                           features)
        if not gpu_error <= tolerance:
            raise ExportError(f"the GPU graph and PyTorch differ by {gpu_error:.2e} (tolerance {tolerance:.0e}): "
                              "bundle not written")
        gpu = {"gpu_vs_torch_max_abs": gpu_error}
    # effect of the weight storage precision on the trained network's output
    storage_error = largest_difference(torch_heads(model_with_folded_weights(config, stored), features),
                                       torch_heads(trained, features))
    measured = {"onnx_vs_torch_max_abs": onnx_error, "storage_vs_trained_max_abs": storage_error, **quantization,
                "chunked": chunked, **gpu}
    bundle_config = _bundle_config(state, trained, checkpoint, weight_dtype, window_frames, mask_softness, measured)
    bundle_config.mask_head_use = mask_head_use
    write_bundle(out_dir, bundle_config, model_bytes, chunked_bytes, gpu_bytes)
    return {"bundle": str(out_dir), "bytes": len(model_bytes), "onnx_vs_torch": onnx_error,
            "storage_vs_trained": storage_error, **quantization, "chunked": chunked, **gpu}


def _bundle_config(state: dict, trained: DeepClusteringNet, checkpoint: Path, weight_dtype: str, window_frames: int,
                   mask_softness: float, measured: dict) -> BundleConfig:
    """The bundle's ``config.json`` for the checkpoint ``state``, with what the export measured in provenance."""
    config, references = trained.config, state["references"]
    provenance = dict(state.get("provenance", {}))
    provenance.pop("history", None)
    provenance["export"] = {
        "checkpoint": checkpoint.name, "checkpoint_sha256": sha256_of(checkpoint.read_bytes()),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "weights": weight_dtype,
        "reference_chunks": int(references.get("chunks", 0)), **measured,
    }
    bundle_config = BundleConfig(
        features=FeatureConfig.from_dict(state["feature_config"]),
        feature_mean=np.asarray(state["feature_mean"], np.float32),
        feature_std=np.asarray(state["feature_std"], np.float32),
        embedding_dim=config.embedding_dim, window_frames=window_frames,
        voice_centroid=np.asarray(references["voice"], np.float32),
        accompaniment_centroid=np.asarray(references["accompaniment"], np.float32),
        model_sha256="",
        architecture={**config.to_dict(), "weights": weight_dtype,
                      "parameters": int(sum(p.numel() for p in trained.parameters()))},
        provenance=provenance, input_name=INPUT_NAME, output_name=OUTPUT_NAME, mask_softness=mask_softness,
    )
    if "labelling" in state:
        bundle_config.voice_thresholds = tuple(float(v) for v in state["labelling"]["voice_thresholds"])
        provenance["labelling"] = state["labelling"].get("statistics", {})
        if "voice_activity" in state["labelling"]:
            gate = state["labelling"]["voice_activity"]
            bundle_config.voice_activity = VoiceActivity.from_dict(gate)
            provenance["voice_activity"] = gate.get("statistics", {})
    return bundle_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="best.pt of a finished training run")
    parser.add_argument("-o", "--out", required=True, help="bundle folder to write")
    parser.add_argument("--weights", choices=WEIGHT_TYPES, default="int8",
                        help="int8: dynamically quantised, 2x faster on CPUs (default); float16: half-size float "
                             "weights computed in float32; float32")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed ONNX/PyTorch difference")
    parser.add_argument("--mask-softness", type=float, default=4.0, metavar="ALPHA",
                        help="the bundle's default masks: > 0 soft, softmax(-ALPHA x distance) (default 4, as the "
                             "shipped model: soft masks measure better than binary ones); 0 binary, as the paper")
    parser.add_argument("--no-gpu-graph", dest="gpu_graph", action="store_false",
                        help="leave out the GPU graph (model_gpu.onnx, 19 MB: float16 weights for CUDA) of an int8 "
                             "bundle")
    parser.add_argument("--mask-head-use", choices=("off", "average", "mask"), default="off",
                        help="a Chimera network's default: off (the cluster masks), average (their mean with the "
                             "head's mask) or mask (the head's alone); --mask-head at run time overrides it")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        formatter_class=DefaultsFormatter, prog="stream-dc export", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run(args)


def run(args) -> int:
    try:
        summary = export_checkpoint(args.checkpoint, args.out, args.weights, args.tolerance,
                                    mask_softness=args.mask_softness, mask_head_use=args.mask_head_use,
                                    gpu_graph=args.gpu_graph)
    except ExportError as error:
        return Reporter("export").error(str(error))
    from stream_dc.bundle import load_bundle

    from .sanity import check_bundle

    warning = check_bundle(args.out, load_bundle(args.out).config.provenance)
    if warning:
        Reporter("export").warning(warning)
    detail = (f"int8 vs float32: mean cosine {summary['mean_cosine_vs_float32']:.5f}, largest difference "
              f"{summary['max_abs_vs_float32']:.3f}" if args.weights == "int8" else
              f"{args.weights} storage changes embeddings by at most {summary['storage_vs_trained']:.1e}")
    if "gpu_vs_torch_max_abs" in summary:
        detail += f"; GPU graph (float16) vs PyTorch max difference {summary['gpu_vs_torch_max_abs']:.1e}"
    print(f"wrote {summary['bundle']} ({summary['bytes'] / 1e6:.1f} MB model; float graph vs PyTorch max difference "
          f"{summary['onnx_vs_torch']:.1e}; {detail})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
