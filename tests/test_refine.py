"""The per-bin mask refiner: its features and arithmetic, its place in the bundle, every path applying it, and
fitting it."""
import json
import shutil

import numpy as np
import pytest

from stream_dc.bundle import BundleError, load_bundle, write_config
from stream_dc.refine import MONO_FEATURES, STEREO_FEATURES, MaskRefiner, RefinerNet, refiner_features
from stream_dc.separator import Separator
from tests.test_voice_activity import command_line_vocal_energies, song


def constant_net(inputs: int, bias: float, hidden: int = 4) -> RefinerNet:
    """A net whose correction is ``bias`` for every bin."""
    rng = np.random.default_rng(inputs)
    return RefinerNet([(rng.standard_normal((inputs, hidden)).astype(np.float32), np.zeros(hidden, np.float32)),
                       (rng.standard_normal((hidden, hidden)).astype(np.float32), np.zeros(hidden, np.float32)),
                       (np.zeros((hidden, 1), np.float32), np.full(1, bias, np.float32))])


def random_net(inputs: int, seed: int, hidden: int = 4) -> RefinerNet:
    rng = np.random.default_rng(seed)
    shapes = [(inputs, hidden), (hidden, hidden), (hidden, 1)]
    return RefinerNet([(rng.standard_normal(s).astype(np.float32), rng.standard_normal(s[1]).astype(np.float32))
                       for s in shapes])


def spectra(frames=6, bins=9, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((frames, bins, channels)) + 1j * rng.standard_normal((frames, bins, channels))
            ).astype(np.complex64)


def test_features_read_the_mask_the_frequency_the_level_and_the_stereo_balance():
    x = spectra()
    masks = np.linspace(0.01, 0.99, x.shape[0] * x.shape[1]).reshape(x.shape[:2]).astype(np.float32)
    frequencies = np.linspace(0, 8000, x.shape[1]).astype(np.float32)
    mono = refiner_features(masks, x[..., :1], frequencies, stereo=False)
    stereo = refiner_features(masks, x, frequencies, stereo=True)
    assert mono.shape == x.shape[:2] + (MONO_FEATURES,) and stereo.shape == x.shape[:2] + (STEREO_FEATURES,)
    np.testing.assert_allclose(4 * stereo[..., 0], np.log(masks / (1 - masks)), rtol=1e-5)
    np.testing.assert_allclose(stereo[0, :, 1], np.log2(np.maximum(frequencies, 50) / 1000) / 3, rtol=1e-6)
    assert np.allclose(stereo[..., 2].max(axis=1), 0) and np.all(stereo[..., 2] <= 0)  # level against the loudest bin
    centre = np.repeat(x[..., :1], 2, axis=2)  # the same in both channels: all mid
    np.testing.assert_allclose(refiner_features(masks, centre, frequencies, True)[..., 3:], 1.0, atol=1e-6)
    opposite = np.concatenate([x[..., :1], -x[..., :1]], axis=2)  # all side
    np.testing.assert_allclose(refiner_features(masks, opposite, frequencies, True)[..., 3:], -1.0, atol=1e-6)


def test_refined_mask_is_the_logistic_of_the_corrected_logit_frame_by_frame():
    x = spectra(frames=8)
    rng = np.random.default_rng(1)
    masks = rng.uniform(0, 1, x.shape[:2]).astype(np.float32)
    frequencies = np.linspace(0, 22050, x.shape[1]).astype(np.float32)
    identity = MaskRefiner(constant_net(MONO_FEATURES, 0.0), constant_net(STEREO_FEATURES, 0.0))
    np.testing.assert_allclose(identity.refine(masks, x, frequencies), np.clip(masks, 1e-4, 1 - 1e-4), atol=1e-6)
    raised = MaskRefiner(constant_net(MONO_FEATURES, 2.0), constant_net(STEREO_FEATURES, 2.0)).refine(
        masks, x, frequencies)
    clipped = np.clip(masks, 1e-4, 1 - 1e-4)
    np.testing.assert_allclose(raised, 1 / (1 + np.exp(-(np.log(clipped / (1 - clipped)) + 2))), rtol=1e-5)
    refiner = MaskRefiner(random_net(MONO_FEATURES, 2), random_net(STEREO_FEATURES, 3))
    whole = refiner.refine(masks, x, frequencies)
    assert np.all((whole > 0) & (whole < 1))
    # each frame on its own: blocks of any size give the same masks
    parts = np.concatenate([refiner.refine(masks[:3], x[:3], frequencies),
                            refiner.refine(masks[3:], x[3:], frequencies)])
    np.testing.assert_allclose(parts, whole, rtol=1e-6)
    # two channels use the stereo net, one or three the mono one
    mono_only = MaskRefiner(refiner.mono, constant_net(STEREO_FEATURES, 0.0))
    np.testing.assert_allclose(mono_only.refine(masks, x, frequencies), identity.refine(masks, x, frequencies),
                               atol=1e-6)
    three = np.concatenate([x, x[..., :1]], axis=2)
    assert not np.allclose(mono_only.refine(masks, three, frequencies), clipped, atol=1e-3)


