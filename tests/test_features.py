"""Features against librosa; STFT round trips, block-size invariance."""
import numpy as np
import pytest


def librosa():
    return pytest.importorskip("librosa")

from stream_dc.features import FeatureConfig, LogMel, mel_filterbank, stft  # noqa: E402
from stream_dc.stft import (  # noqa: E402
    OFFLINE_WINDOW_HOPS,
    STREAM_WINDOW_HOPS,
    FrameAnalyzer,
    OverlapAdd,
    StftGeometry,
)


def test_mel_filterbank_matches_librosa():
    ours = mel_filterbank(FeatureConfig())
    theirs = librosa().filters.mel(sr=16000, n_fft=512, n_mels=150, fmin=0.0, fmax=8000.0)
    assert ours.shape == (150, 257)
    np.testing.assert_allclose(ours, theirs, atol=1e-6, rtol=1e-4)


def test_stft_matches_librosa():
    x = np.random.default_rng(0).standard_normal(16000 + 77).astype(np.float32)
    theirs = librosa().stft(x, n_fft=512, hop_length=128, window="hann", center=True, pad_mode="constant").T
    ours = stft(x)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_log_mel_matches_librosa():
    x = np.random.default_rng(1).standard_normal(8000).astype(np.float32) * 0.1
    config = FeatureConfig()
    ours = LogMel(config).log_mel(stft(x))
    mel = librosa().feature.melspectrogram(y=x, sr=16000, n_fft=512, hop_length=128, n_mels=150, power=1.0,
                                         center=True, pad_mode="constant").T
    np.testing.assert_allclose(ours, np.log(mel + config.log_floor), atol=1e-4)


def test_normalisation_uses_statistics():
    config = FeatureConfig()
    mean, std = np.linspace(-1, 1, 150).astype(np.float32), np.full(150, 2.0, np.float32)
    log_mel = LogMel(config, mean, std)
    values = np.ones((3, 150), np.float32)
    np.testing.assert_allclose(log_mel.normalise(values), np.broadcast_to((1 - mean) / 2, (3, 150)))
    with pytest.raises(ValueError):
        LogMel(config, mean, np.zeros(150, np.float32))


@pytest.mark.parametrize("window_hops", [STREAM_WINDOW_HOPS, OFFLINE_WINDOW_HOPS])
@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000, 96000])
def test_stft_round_trip_with_any_blocks(rate, window_hops):
    geometry = StftGeometry.for_rate(rate, window_hops)
    assert geometry.hop == StftGeometry.for_rate(rate).hop and geometry.n_fft == window_hops * geometry.hop
    n = geometry.n_fft
    for p in (2, 3, 5):  # the window length keeps the FFT fast
        while n % p == 0:
            n //= p
    assert n == 1
    rng = np.random.default_rng(3)
    x = rng.standard_normal((rate // 2 + 123, 2)).astype(np.float32)
    analyzer, ola = FrameAnalyzer(geometry, 2, geometry.first_frame), OverlapAdd(geometry, 2)
    out, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 5000))
        out.append(ola.add(analyzer.process(x[i:i + n])[1]))
        i += n
    out.append(ola.add(analyzer.flush(geometry.frames_covering(len(x)))[1]))
    y = np.concatenate(out)
    assert len(y) >= len(x)
    np.testing.assert_allclose(y[:len(x)], x, atol=2e-6)


def test_streaming_frames_equal_offline_stft():
    geometry = StftGeometry(512, 128)
    x = np.random.default_rng(4).standard_normal((5000, 1)).astype(np.float32)
    analyzer = FrameAnalyzer(geometry, 1, 0)
    frames = [analyzer.process(x[i:i + 333])[1] for i in range(0, len(x), 333)]
    frames.append(analyzer.flush(len(x) // 128 + 1)[1])
    np.testing.assert_array_equal(np.concatenate(frames)[:, :, 0], stft(x[:, 0]))
