"""Training data: the mixing engine, the features and targets of a mixture, and the worker processes."""
import numpy as np
import pytest

from tests.synthetic import accompaniment, voice


# -- the mixing engine (needs the training extra: pedalboard) -------------------------------------------------
def clips_for_mixing():
    from training.data import Stems

    rng = np.random.default_rng(2)
    clips = [Stems(f"song{i}", f"musdb:artist{i % 3}", voice(2.0, 16000, rng), accompaniment(2.0, 16000, rng), "musdb")
             for i in range(6)]
    clips += [Stems(f"inst{i}", f"instrumental:piece{i}", np.zeros(0, np.float32), accompaniment(5.0, 16000, rng),
                    "instrumental") for i in range(3)]
    return clips


def test_remixes_pair_different_groups_and_are_reproducible():
    pytest.importorskip("pedalboard")
    from training.mixing import MixingConfig, draw_remixes, render

    clips = clips_for_mixing()
    config = MixingConfig(snr_db=(-8, 3), level_dbfs=(-30, -12), augment=True, no_voice=0.1,
                          voice_weights={"musdb": 1.0}, accompaniment_weights={"instrumental": 0.6, "musdb": 0.4})
    specs = draw_remixes(clips, 200, config, np.random.default_rng(7))
    assert specs == draw_remixes(clips, 200, config, np.random.default_rng(7))
    assert all(clips[s.voice].has_voice and clips[s.voice].group != clips[s.accompaniment].group for s in specs)
    sources = [clips[s.accompaniment].source for s in specs]
    assert 0.45 < sources.count("instrumental") / len(specs) < 0.75
    first, again = render(specs[0], clips, config), render(specs[0], clips, config)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    levels, ratios, silent = [], [], 0
    for spec in specs[:40]:
        v, a = render(spec, clips, config)
        assert v.shape == a.shape == clips[spec.voice].voice.shape
        levels.append(10 * np.log10(np.mean((v + a) ** 2)))
        if np.any(v):
            ratios.append(10 * np.log10(np.mean(v ** 2) / np.mean(a ** 2)))
        else:
            silent += 1
    assert -30.01 < min(levels) and max(levels) < -11.99
    assert -8.01 < min(ratios) and max(ratios) < 3.01 and np.ptp(ratios) > 4


def test_voice_pitch_shift_moves_the_pitch_and_keeps_the_length():
    pytest.importorskip("pedalboard")
    from training.mixing import pitch_shifted

    tone = np.sin(2 * np.pi * 220.0 * np.arange(16000) / 16000).astype(np.float32)
    shifted = pitch_shifted(tone, 3.0)
    assert len(shifted) == len(tone)
    spectrum = np.abs(np.fft.rfft(shifted[2000:14000] * np.hanning(12000)))
    assert np.argmax(spectrum) * 16000 / 12000 == pytest.approx(220.0 * 2 ** (3 / 12), abs=3.0)


def test_voice_pitch_shifts_about_half_the_voices_reproducibly():
    pytest.importorskip("pedalboard")
    from training.mixing import MixingConfig, draw_remixes, render

    clips = clips_for_mixing()
    plain = MixingConfig(snr_db=(-8, 3), augment=True, voice_weights={"musdb": 1.0})
    pitched = MixingConfig(snr_db=(-8, 3), augment=True, voice_weights={"musdb": 1.0}, voice_pitch=4.0)
    specs = draw_remixes(clips, 12, pitched, np.random.default_rng(3))
    changed = 0
    for spec in specs:
        v0, _ = render(spec, clips, plain)
        v1, _ = render(spec, clips, pitched)
        np.testing.assert_array_equal(v1, render(spec, clips, pitched)[0])
        assert v1.shape == v0.shape
        changed += not np.allclose(v0, v1, atol=1e-4)
    assert 0 < changed < len(specs)


def test_default_mixing_is_the_papers_0_db_remix():
    from training.mixing import MixingConfig, RemixSpec, render

    clips = clips_for_mixing()
    v, a = render(RemixSpec(voice=0, accompaniment=7, offset=1234, seed=5), clips, MixingConfig())
    np.testing.assert_array_equal(v, clips[0].voice)
    assert np.mean(v ** 2) == pytest.approx(np.mean(a ** 2), rel=1e-4)
    expected = clips[7].accompaniment[1234:1234 + len(v)]
    np.testing.assert_allclose(a / np.sqrt(np.mean(a ** 2)), expected / np.sqrt(np.mean(expected ** 2)), atol=1e-5)


