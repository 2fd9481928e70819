"""Exporting a checkpoint to a bundle: ONNX against PyTorch (float32, float16, int8, both heads of the chimera
network), the checks that refuse a bundle, the export command, --init reading a bundle back, and checkpoints that
would run code."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from export.exporter import ExportError, export_checkpoint  # noqa: E402
from export.onnx_graph import build_model, quantize_int8  # noqa: E402
from stream_dc.bundle import load_bundle  # noqa: E402
from stream_dc.features import FeatureConfig  # noqa: E402
from stream_dc.inference import EmbeddingModel  # noqa: E402
from tests.commands import run  # noqa: E402
from tests.test_model import trained_tiny_model  # noqa: E402
from training.model import DeepClusteringNet, ModelConfig, inference_weights, model_with_folded_weights  # noqa: E402


def test_chimera_network_gives_both_heads_and_the_onnx_graphs_agree_with_torch(tmp_path):
    """A mask head beside the embeddings: shapes and ranges, the window and chunked graphs against PyTorch for
    both heads (float32 and int8), the bundle's runtime models giving the mask, and --init reading it back."""
    from export.exporter import run_chunked, run_onnx
    from stream_dc.inference import ChunkedEmbeddingModel
    from training.bundle_weights import model_from_bundle
    from training.model import chunked_embeddings

    torch.manual_seed(4)
    model = DeepClusteringNet(ModelConfig(n_mels=150, hidden=16, layers=2, embedding_dim=20, mask_head=True))
    model.train()
    for _ in range(3):
        model(torch.randn(4, 50, 150) * 1.5 + 0.3)
    model.eval()
    x = np.random.default_rng(4).standard_normal((2, 60, 150)).astype(np.float32)
    with torch.no_grad():
        embeddings, mask = model(torch.from_numpy(x), with_mask=True)
    assert embeddings.shape == (2, 60, 150, 20) and mask.shape == (2, 60, 150)
    assert float(mask.min()) > 0 and float(mask.max()) < 1
    torch.testing.assert_close(model(torch.from_numpy(x)), embeddings)  # the default output stays the embeddings
    window = run_onnx(build_model(inference_weights(model), 150, 20), x)
    np.testing.assert_allclose(window["voice_mask"], mask.numpy(), atol=1e-5)
    np.testing.assert_allclose(window["embeddings"], embeddings.numpy(), atol=1e-5)
    save_checkpoint(tmp_path / "best.pt", model)
    for weights in ("float32", "int8"):
        summary = export_checkpoint(tmp_path / "best.pt", tmp_path / weights, weights, quantized_min_cosine=0.98,
                                    quantized_max_abs=0.5)
        assert summary["onnx_vs_torch"] < 1e-4 and summary["chunked"]["onnx_vs_torch_max_abs"] < 1e-4
        bundle = load_bundle(tmp_path / weights)
        runtime = EmbeddingModel(bundle, "cpu")
        assert runtime.has_mask
        found_embeddings, found_mask = runtime.run(x)
        tolerance = 1e-4 if weights == "float32" else 0.1
        np.testing.assert_allclose(found_mask, mask.numpy(), atol=tolerance)
        chunked = ChunkedEmbeddingModel(bundle, "cpu")
        chunk_embeddings, chunk_mask = chunked.run(x[0, :24], 8)
        reference_embeddings, reference_mask = chunked_embeddings(model, torch.from_numpy(x[:1, :24]), 8, 16,
                                                                  with_mask=True)
        assert chunk_embeddings.shape == (8, 150, 20) and chunk_mask.shape == (8, 150)
        np.testing.assert_allclose(chunk_mask, reference_mask[0, :8].numpy(), atol=tolerance)
        assert run_chunked(bundle.chunked_model_bytes, x[:1, :24], 8, 16, 2, 16)["voice_mask"].shape == (1, 24, 150)
    read_back = model_from_bundle(load_bundle(tmp_path / "float32"))
    assert read_back.config.mask_head
    with torch.no_grad():
        torch.testing.assert_close(read_back(torch.from_numpy(x), with_mask=True)[1], mask, atol=1e-5, rtol=0)
    assert model_from_bundle(load_bundle(tmp_path / "float32"), mask_head=False).mask is None


