"""Loss against brute force, folded batch norm against explicit batch norm, ONNX against PyTorch, export checks."""
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
from training.loss import (  # noqa: E402
    clustered_mask_loss,
    deep_clustering_loss,
    mask_inference_loss,
    two_means_assignment,
)
from training.model import (  # noqa: E402
    PRESETS,
    DeepClusteringNet,
    ModelConfig,
    inference_weights,
    model_with_folded_weights,  # noqa: E402
)


def brute_force_loss(embeddings, voice, weights):
    """Build the affinity matrices bin by bin with explicit (frame, band) indices."""
    batch, frames, bands, _ = embeddings.shape
    total = 0.0
    for b in range(batch):
        bins = [(t, f) for t in range(frames) for f in range(bands)]
        v = torch.stack([embeddings[b, t, f] for t, f in bins])
        y = torch.stack([torch.tensor([1.0, 0.0]) if voice[b, t, f] else torch.tensor([0.0, 1.0]) for t, f in bins])
        w = torch.tensor([float(weights[b, t, f]) for t, f in bins])
        difference = v @ v.T - y @ y.T
        total = total + (w[:, None] * w[None, :] * difference ** 2).sum() / w.sum() ** 2
    return total / batch


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 5, 3, 2)])
def test_low_rank_loss_equals_brute_force(shape):
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(*shape, generator=generator), dim=-1)
    voice = torch.rand(shape[:3], generator=generator) > 0.5
    weights = (torch.rand(shape[:3], generator=generator) > 0.3).float()
    expected = brute_force_loss(embeddings, voice, weights)
    assert torch.allclose(deep_clustering_loss(embeddings, voice, weights), expected, rtol=1e-5, atol=1e-6)


def test_loss_sees_a_time_frequency_mix_up():
    """Labels flattened in (band, frame) order against embeddings in (frame, band) order must change the loss."""
    generator = torch.Generator().manual_seed(1)
    embeddings = torch.nn.functional.normalize(torch.randn(1, 4, 6, 3, generator=generator), dim=-1)
    voice = torch.rand(1, 4, 6, generator=generator) > 0.5
    weights = torch.ones(1, 4, 6)
    swapped = voice.transpose(1, 2).reshape(1, 4, 6)
    assert not torch.allclose(deep_clustering_loss(embeddings, voice, weights),
                              deep_clustering_loss(embeddings, swapped, weights))
    # perfect embeddings (one direction per class) give zero loss
    perfect = torch.zeros(1, 4, 6, 3)
    perfect[..., 0] = voice.float()
    perfect[..., 1] = (~voice).float()
    assert deep_clustering_loss(perfect, voice, weights).item() < 1e-6


def two_class_example(generator, separation):
    """``(1, 6, 8, 3)`` embeddings: voice bins near one point, accompaniment bins near another ``separation``
    away; the voice pattern ``(1, 6, 8)`` bool and mixture magnitudes ``(1, 6, 8)``."""
    voice = torch.rand(1, 6, 8, generator=generator) > 0.5
    centre = torch.where(voice[..., None], torch.tensor([separation, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.0]))
    embeddings = centre + 0.01 * torch.randn(1, 6, 8, 3, generator=generator)
    return embeddings, voice, 0.5 + torch.rand(1, 6, 8, generator=generator)


def test_clustered_mask_loss_scores_the_soft_mask_that_two_means_makes():
    generator = torch.Generator().manual_seed(2)
    embeddings, voice, magnitude = two_class_example(generator, separation=4.0)
    weights = torch.ones(1, 6, 8)
    share = voice.half()
    found = two_means_assignment(embeddings.reshape(-1, 3))
    assert torch.equal(found, voice.flatten()) or torch.equal(found, ~voice.flatten())
    separated = clustered_mask_loss(embeddings, magnitude, share, weights, softness=4.0)
    assert separated.item() < 1e-6  # posterior exp(-16) off the own cluster
    # either cluster may be the voice: the complementary share scores the same
    assert clustered_mask_loss(embeddings, magnitude, (~voice).half(), weights, 4.0).item() == pytest.approx(
        separated.item(), abs=1e-7)
    # clusters close together give soft masks, hence an error; the gradient pulls them apart
    close, _, _ = two_class_example(torch.Generator().manual_seed(2), separation=0.2)
    close.requires_grad_(True)
    loss = clustered_mask_loss(close, magnitude, share, weights, softness=4.0)
    assert loss.item() > 0.1
    loss.backward()
    gap = close.grad[voice].mean(0) - close.grad[~voice].mean(0)
    assert gap[0] < 0  # descending the gradient moves the voice bins further along +x, away from the others
    # the error is that of the magnitudes: silent (zero-weight) bins and quiet bins count less
    quiet = magnitude.clone()
    quiet[~voice] = 1e-3
    assert clustered_mask_loss(close.detach(), quiet, share, weights, 4.0) != pytest.approx(loss.item())
    assert clustered_mask_loss(close.detach(), magnitude, share, torch.zeros(1, 6, 8), 4.0).item() == 0.0