def refined_bundle(tmp_path, bias):
    """A copy of the shipped bundle whose refiner moves every mask's logit by ``bias``."""
    directory = tmp_path / f"refined{bias}"
    shutil.copytree(load_bundle().directory, directory)
    config = load_bundle(directory).config
    config.mask_refiner = MaskRefiner(constant_net(MONO_FEATURES, bias), constant_net(STEREO_FEATURES, bias))
    write_config(directory, config)
    return directory


def test_bundle_keeps_the_refiner_and_rejects_a_wrong_one(tmp_path):
    directory = refined_bundle(tmp_path, -3.0)
    loaded = load_bundle(directory).config.mask_refiner
    assert loaded.stereo.inputs == STEREO_FEATURES and loaded.mono.layers[-1][1][0] == -3.0
    values = json.loads((directory / "config.json").read_text())
    values["mask_refiner"]["stereo"]["weights"][0] = values["mask_refiner"]["stereo"]["weights"][0][:-1]
    (directory / "config.json").write_text(json.dumps(values))
    with pytest.raises(BundleError, match="mask_refiner stereo"):
        load_bundle(directory)
    del values["mask_refiner"]  # a bundle without a refiner still loads, unrefined
    (directory / "config.json").write_text(json.dumps(values))
    assert load_bundle(directory).config.mask_refiner is None


@pytest.mark.parametrize("mode,latency,channels", [("offline", None, 2), ("offline", None, 1),
                                                   ("stream", "balanced", 2), ("stream", "live", 1)])
def test_every_path_applies_the_refiner(tmp_path, mode, latency, channels):
    audio = song(channels=channels)
    options = {"mode": mode, **({"latency": latency} if latency else {}), "device": "cpu"}
    closing = load_bundle(refined_bundle(tmp_path, -60.0))
    vocals, rest = Separator(closing, **options).separate(audio, 44100)
    assert np.sum(vocals ** 2) < 1e-6 * np.sum(audio ** 2)
    np.testing.assert_allclose(rest, audio, atol=1e-5)
    unrefined = Separator(closing, refine=False, **options).separate(audio, 44100)
    assert np.sum(unrefined[0] ** 2) > 0.01 * np.sum(audio ** 2)


def test_fitting_learns_that_the_centre_of_a_stereo_mix_is_the_voice():
    """Masks that know nothing (0.5 everywhere) on clips whose voice is in the centre and accompaniment to the
    sides, never in the same bin: the fitted stereo refiner must remove most of the error, and the numpy net it
    exports must too."""
    torch = pytest.importorskip("torch")
    from training.refine import Example, fit_refiner_net

    rng = np.random.default_rng(0)
    shape, frequencies = (40, 33), np.linspace(0, 22050, 33).astype(np.float32)
    masks = np.full(shape, 0.5, np.float32)
    examples = []
    for _ in range(4):
        voiced = rng.uniform(size=shape) < 0.5  # each bin holds the voice or the accompaniment
        v = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * voiced
        a = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * ~voiced
        target = np.stack([v, v], axis=2).astype(np.complex64)
        mixture = target + np.stack([a, -a], axis=2).astype(np.complex64)  # accompaniment hard to the sides
        examples.append(Example(torch.from_numpy(refiner_features(masks, mixture, frequencies, True)),
                                torch.from_numpy(mixture), torch.from_numpy(target),
                                float(np.sum(np.abs(mixture - target) ** 2))))
    net, stats = fit_refiner_net(examples, STEREO_FEATURES, hidden=8, steps=150, lr=0.05)
    assert stats["error_after"] < 0.1 * stats["error_before"], stats
    refiner = MaskRefiner(constant_net(MONO_FEATURES, 0.0), net)
    x, target = examples[0].mixture.numpy(), examples[0].voice.numpy()

    def error(m):
        return np.sum(np.abs(m[..., None] * x - target) ** 2)

    assert error(refiner.refine(masks, x, frequencies)) < 0.1 * error(masks)


