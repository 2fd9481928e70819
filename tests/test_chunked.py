"""The latency-controlled BLSTM: PyTorch reference, exported chunked graph, and the live preset's engine."""
import numpy as np
import pytest

from stream_dc.stream import PRESETS, StreamProcessor
from tests.synthetic import accompaniment, voice
from tests.test_stream import run_blocks

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from export.exporter import export_checkpoint, run_chunked  # noqa: E402
from export.onnx_graph import build_chunked_model  # noqa: E402
from stream_dc.bundle import load_bundle  # noqa: E402
from training.model import DeepClusteringNet, ModelConfig, chunked_embeddings, inference_weights  # noqa: E402


def tiny_model(seed=0):
    torch.manual_seed(seed)
    model = DeepClusteringNet(ModelConfig(hidden=16, layers=2))
    model.train()
    for _ in range(3):  # non-trivial batch-norm statistics
        model(torch.randn(4, 40, 150) * 1.5 + 0.2)
    return model.eval()


def test_with_look_ahead_to_the_end_the_chunked_network_is_the_offline_one():
    model = tiny_model()
    x = torch.randn(2, 61, 150)
    with torch.no_grad():
        offline = model(x)
    for chunk in (1, 8, 61):
        torch.testing.assert_close(chunked_embeddings(model, x, chunk, lookahead=61), offline, atol=1e-5, rtol=0)
    # a short look-ahead truncates the backward context, and changes the result
    assert (chunked_embeddings(model, x, 8, 4) - offline).abs().max() > 1e-3