def test_mask_inference_loss_is_the_magnitude_weighted_error_of_the_voice():
    """Brute force, bin by bin: sum over active bins of |mask m - share m| over the sum of their m, per example."""
    generator = torch.Generator().manual_seed(5)
    mask, share = torch.rand(2, 4, 6, generator=generator), torch.rand(2, 4, 6, generator=generator)
    magnitude = torch.rand(2, 4, 6, generator=generator) * 3
    weights = (torch.rand(2, 4, 6, generator=generator) > 0.3).float()
    expected = 0.0
    for b in range(2):
        error = total = 0.0
        for t in range(4):
            for f in range(6):
                if weights[b, t, f] > 0:
                    error += abs(float(mask[b, t, f]) * float(magnitude[b, t, f])
                                 - float(share[b, t, f]) * float(magnitude[b, t, f]))
                    total += float(magnitude[b, t, f])
        expected += error / total / 2
    assert mask_inference_loss(mask, magnitude, share, weights).item() == pytest.approx(expected, rel=1e-5)
    assert mask_inference_loss(share, magnitude, share, weights).item() == 0.0
    # the gradient pulls the mask towards the target
    mask.requires_grad_(True)
    mask_inference_loss(mask, magnitude, share, weights).backward()
    active = weights > 0
    assert torch.all(torch.sign(mask.grad[active]) == torch.sign((mask - share).detach()[active]))


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


def explicit_blstm(layer, x, mean=None, var=None):
    """Reference: explicit batch norm of W_ih x, then an LSTM written step by step."""
    z = torch.einsum("dgi,bti->bdtg", layer.weight_ih, x)  # (batch, 2, frames, 4H)
    if mean is None:
        mean, var = z.mean(dim=(0, 2)), z.var(dim=(0, 2), unbiased=False)
    z = layer.gamma[None, :, None] * (z - mean[None, :, None]) / torch.sqrt(var[None, :, None] + layer.eps) \
        + layer.beta[None, :, None]
    hidden = layer.hidden
    outputs = []
    for direction in range(2):
        h = x.new_zeros(x.shape[0], hidden)
        c = x.new_zeros(x.shape[0], hidden)
        steps = range(x.shape[1]) if direction == 0 else reversed(range(x.shape[1]))
        out = [None] * x.shape[1]
        for t in steps:
            gates = z[:, direction, t] + h @ layer.weight_hh[direction].T + layer.bias_hh[direction]
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out[t] = h
        outputs.append(torch.stack(out, dim=1))
    return torch.cat(outputs, dim=-1)


def test_folded_batch_norm_equals_explicit_batch_norm():
    torch.manual_seed(0)
    model = DeepClusteringNet(ModelConfig(n_mels=6, hidden=5, layers=1, embedding_dim=3, dropout=0.0))
    layer = model.blstms[0]
    with torch.no_grad():
        layer.gamma.uniform_(0.5, 1.5)
        layer.beta.uniform_(-0.5, 0.5)
    x = torch.randn(3, 7, 6) * 2 + 0.5
    layer.train()
    torch.testing.assert_close(layer(x), explicit_blstm(layer, x), rtol=1e-4, atol=1e-5)
    layer.eval()  # running statistics, folded into the weights
    torch.testing.assert_close(layer(x), explicit_blstm(layer, x, layer.running_mean, layer.running_var),
                               rtol=1e-4, atol=1e-5)


def trained_tiny_model(seed=0):
    torch.manual_seed(seed)
    model = DeepClusteringNet(ModelConfig(n_mels=150, hidden=16, layers=2, embedding_dim=20))
    model.train()
    for _ in range(3):  # give the running statistics non-trivial values
        model(torch.randn(4, 50, 150) * 1.5 + 0.3)
    return model.eval()


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


