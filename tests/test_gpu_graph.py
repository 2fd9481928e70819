"""The GPU graph (``model_gpu.onnx``: the window network with float16 weights, for CUDA, which has no int8 LSTM
kernels): what export writes and checks, what the shipped bundle holds, which graph a CUDA session would run, and a
bundle whose GPU graph is damaged or missing. These run on the CPU; ``benchmarks/gpu_check.sh`` measures a GPU."""
import json
import shutil

import numpy as np
import pytest

from stream_dc.bundle import BundleError, load_bundle
from stream_dc.inference import EmbeddingModel, window_graph

CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def outputs(model_bytes: bytes, features: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return session.run(["embeddings"], {"features": features})[0]


def test_the_shipped_gpu_graph_is_the_int8_network_in_float(bundle):
    """Same network: the float16 graph and the int8 one agree as closely as export demands of quantisation (mean
    cosine >= 0.999, largest difference <= 0.1)."""
    features = np.random.default_rng(1).standard_normal((2, 300, bundle.config.features.n_mels)).astype(np.float32)
    gpu, int8 = outputs(bundle.gpu_model_bytes(), features), outputs(bundle.model_bytes, features)
    assert gpu.shape == int8.shape == (2, 300, bundle.config.features.n_mels, bundle.config.embedding_dim)
    cosine = np.mean(np.sum(gpu * int8, axis=-1))
    assert cosine >= 0.999 and np.max(np.abs(gpu - int8)) <= 0.1, (cosine, np.max(np.abs(gpu - int8)))
    assert len(bundle.gpu_model_bytes()) < 20e6  # float16 storage


def test_cuda_runs_the_gpu_graph_and_the_cpu_the_int8_one(bundle, tmp_path, monkeypatch):
    assert window_graph(bundle, CUDA)[1] == "model_gpu.onnx"
    assert window_graph(bundle, ["CPUExecutionProvider"])[1] == "model.onnx"
    plain = tmp_path / "plain"
    shutil.copytree(bundle.directory, plain)
    config = json.loads((plain / "config.json").read_text())
    del config["gpu_model_sha256"]
    (plain / "config.json").write_text(json.dumps(config))
    (plain / "model_gpu.onnx").unlink()
    assert window_graph(load_bundle(plain), CUDA)[1] == "model.onnx"  # an older bundle: the int8 graph, as before
    # a CUDA session, as far as this machine allows: the session is a CPU one, reported as CUDA
    from stream_dc import inference

    real_session = inference._session
    monkeypatch.setattr(inference, "choose_providers", lambda device: CUDA)
    monkeypatch.setattr(inference, "_session", lambda bundle, data, device, threads, name: (
        real_session(bundle, data, "cpu", threads, name)[0], "CUDAExecutionProvider"))
    model = EmbeddingModel(bundle, "auto")
    assert model.file_name == "model_gpu.onnx"
    assert model.embed(np.zeros((1, 50, bundle.config.features.n_mels), np.float32)).shape[:2] == (1, 50)


def test_cuda_that_does_not_start_runs_the_int8_graph_on_the_cpu(bundle, monkeypatch):
    """onnxruntime-gpu installed, CUDA offered but not starting (here: not there): ``auto`` falls back to the CPU,
    which runs the int8 graph, not the float one."""
    from stream_dc import inference

    monkeypatch.setattr(inference, "choose_providers", lambda device: CUDA)
    model = EmbeddingModel(bundle, "auto")
    assert model.provider == "CPUExecutionProvider" and model.file_name == "model.onnx"


def test_a_damaged_or_missing_gpu_graph_is_refused_when_it_is_needed(bundle, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(bundle.directory, damaged)
    (damaged / "model_gpu.onnx").write_bytes(b"not a graph")
    loaded = load_bundle(damaged)  # the CPU never reads it
    with pytest.raises(BundleError, match="model_gpu.onnx does not match"):
        loaded.gpu_model_bytes()
    (damaged / "model_gpu.onnx").unlink()
    missing = load_bundle(damaged)  # a bundle without it still serves the CPU
    assert EmbeddingModel(missing, "cpu").file_name == "model.onnx"
    with pytest.raises(BundleError, match="has no model_gpu.onnx though its config.json names one"):
        missing.gpu_model_bytes()


@pytest.mark.parametrize("gpu_graph", [True, False])
def test_export_writes_a_checked_gpu_graph_with_int8_weights(tmp_path, gpu_graph):
    pytest.importorskip("torch")
    from export.exporter import export_checkpoint
    from tests.test_export import save_checkpoint
    from tests.test_model import trained_tiny_model

    save_checkpoint(tmp_path / "best.pt", trained_tiny_model())
    export_checkpoint(tmp_path / "best.pt", tmp_path / "bundle", "int8", quantized_min_cosine=0.98,
                      quantized_max_abs=0.5, gpu_graph=gpu_graph)
    exported = load_bundle(tmp_path / "bundle")
    assert (exported.gpu_model_bytes() is not None) == gpu_graph
    export = exported.config.provenance["export"]
    assert (export.get("gpu_vs_torch_max_abs", 1.0) < 1e-4) == gpu_graph


def test_a_gpu_graph_is_added_to_an_int8_bundle_and_only_to_one(bundle, tmp_path):
    pytest.importorskip("torch")
    from export.gpu_graph import main

    copy = tmp_path / "copy"
    shutil.copytree(bundle.directory, copy)
    (copy / "model_gpu.onnx").unlink()
    config = json.loads((copy / "config.json").read_text())
    del config["gpu_model_sha256"]
    (copy / "config.json").write_text(json.dumps(config))
    assert main([str(copy)]) == 0
    assert load_bundle(copy).gpu_model_bytes() == bundle.gpu_model_bytes()  # the shipped one was built this way
    config["architecture"]["weights"] = "float16"
    (copy / "config.json").write_text(json.dumps(config))
    assert main([str(copy)]) == 1