@pytest.mark.parametrize("chunk,lookahead", [(8, 16), (5, 3), (1, 1), (20, 61)])
def test_chunked_graph_equals_the_pytorch_reference(chunk, lookahead):
    model = tiny_model(1)
    graph = build_chunked_model(inference_weights(model), 150, 20)
    x = np.random.default_rng(2).standard_normal((1, 61, 150)).astype(np.float32)
    onnx_out = run_chunked(graph, x, chunk, lookahead, layers=2, hidden=16)["embeddings"]
    expected = chunked_embeddings(model, torch.from_numpy(x), chunk, lookahead).numpy()
    np.testing.assert_allclose(onnx_out, expected, atol=1e-5)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A bundle exported from a tiny network, with its int8 chunked graph."""
    folder = tmp_path_factory.mktemp("chunked")
    model = tiny_model(3)
    torch.save({"model_config": model.config.to_dict(), "model_state": model.state_dict(),
                "feature_config": load_bundle().config.features.to_dict(), "feature_mean": [0.0] * 150,
                "feature_std": [1.0] * 150, "references": {"voice": np.eye(20)[0].tolist(),
                                                           "accompaniment": np.eye(20)[1].tolist(), "chunks": 1}},
               folder / "best.pt")
    summary = export_checkpoint(folder / "best.pt", folder / "bundle", "int8", quantized_min_cosine=0.98,
                                quantized_max_abs=0.5)
    assert summary["chunked"]["onnx_vs_torch_max_abs"] < 1e-4
    return load_bundle(folder / "bundle")


def test_export_writes_a_verified_chunked_graph(tiny_bundle):
    from stream_dc.inference import ChunkedEmbeddingModel

    assert tiny_bundle.chunked_model_bytes and (tiny_bundle.directory / "model_chunked.onnx").is_file()
    runner = ChunkedEmbeddingModel(tiny_bundle, "cpu")
    x = np.random.default_rng(4).standard_normal((40, 150)).astype(np.float32)
    first = runner.embed(x[:24], 8)
    assert first.shape == (8, 150, 20)
    np.testing.assert_allclose(np.linalg.norm(first, axis=-1), 1.0, atol=1e-5)
    second = runner.embed(x[8:32], 8)  # the forward state carries over: not the same as a fresh start
    runner.reset()
    assert np.abs(runner.embed(x[8:32], 8) - second).max() > 1e-4
    # a corrupted chunked graph is refused by its checksum
    corrupt = tiny_bundle.directory.parent / "corrupt"
    import shutil

    shutil.copytree(tiny_bundle.directory, corrupt)
    (corrupt / "model_chunked.onnx").write_bytes(b"not a graph")
    from stream_dc.bundle import BundleError

    with pytest.raises(BundleError, match="model_chunked.onnx does not match"):
        load_bundle(corrupt)


def test_window_presets_work_without_a_chunked_graph(tmp_path):
    import shutil

    from stream_dc.bundle import BundleError

    shutil.copytree(load_bundle().directory, tmp_path / "plain")
    (tmp_path / "plain" / "model_chunked.onnx").unlink(missing_ok=True)
    config = (tmp_path / "plain" / "config.json")
    import json

    values = json.loads(config.read_text())
    values.pop("chunked_model_sha256", None)
    config.write_text(json.dumps(values))
    plain = load_bundle(tmp_path / "plain")
    StreamProcessor(plain, 44100, 2, latency="balanced", device="cpu")
    with pytest.raises(BundleError, match="no chunked graph"):
        StreamProcessor(plain, 44100, 2, latency="live", device="cpu")


def song(seconds, rate, voice_from, seed=0):
    rng = np.random.default_rng(seed)
    v, a = voice(seconds, rate, rng), accompaniment(seconds, rate, rng)
    v[:int(voice_from * rate)] = 0
    return v, a


def test_live_preset_is_block_invariant_with_its_latency(tiny_bundle):
    v, a = song(4.0, 44100, 0.5, seed=1)
    audio = np.stack([v + a, 0.8 * v + a], axis=1).astype(np.float32)
    whole = run_blocks(StreamProcessor(tiny_bundle, 44100, 2, latency="live", device="cpu"), audio, [len(audio)])
    rng = np.random.default_rng(5)
    sizes = [int(n) for n in rng.integers(1, 3000, 100)] + [1, 7, 64]
    processor = StreamProcessor(tiny_bundle, 44100, 2, latency="live", device="cpu")
    cut = run_blocks(processor, audio, sizes)
    assert processor.latency_ms <= 250
    assert cut.shape == (len(audio) + processor.latency_samples, 2)
    np.testing.assert_allclose(cut, whole, atol=1e-5)


def test_live_preset_with_the_shipped_model_keeps_its_labels_when_the_voice_enters_late(bundle):
    """Accompaniment alone for 4 s, then a singer: once it sings, its part comes out as vocals in every second that
    follows (the labels do not flip). Before it, the more voice-like cluster of the accompaniment is taken for
    voice (the labelling favours finding a voice; see training/calibrate.py): a fifth of its energy, at most a
    third. The voice-activity gate is left out: this is about the cluster labels, and the gate, fitted on real
    singing, takes this synthetic voice for a voice only part of the time."""
    rate = 16000
    v, a = song(12.0, rate, voice_from=4.0, seed=6)
    a *= np.sqrt(np.mean(v[4 * rate:] ** 2) / np.mean(a[4 * rate:] ** 2))  # 0 dB once the voice sings
    processor = StreamProcessor(bundle, rate, 1, latency=PRESETS["live"], keep="vocals", device="cpu",
                                voice_gate=False)
    vocals = run_blocks(processor, (v + a)[:, None], [512])[processor.latency_samples:, 0]
    assert np.sum(vocals[:4 * rate] ** 2) < 0.33 * np.sum(a[:4 * rate] ** 2)
    for second in range(5, 12):
        part = slice(second * rate, (second + 1) * rate)
        gain = 10 * np.log10(np.sum(v[part] ** 2) / np.sum((v[part] - vocals[part]) ** 2))
        before = 10 * np.log10(np.sum(v[part] ** 2) / np.sum(a[part] ** 2))
        assert gain > before + 1.0, (second, gain, before)