def test_exported_net_computes_what_the_torch_one_does():
    torch = pytest.importorskip("torch")
    from training.refine import TorchRefiner

    torch.manual_seed(0)
    model = TorchRefiner(STEREO_FEATURES, 6)
    torch.nn.init.normal_(model.net[-1].weight)
    features = np.random.default_rng(0).standard_normal((5, 7, STEREO_FEATURES)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(features)).numpy()
    net = model.export()
    z = 4 * features[..., 0] + net.correction(features)
    np.testing.assert_allclose(1 / (1 + np.exp(-z)), expected, rtol=1e-5, atol=1e-6)


def test_fitting_sees_the_masks_and_spectra_that_synthesis_refines():
    pytest.importorskip("torch")
    from stream_dc.evaluation.datasets import Track
    from stream_dc.masks import MelMaskTrack
    from stream_dc.stft import OFFLINE_WINDOW_HOPS
    from stream_dc.synthesis import ProjectionSynthesis
    from training.refine import clip_examples

    class Recorder:
        def __init__(self):
            self.masks, self.spectra = [], []

        def refine(self, masks, spectra, frequencies, pool=None):
            self.masks.append(masks)
            self.spectra.append(spectra)
            return masks

    rate, features = 44100, load_bundle().config.features
    rng = np.random.default_rng(5)
    v, a = song(1.0, rate), 0.5 * rng.standard_normal((rate, 2)).astype(np.float32)
    mel_masks = rng.uniform(0.01, 0.99, (126, features.n_mels)).astype(np.float32)
    recorder = Recorder()
    synthesis = ProjectionSynthesis(features, rate, 2, MelMaskTrack.from_array(mel_masks), recorder,
                                    window_hops=OFFLINE_WINDOW_HOPS)  # as offline
    synthesis.process(v + a)
    synthesis.flush()
    example = clip_examples(Track("t", "g", rate, v, a), mel_masks, features, 1, stereo=True, mono=False)["stereo"]
    masks, spectra = np.concatenate(recorder.masks), np.concatenate(recorder.spectra)
    np.testing.assert_allclose(example.mixture.numpy(), spectra, atol=1e-4)
    recorded = 1 / (1 + np.exp(-4 * example.features[..., 0].numpy()))
    np.testing.assert_allclose(recorded, np.clip(masks, 1e-4, 1 - 1e-4), atol=1e-5)


def test_command_line_no_mask_refiner(tmp_path):
    energies = command_line_vocal_energies(tmp_path, refined_bundle(tmp_path, -60.0), "--no-mask-refiner")
    assert energies[False] < 1e-6 * energies[True]


def test_refitting_one_net_needs_a_bundle_with_a_refiner(tmp_path, capsys):
    pytest.importorskip("torch")
    from training.refine import main

    directory = tmp_path / "bundle"
    shutil.copytree(load_bundle().directory, directory)
    config = load_bundle(directory).config
    config.mask_refiner = None
    write_config(directory, config)
    before = (directory / "config.json").read_bytes()
    assert main([str(directory), "--nets", "mono", "--data", str(tmp_path), "--validation", "x"]) == 1
    assert "has no refiner" in capsys.readouterr().err
    assert main([str(directory), "--nets", "voice", "--data", str(tmp_path), "--validation", "x"]) == 1
    assert "--nets" in capsys.readouterr().err
    assert (directory / "config.json").read_bytes() == before