def test_magnitude_bin_weights_follow_the_mel_magnitude_of_active_bins_only():
    from stream_dc.features import FeatureConfig, LogMel
    from training.data import make_chunks, mix_features

    log_mel = LogMel(FeatureConfig())
    rng = np.random.default_rng(0)
    mix = mix_features(voice(2.0, 16000, rng), accompaniment(2.0, 16000, rng), log_mel)
    active = mix.weight > 0
    assert active.any() and not active.all()
    weights = make_chunks([mix], 100, log_mel, weighting="magnitude").weight
    flat = np.concatenate(list(weights))[:len(mix.log_mel)]
    np.testing.assert_array_equal(flat > 0, active)
    assert flat[active].mean() == pytest.approx(1.0, rel=1e-4)
    ratio = flat[active] / np.exp(mix.log_mel[active])  # one constant: the weight is proportional to the magnitude
    np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)
    unweighted = make_chunks([mix], 100, log_mel).weight
    np.testing.assert_array_equal(np.concatenate(list(unweighted))[:len(mix.log_mel)], mix.weight)
    with pytest.raises(ValueError, match="bin weights"):
        make_chunks([mix], 100, log_mel, weighting="loudness")


def test_voice_share_is_the_voice_part_of_the_mixture_magnitude():
    from stream_dc.features import FeatureConfig, LogMel
    from training.data import make_chunks, mix_features

    log_mel = LogMel(FeatureConfig())
    rng = np.random.default_rng(1)
    v, a = voice(1.0, 16000, rng), accompaniment(1.0, 16000, rng)
    only_voice = mix_features(v, np.zeros_like(v), log_mel)
    only_accompaniment = mix_features(np.zeros_like(a), a, log_mel)
    active = only_voice.weight > 0
    np.testing.assert_allclose(only_voice.voice_share[active].astype(np.float32), 1.0, atol=2e-3)
    assert np.all(only_accompaniment.voice_share == 0)
    mixed = mix_features(v, a, log_mel)
    assert mixed.voice_share.dtype == np.float16
    share = mixed.voice_share.astype(np.float32)
    assert share.min() >= 0
    voiced = mixed.voice & (mixed.weight > 0)
    assert share[voiced].mean() > share[~mixed.voice & (mixed.weight > 0)].mean()  # the binary target agrees
    chunks = make_chunks([mixed], 100, log_mel)
    np.testing.assert_array_equal(np.concatenate(list(chunks.voice_share))[:len(share)], mixed.voice_share)


def test_phase_sensitive_share_is_the_voice_along_the_mixture_truncated_to_one():
    """The mask head's target: 1 where the mixture is the voice alone, 0 where it has none, 0 (truncated) where
    the voice is cancelled by an accompaniment in opposite phase, and never above the magnitude share."""
    from stream_dc.features import FeatureConfig, LogMel
    from training.data import make_chunks, mix_features

    log_mel = LogMel(FeatureConfig())
    rng = np.random.default_rng(2)
    v, a = voice(1.0, 16000, rng), accompaniment(1.0, 16000, rng)
    only_voice = mix_features(v, np.zeros_like(v), log_mel)
    active = only_voice.weight > 0
    np.testing.assert_allclose(only_voice.voice_psa[active].astype(np.float32), 1.0, atol=2e-3)
    assert np.all(mix_features(np.zeros_like(a), a, log_mel).voice_psa == 0)
    opposed = mix_features(v, -2.0 * v, log_mel)  # the mixture is -v: the voice points against it
    assert np.all(opposed.voice_psa[opposed.weight > 0] == 0)
    mixed = mix_features(v, a, log_mel)
    assert mixed.voice_psa.dtype == np.float16
    psa, share = mixed.voice_psa.astype(np.float32), mixed.voice_share.astype(np.float32)
    assert psa.min() >= 0 and psa.max() <= 1
    assert np.all(psa <= np.minimum(share, 1.0) + 2e-3)  # |S| cos <= |S|
    voiced = mixed.voice & (mixed.weight > 0)
    assert psa[voiced].mean() > 0.5 > psa[~mixed.voice & (mixed.weight > 0)].mean()
    chunks = make_chunks([mixed], 100, log_mel)
    np.testing.assert_array_equal(np.concatenate(list(chunks.voice_psa))[:len(psa)], mixed.voice_psa)


def _worker_setup():
    import signal

    from threadpoolctl import threadpool_info

    return ([pool["num_threads"] for pool in threadpool_info()], signal.getsignal(signal.SIGINT) is signal.SIG_IGN,
            signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)


def test_training_workers_run_one_blas_thread_and_leave_signals_to_the_trainer():
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    pytest.importorskip("threadpoolctl")
    from training.data import quiet_pool

    with quiet_pool(2) as pool:
        threads, ignores_ctrl_c, ignores_sigterm = pool.submit(_worker_setup).result()
    assert threads and all(n == 1 for n in threads) and ignores_ctrl_c and ignores_sigterm