def test_paper_preset_trains():
    """The paper's 4 x 500 network runs a training step and its loss goes down on a fixed batch."""
    torch.manual_seed(0)
    model = DeepClusteringNet(PRESETS["paper"])
    assert sum(p.numel() for p in model.parameters()) > 20_000_000
    features = torch.randn(2, 20, 150)
    voice = torch.rand(2, 20, 150) > 0.5
    weights = torch.ones(2, 20, 150)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(3):
        loss = deep_clustering_loss(model(features), voice, weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


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


def test_batch_norm_calibration_keeps_the_network_and_trains_from_data_statistics():
    from training.model import model_with_folded_weights

    folded = model_with_folded_weights(ModelConfig(n_mels=150, hidden=16, layers=2), inference_weights(
        trained_tiny_model(4)))
    x = torch.randn(6, 80, 150) * 2.0 + 0.5
    with torch.no_grad():
        before = folded(x)
    folded.calibrate_batch_norm(x)
    with torch.no_grad():
        assert torch.allclose(folded(x), before, atol=1e-5)
        folded.train()
        folded.dropout.p = 0.0
        assert torch.allclose(folded(x), before, atol=1e-4)  # batch statistics are the calibrated ones


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


def test_label_threshold_separates_voice_clusters_from_accompaniment_alone():
    from training.calibrate import best_threshold

    voice_scores = np.array([0.1, 0.3, 0.5, 0.6])
    alone_scores = np.array([-0.6, -0.4, -0.2])
    assert best_threshold(voice_scores, alone_scores) == pytest.approx((-0.2 + 0.1) / 2, abs=0.02)
    overlapping = best_threshold(np.array([-0.3, 0.2, 0.4]), np.array([-0.5, -0.25, -0.4]))
    assert min(abs(overlapping - cut) for cut in (-0.35, -0.025)) < 1e-9  # either misses one of six mixtures


def _worker_setup():
    import signal

    from threadpoolctl import threadpool_info

    return ([pool["num_threads"] for pool in threadpool_info()], signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
            signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)


def test_training_workers_run_one_blas_thread_and_leave_signals_to_the_trainer():
    pytest.importorskip("threadpoolctl")
    from training.data import quiet_pool

    with quiet_pool(2) as pool:
        threads, ignores_ctrl_c, ignores_sigterm = pool.submit(_worker_setup).result()
    assert threads and all(n == 1 for n in threads) and ignores_ctrl_c and ignores_sigterm


def test_voice_activity_regression_finds_a_separable_rule_whatever_the_class_balance():
    from training.voice_activity import fit_logistic

    rng = np.random.default_rng(4)
    features = rng.standard_normal((4000, 12)).astype(np.float32)
    direction = rng.standard_normal(12).astype(np.float32)
    labels = features @ direction > 1.2  # about one in nine positive
    weights, bias = fit_logistic(features, labels)
    found = features @ weights + bias > 0
    assert np.mean(found[labels]) > 0.95 and np.mean(~found[~labels]) > 0.95
    assert np.dot(weights, direction) / (np.linalg.norm(weights) * np.linalg.norm(direction)) > 0.95


def test_voice_activity_fits_on_both_graphs_of_a_bundle():
    from stream_dc.features import LogMel, stft
    from stream_dc.inference import ChunkedEmbeddingModel
    from stream_dc.presets import PRESETS
    from tests.synthetic import accompaniment, voice
    from training.data import Stems
    from training.embedders import chunk_embedder, window_embedder
    from training.mixing import MixingConfig
    from training.voice_activity import fit_voice_activity

    bundle = load_bundle()
    config = bundle.config
    log_mel = LogMel(config.features, config.feature_mean, config.feature_std)
    rng = np.random.default_rng(8)
    stems = [Stems(f"clip{i}", f"mir1k:singer{i}", voice(3.0, 16000, rng), accompaniment(3.0, 16000, rng), "mir1k")
             for i in range(3)]
    stems.append(Stems("piece", "instrumental:piece", np.zeros(0, np.float32), accompaniment(3.0, 16000, rng),
                       "instrumental"))
    live = PRESETS["live"]
    windows = window_embedder(EmbeddingModel(bundle, "cpu").embed, config.window_frames, log_mel)
    chunks = chunk_embedder(ChunkedEmbeddingModel(bundle, "cpu"), live.hop, live.lookahead, log_mel)
    normalised = log_mel.normalise(log_mel.log_mel(stft(stems[0].voice)))
    assert windows(normalised).shape == chunks(normalised).shape == (len(normalised), config.features.n_mels,
                                                                       config.embedding_dim)
    activity, statistics = fit_voice_activity(stems, MixingConfig(), log_mel, [windows, chunks])
    assert statistics["embedders"] == 2 and statistics["frames"] > 0 and 0 < statistics["voiced_share"] < 1
    assert activity.problems(config.features.n_mels, config.embedding_dim) == []
