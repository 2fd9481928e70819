"""Network inference time for one 500-frame window (4 s of audio): PyTorch vs ONNX Runtime, float32 vs float16
storage vs int8 (dynamically quantised) weights, at batch 1 and 4.

    python benchmarks/inference.py [--threads 2] [--repeats 10]

The network has the shipped model's architecture (timing does not depend on the weight values, so no checkpoint
is needed). Needs stream-dc[train]. Writes benchmarks/results/inference.csv.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine, table, write_csv  # noqa: E402


def timed(function, repeats: int) -> float:
    function()  # warm-up
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    import onnxruntime as ort
    import torch

    from export.onnx_graph import build_model, quantize_int8, round_to_storage
    from stream_dc.bundle import load_bundle
    from training.model import DeepClusteringNet, ModelConfig, inference_weights

    torch.set_num_threads(args.threads)
    architecture = load_bundle().config.architecture
    config = ModelConfig(**{k: architecture[k] for k in ModelConfig.__dataclass_fields__})
    torch.manual_seed(0)
    model = DeepClusteringNet(config)
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 100, config.n_mels))  # running statistics away from their initial values
    model.eval()
    weights = inference_weights(model)
    graphs = {"float32": build_model(weights, config.n_mels, config.embedding_dim, "float32"),
              "float16": build_model(round_to_storage(weights, "float16"), config.n_mels, config.embedding_dim,
                                     "float16")}
    graphs["int8"] = quantize_int8(graphs["float32"])
    rows = []
    for batch in (1, 4):
        features = np.random.default_rng(0).standard_normal((batch, 500, config.n_mels)).astype(np.float32)
        tensor = torch.from_numpy(features)
        with torch.no_grad():
            seconds = timed(lambda: model(tensor), args.repeats)
        rows.append({"engine": "pytorch", "weights": "float32", "batch": batch, "ms_per_window": seconds / batch})
        for name, graph in graphs.items():
            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
            seconds = timed(lambda: session.run(None, {"features": features}), args.repeats)
            rows.append({"engine": "onnxruntime", "weights": name, "batch": batch, "ms_per_window": seconds / batch,
                         "model_mb": len(graph) / 1e6})
    for row in rows:
        row["rtf"] = f"{row['ms_per_window'] / 4.0:.4f}"
        row["ms_per_window"] = f"{row['ms_per_window'] * 1000:.1f}"
        row["model_mb"] = f"{row.get('model_mb', 4 * sum(p.numel() for p in model.parameters()) / 1e6):.1f}"
    print(f"machine: {machine()}; {args.threads} threads; {config.layers}x{config.hidden} BLSTM, one window = 4 s")
    print(table(rows, ["engine", "weights", "batch", "ms_per_window", "rtf", "model_mb"]))
    print(f"wrote {write_csv('inference.csv', rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