def test_a_tampered_export_check_is_refused(tmp_path, monkeypatch):
    """The export compares the largest difference, not the mean: one output value off by more than the tolerance
    is enough to refuse the bundle."""
    import export.exporter as exporter

    save_checkpoint(tmp_path / "best.pt", trained_tiny_model())
    original = exporter.run_onnx

    def one_value_off(model_bytes, features):
        outputs = original(model_bytes, features)
        outputs["embeddings"] = outputs["embeddings"].copy()
        outputs["embeddings"][0, 0, 0, 0] += 1e-3
        return outputs

    monkeypatch.setattr(exporter, "run_onnx", one_value_off)
    with pytest.raises(ExportError, match="differ"):
        export_checkpoint(tmp_path / "best.pt", tmp_path / "bundle", "float32")
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize("weights", ["float32", "float16"])
def test_onnx_equals_torch(weights):
    model = trained_tiny_model()
    arrays = inference_weights(model)
    from export.onnx_graph import round_to_storage

    stored = round_to_storage(arrays, weights)
    data = build_model(stored, 150, 20, weights)
    import onnxruntime as ort

    x = np.random.default_rng(0).standard_normal((2, 60, 150)).astype(np.float32)
    onnx_out = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"features": x})[0]
    reference = model if weights == "float32" else model_with_folded_weights(model.config, stored)
    with torch.no_grad():
        torch_out = reference(torch.from_numpy(x)).numpy()
    assert onnx_out.shape == (2, 60, 150, 20)
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(onnx_out, axis=-1), 1.0, atol=1e-5)


def test_int8_graph_stays_close_to_float32():
    model = trained_tiny_model(1)
    data = build_model(inference_weights(model), 150, 20, "float32")
    import onnxruntime as ort

    x = np.random.default_rng(1).standard_normal((1, 40, 150)).astype(np.float32)
    run = lambda d: ort.InferenceSession(d, providers=["CPUExecutionProvider"]).run(None, {"features": x})[0]  # noqa
    quantized = quantize_int8(data)
    assert len(quantized) < len(data) / 2
    assert np.mean(np.sum(run(data) * run(quantized), axis=-1)) > 0.99


def save_checkpoint(path, model, references=True):
    config = FeatureConfig()
    state = {"model_config": model.config.to_dict(), "model_state": model.state_dict(),
             "feature_config": config.to_dict(), "feature_mean": [0.0] * 150, "feature_std": [1.0] * 150,
             "provenance": {"test": True}}
    if references:
        state["references"] = {"voice": np.eye(20)[0].tolist(), "accompaniment": np.eye(20)[1].tolist(), "chunks": 1}
    torch.save(state, path)


@pytest.mark.parametrize("weights", ["float16", "int8"])
def test_export_writes_a_loadable_verified_bundle(tmp_path, weights):
    save_checkpoint(tmp_path / "best.pt", trained_tiny_model())
    # an untrained random network quantises less cleanly than a trained one (0.994 vs 0.99998 mean cosine)
    summary = export_checkpoint(tmp_path / "best.pt", tmp_path / "bundle", weights, quantized_min_cosine=0.98,
                                quantized_max_abs=0.5)
    bundle = load_bundle(tmp_path / "bundle")
    config = json.loads((tmp_path / "bundle" / "config.json").read_text())
    assert config["architecture"]["hidden"] == 16 and config["architecture"]["weights"] == weights
    assert summary["onnx_vs_torch"] < 1e-4
    embeddings = EmbeddingModel(bundle, "cpu").embed(np.zeros((1, 500, 150), np.float32))
    assert embeddings.shape == (1, 500, 150, 20)


def test_export_command_stores_soft_masks_unless_told_otherwise(tmp_path):
    from export.exporter import main as export_main

    save_checkpoint(tmp_path / "best.pt", trained_tiny_model())
    for extra, softness in (([], 4.0), (["--mask-softness", "0"], 0.0)):
        out = tmp_path / f"bundle{softness:g}"
        assert export_main([str(tmp_path / "best.pt"), "-o", str(out), "--weights", "float32"] + extra) == 0
        assert load_bundle(out).config.mask_softness == softness


