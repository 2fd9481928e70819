"""The frame voice-activity gate: its arithmetic, its fitting, its place in the bundle, and that every path uses it."""
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from stream_dc.activity import VoiceActivity, frame_features
from stream_dc.bundle import BundleError, load_bundle, write_config
from stream_dc.inference import EmbeddingModel
from stream_dc.separator import Separator
from stream_dc.stream import StreamProcessor
from tests.synthetic import accompaniment, voice


def test_gate_is_the_logistic_of_a_linear_function_of_each_frame():
    rng = np.random.default_rng(0)
    frames, bands, dim = 7, 5, 3
    embeddings = rng.standard_normal((frames, bands, dim)).astype(np.float32)
    log_mel = rng.standard_normal((frames, bands)).astype(np.float32)
    activity = VoiceActivity(rng.standard_normal(bands * (dim + 1)).astype(np.float32), 0.3, offset=1.0)
    gate = activity.gate(embeddings, log_mel)
    for t in range(frames):  # brute force, frame by frame
        z = sum(float(embeddings[t, b, d]) * float(activity.weights[b * dim + d]) for b in range(bands)
                for d in range(dim))
        z += sum(float(log_mel[t, b]) * float(activity.weights[bands * dim + b]) for b in range(bands))
        assert gate[t] == pytest.approx(1 / (1 + np.exp(-(z + 0.3 + 1.0))), rel=1e-5)
    assert frame_features(embeddings, log_mel).shape == (frames, bands * (dim + 1))
    # a frame's gate depends on that frame only
    np.testing.assert_allclose(activity.gate(embeddings[2:4], log_mel[2:4]), gate[2:4], rtol=1e-6)


def gated_bundle(tmp_path, bias):
    """A copy of the shipped bundle whose gate says the same for every frame: voice (bias 60) or none (-60)."""
    directory = tmp_path / f"gate{bias}"
    shutil.copytree(load_bundle().directory, directory)
    config = load_bundle(directory).config
    size = config.features.n_mels * (config.embedding_dim + 1)
    config.voice_activity = VoiceActivity(np.zeros(size, np.float32), float(bias), offset=0.0)
    write_config(directory, config)
    return directory


def test_bundle_keeps_the_gate_and_rejects_a_wrong_one(tmp_path):
    directory = gated_bundle(tmp_path, -2.5)
    loaded = load_bundle(directory).config.voice_activity
    assert loaded.bias == -2.5 and loaded.offset == 0.0 and not loaded.weights.any()
    values = json.loads((directory / "config.json").read_text())
    values["voice_activity"]["weights"] = values["voice_activity"]["weights"][:-1]
    (directory / "config.json").write_text(json.dumps(values))
    with pytest.raises(BundleError, match="voice_activity weights"):
        load_bundle(directory)
    del values["voice_activity"]  # a bundle without a gate still loads, ungated
    (directory / "config.json").write_text(json.dumps(values))
    assert load_bundle(directory).config.voice_activity is None


def test_shipped_model_has_a_gate():
    assert load_bundle().config.voice_activity is not None


def song(seconds=6.0, rate=44100, channels=2):
    """A synthetic song ``(samples, channels)``, the same in every channel."""
    rng = np.random.default_rng(3)
    mixture = voice(seconds, rate, rng) + accompaniment(seconds, rate, rng)
    return np.repeat(mixture[:, None], channels, axis=1).astype(np.float32)


@pytest.mark.parametrize("mode,latency", [("offline", None), ("stream", "balanced"), ("stream", "live")])
def test_every_path_applies_the_gate(tmp_path, mode, latency):
    audio = song()
    options = {"mode": mode, **({"latency": latency} if latency else {}), "device": "cpu"}
    closed_bundle = load_bundle(gated_bundle(tmp_path, -60))
    closed = Separator(closed_bundle, **options)
    vocals, rest = closed.separate(audio, 44100)
    assert np.sum(vocals ** 2) < 1e-6 * np.sum(audio ** 2)
    np.testing.assert_allclose(rest, audio, atol=1e-3)  # the mask refiner leaves a closed mask at about -77 dB
    # an open gate, or none, leaves the masks as they were
    ungated = Separator(closed_bundle, voice_gate=False, **options).separate(audio, 44100)
    opened = Separator(load_bundle(gated_bundle(tmp_path, 60)), **options).separate(audio, 44100)
    assert np.sum(ungated[0] ** 2) > 0.01 * np.sum(audio ** 2)
    np.testing.assert_allclose(opened[0], ungated[0], atol=1e-6)


def test_stream_processor_can_leave_the_gate_out(tmp_path):
    bundle = load_bundle(gated_bundle(tmp_path, -60))
    block = song(2.0, 16000)[:, :1]
    gated = StreamProcessor(bundle, 16000, 1, latency="live", keep="vocals", device="cpu")
    ungated = StreamProcessor(bundle, 16000, 1, latency="live", keep="vocals", device="cpu", voice_gate=False)
    assert gated.resolved.voice_activity is not None and ungated.resolved.voice_activity is None
    out = np.concatenate([gated.process(block), gated.flush()])
    assert np.sum(out ** 2) < 1e-6 * np.sum(block ** 2)


def command_line_vocal_energies(tmp_path, directory, flag: str) -> dict[bool, float]:
    """Energy of the vocals ``stream-dc separate --model directory`` writes for a 3 s song, without ``flag``
    (key False) and with it (key True)."""
    path = tmp_path / "song.wav"
    sf.write(path, song(3.0), 44100)
    energies = {}
    for flags in ([], [flag]):
        out = tmp_path / ("out" + "".join(flags))
        result = subprocess.run([sys.executable, "-m", "stream_dc", "separate", str(path), "-o", str(out),
                                 "--model", str(directory), "-q", *flags], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        vocals, _ = sf.read(out / "song" / "vocals.wav")
        energies[bool(flags)] = float(np.sum(vocals ** 2))
    return energies


def test_command_line_no_voice_gate(tmp_path):
    energies = command_line_vocal_energies(tmp_path, gated_bundle(tmp_path, -60), "--no-voice-gate")
    assert energies[False] < 1e-6 * energies[True]


def test_offset_only_changes_the_stored_offset_and_nothing_else(tmp_path, capsys):
    from training.voice_activity import main as fit_gate

    directory = gated_bundle(tmp_path, -2.5)
    recipe = ["--data", str(tmp_path / "unread"), "--validation", "none"]  # not read: no fitting happens
    assert fit_gate([str(directory), "--offset", "2", "--offset-only"] + recipe) == 0
    changed = load_bundle(directory).config.voice_activity
    assert changed.offset == 2.0 and changed.bias == -2.5 and not changed.weights.any()
    assert fit_gate([str(directory), "--offset", "1.5", "--offset-only"]) == 0  # no recipe needed either
    assert load_bundle(directory).config.voice_activity.offset == 1.5
    with pytest.raises(SystemExit) as usage:  # fitting does need the data
        fit_gate([str(directory), "--offset", "1.5"])
    assert usage.value.code == 2
    assert "--data, --validation" in capsys.readouterr().err
    values = json.loads((directory / "config.json").read_text())
    del values["voice_activity"]
    (directory / "config.json").write_text(json.dumps(values))
    assert fit_gate([str(directory), "--offset", "2", "--offset-only"] + recipe) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "no voice-activity gate" in error[0] and str(directory) in error[0]


def test_voice_activity_regression_finds_a_separable_rule_whatever_the_class_balance():
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
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
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
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
