"""The GPU graph of a bundle: its window network with float16 weights, computed in float32, for CUDA.

onnxruntime's CUDA provider has no kernels for the int8 graph's ``DynamicQuantizeLSTM`` and ``MatMulInteger``
(they would run on the CPU, with copies to and from the GPU around them), but it has float LSTM kernels. Float16
storage keeps the copy at 19 MB (float32: 38 MB); on this project's 2-core CPU the float graph runs 2.4x slower
than the int8 one, so the CPU keeps int8. The chunked graph (the live preset) gets no GPU copy: a live chunk is
24 frames, too little work to pay for a GPU's launches, and it would add 26 MB.

``python -m export.gpu_graph BUNDLE`` adds the GPU graph to an existing int8 bundle, built from its dequantised
int8 weights and checked against its int8 graph on the CPU (mean cosine similarity of the embeddings and largest
difference, the export's thresholds for quantisation); ``stream-dc export`` writes it with every int8 bundle,
built from the checkpoint's weights and checked against PyTorch.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from stream_dc.apps.helptext import DefaultsFormatter
from stream_dc.apps.report import Reporter
from stream_dc.bundle import Bundle, BundleError, load_bundle, write_gpu_model
from training.bundle_weights import read_weights

from .exporter import quantisation_error, run_onnx
from .onnx_graph import build_gpu_model

MIN_COSINE, MAX_ABS = 0.999, 0.1  # the int8 graph against a float one: the export's quantisation thresholds


def compare(int8_bytes: bytes, float_bytes: bytes, features: np.ndarray) -> tuple[float, float]:
    """Mean cosine similarity and largest difference of the two graphs' outputs on ``features`` ``(batch, frames,
    n_mels)``, run on the CPU."""
    return quantisation_error(run_onnx(float_bytes, features), run_onnx(int8_bytes, features))


def add_gpu_graph(bundle: Bundle, seed: int = 0) -> tuple[float, float]:
    """Build the GPU graph of ``bundle``'s int8 network, check it, and write it into the bundle; returns the
    check's (mean cosine, largest difference). Raises BundleError when the bundle is not int8 or the check fails."""
    config = bundle.config
    if config.architecture.get("weights") != "int8":
        raise BundleError(f"{bundle.directory}: only an int8 bundle needs a GPU graph (its model.onnx has "
                          f"{config.architecture.get('weights', 'unknown')} weights, which CUDA runs as they are)")
    weights = read_weights(bundle.model_bytes)
    graph = build_gpu_model(weights, config.features.n_mels, config.embedding_dim)
    features = np.random.default_rng(seed).standard_normal((2, config.window_frames, config.features.n_mels))
    cosine, largest = compare(bundle.model_bytes, graph, features.astype(np.float32))
    if not (cosine >= MIN_COSINE and largest <= MAX_ABS):
        raise BundleError(f"{bundle.directory}: the float16 graph strays from the int8 one (mean cosine {cosine:.5f}, "
                          f"largest difference {largest:.3f}): nothing written")
    write_gpu_model(bundle.directory, graph)
    return cosine, largest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(formatter_class=DefaultsFormatter, prog="python -m export.gpu_graph",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="an int8 model bundle folder")
    args = parser.parse_args(argv)
    try:
        cosine, largest = add_gpu_graph(load_bundle(args.bundle))
    except BundleError as error:
        return Reporter("export.gpu_graph").error(str(error))
    print(f"wrote {args.bundle}/model_gpu.onnx (float16 weights; against the int8 graph: mean cosine {cosine:.5f}, "
          f"largest difference {largest:.3f})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