def test_export_fails_without_writing(tmp_path):
    save_checkpoint(tmp_path / "best.pt", trained_tiny_model())
    with pytest.raises(ExportError, match="differ"):
        export_checkpoint(tmp_path / "best.pt", tmp_path / "bundle", "float32", tolerance=0.0)
    assert not (tmp_path / "bundle").exists()
    save_checkpoint(tmp_path / "unfinished.pt", trained_tiny_model(), references=False)
    with pytest.raises(ExportError, match="reference centroids"):
        export_checkpoint(tmp_path / "unfinished.pt", tmp_path / "bundle")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ExportError, match="not a readable checkpoint"):
        export_checkpoint(tmp_path / "junk.pt", tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize("weights", ["float32", "int8"])
def test_init_reads_a_bundles_network_back(tmp_path, weights):
    """``--init``: the network read back from a bundle computes what the bundle's graph computes, and exporting it
    again gives the same graph output (exactly for float32; int8 within its quantisation error)."""
    from training.bundle_weights import model_from_bundle

    save_checkpoint(tmp_path / "best.pt", trained_tiny_model(2))
    export_checkpoint(tmp_path / "best.pt", tmp_path / "bundle", weights, quantized_min_cosine=0.98,
                      quantized_max_abs=0.5)
    bundle = load_bundle(tmp_path / "bundle")
    model = model_from_bundle(bundle)
    assert model.config.hidden == 16 and model.config.layers == 2
    x = np.random.default_rng(3).standard_normal((2, 70, 150)).astype(np.float32)
    original = EmbeddingModel(bundle, "cpu").embed(x)
    with torch.no_grad():
        ours = model(torch.from_numpy(x)).numpy()
    again = build_model(inference_weights(model), 150, 20, "float32")
    import onnxruntime as ort

    reexported = ort.InferenceSession(again, providers=["CPUExecutionProvider"]).run(None, {"features": x})[0]
    np.testing.assert_allclose(reexported, ours, atol=1e-5)
    if weights == "float32":
        np.testing.assert_allclose(ours, original, atol=1e-5)
    else:
        assert np.mean(np.sum(ours * original, axis=-1)) > 0.98


def test_a_crafted_checkpoint_cannot_run_code(tmp_path):
    """Checkpoints are loaded with weights_only: a pickle that would call a function is refused."""
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with open(tmp_path / "evil.pt", "wb") as handle:
        pickle.dump({"model_config": Payload()}, handle)
    with pytest.raises(ExportError, match="not a readable checkpoint"):
        export_checkpoint(tmp_path / "evil.pt", tmp_path / "bundle")
    assert not marker.exists() and not (tmp_path / "bundle").exists()


def test_quantisation_leaves_the_root_logger_alone():
    pytest.importorskip("onnx")
    import logging

    from export.onnx_graph import build_model, quantize_int8

    rng = np.random.default_rng(0)
    weights = {"layers": [{"W": rng.standard_normal((2, 32, 150)).astype(np.float32) * 0.1,
                           "R": rng.standard_normal((2, 32, 8)).astype(np.float32) * 0.1,
                           "B": np.zeros((2, 64), np.float32)}],
               "output_weight": rng.standard_normal((16, 3000)).astype(np.float32) * 0.1,
               "output_bias": np.zeros(3000, np.float32)}
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.DEBUG)
    try:
        quantize_int8(build_model(weights, 150, 20))
        assert root.level == logging.DEBUG
    finally:
        root.setLevel(before)


def test_export_and_train_report_bad_arguments(tmp_path):
    pytest.importorskip("torch")
    result = run(["export", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "b")], text=True)
    assert result.returncode == 1 and "checkpoint not found" in result.stderr
    result = run(["train", "--data", str(tmp_path / "nowhere"), "--validation", "x", "--out", str(tmp_path / "r")],
                 text=True)
    assert result.returncode == 1 and "dataset folder not found" in result.stderr


@pytest.fixture(scope="module")
def chimera_bundle(tmp_path_factory):
    """A tiny two-headed network exported to a float32 bundle (both graphs)."""
    folder = tmp_path_factory.mktemp("chimera")
    torch.manual_seed(6)
    model = DeepClusteringNet(ModelConfig(n_mels=150, hidden=16, layers=2, embedding_dim=20, mask_head=True))
    model.train()
    for _ in range(3):
        model(torch.randn(4, 50, 150) * 1.5 + 0.3)
    save_checkpoint(folder / "best.pt", model.eval())
    export_checkpoint(folder / "best.pt", folder / "bundle", "float32")
    return folder / "bundle"


@pytest.mark.parametrize("mode,latency", [("offline", "balanced"), ("stream", "balanced"), ("stream", "live")])
def test_the_mask_head_joins_the_cluster_masks_as_asked(chimera_bundle, mode, latency):
    """With a mask head, ``mask`` applies the head's own mask, ``average`` the mean of it and the cluster masks, and
    ``off`` the cluster masks alone, offline and in both streaming engines; a bundle without a head refuses them."""
    from stream_dc.separator import Separator

    rng = np.random.default_rng(7)
    audio = (0.1 * rng.standard_normal((16000 * 3, 1))).astype(np.float32)
    common = dict(device="cpu", mode=mode, latency=latency, voice_gate=False, refine=False, wiener=False,
                  channel_masks=False)
    vocals = {use: Separator(chimera_bundle, mask_head=use, **common).separate(audio, 16000)[0]
              for use in ("off", "average", "mask")}
    np.testing.assert_allclose(vocals["average"], 0.5 * (vocals["off"] + vocals["mask"]), atol=1e-5)
    assert np.max(np.abs(vocals["mask"] - vocals["off"])) > 1e-3  # the head gives masks of its own
    with pytest.raises(ValueError, match="has no mask head"):
        Separator(None, mask_head="average", device="cpu")
