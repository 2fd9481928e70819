"""Resampler: block-size invariance, accuracy, and the same log-mel features at any input rate."""
import numpy as np
import pytest

from stream_dc.features import FeatureConfig, LogMel, stft
from stream_dc.resample import Resampler, resample


@pytest.mark.parametrize("rate_in,rate_out", [(44100, 16000), (48000, 16000), (16000, 44100), (22050, 16000),
                                              (8000, 16000), (16000, 16000), (44099, 16000)])
def test_resampler_is_block_invariant_and_accurate(rate_in, rate_out):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((rate_in, 2)).astype(np.float32)
    whole = resample(x, rate_in, rate_out)
    assert len(whole) == -(-len(x) * rate_out // rate_in)
    streaming = Resampler(rate_in, rate_out, 2)
    parts, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 4000))
        parts.append(streaming.process(x[i:i + n]))
        i += n
    parts.append(streaming.flush(len(whole)))
    np.testing.assert_array_equal(np.concatenate(parts), whole)
    t = np.arange(rate_in) / rate_in
    sine = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    out = resample(sine, rate_in, rate_out)
    expected = np.sin(2 * np.pi * 1000 * np.arange(len(out)) / rate_out)
    assert np.max(np.abs(out[300:-300] - expected[300:-300])) < 1e-3


def test_grouped_products_equal_the_gathered_taps():
    """The matrix-vector path computes the same filter as gathering each output's taps (44099 Hz has too long a
    polyphase period for a group matrix and takes the gather path itself)."""
    x = np.random.default_rng(3).standard_normal((20000, 1)).astype(np.float32)
    grouped = Resampler(44100, 16000, 1)
    gathered = Resampler(44100, 16000, 1)
    gathered.group_matrix = None
    assert grouped.group_matrix is not None and Resampler(44099, 16000, 1).group_matrix is None
    a = np.concatenate([grouped.process(x[:7000]), grouped.process(x[7000:]), grouped.flush()])
    b = np.concatenate([gathered.process(x[:7000]), gathered.process(x[7000:]), gathered.flush()])
    np.testing.assert_allclose(a, b, atol=1e-6)


def band_limited_noise(rate: int, seconds: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The same white noise, band-limited to 8 kHz, sampled at 16 kHz and at ``rate`` (exact, by FFT)."""
    n16, n = 16000 * seconds, rate * seconds
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n16))
    spectrum[-1] = 0.0  # no energy exactly at 8 kHz
    wide = np.zeros(n // 2 + 1, complex)
    wide[:len(spectrum)] = spectrum * (n / n16)
    return np.fft.irfft(spectrum, n16).astype(np.float32), np.fft.irfft(wide, n).astype(np.float32)


@pytest.mark.parametrize("rate", [22050, 44100, 48000, 96000])
def test_log_mel_of_any_rate_matches_16k_in_every_band(rate):
    log_mel = LogMel(FeatureConfig())
    native, resampled = band_limited_noise(rate, 4, seed=5)
    reference = log_mel.log_mel(stft(native))[40:-40].mean(axis=0)
    ours = log_mel.log_mel(stft(resample(resampled, rate, 16000)))[40:-40].mean(axis=0)
    difference_db = 20 / np.log(10) * (ours - reference)
    assert np.max(np.abs(difference_db)) < 0.5, f"band {np.argmax(np.abs(difference_db))}: {difference_db.min():.2f} dB"


def test_a_rate_prime_to_16_khz_costs_what_its_kernel_does():
    """48001 Hz has a polyphase period of 16000 phases: the kernel is then tabulated once and interpolated (set-up
    and memory proportional to the kernel, not to the period), within 1e-6 of the exact kernels, block-invariant."""
    import time

    import stream_dc.resample as resample_module

    started = time.perf_counter()
    fast = Resampler(48001, 16000, 1)
    assert time.perf_counter() - started < 0.5 and fast.kernels is None and fast.table.nbytes < 2_000_000
    signal = np.random.default_rng(6).standard_normal((48001, 1)).astype(np.float32) * 0.1
    whole = resample(signal, 48001, 16000)
    blocks = Resampler(48001, 16000, 1)
    cut = np.concatenate([blocks.process(signal[i:i + 777]) for i in range(0, len(signal), 777)]
                         + [blocks.flush(len(whole))])
    np.testing.assert_array_equal(cut, whole)
    original = resample_module.MAX_KERNEL_TABLE
    try:
        resample_module.MAX_KERNEL_TABLE = 10 ** 9  # the exact per-phase kernels, as before
        exact = resample(signal, 48001, 16000)
    finally:
        resample_module.MAX_KERNEL_TABLE = original
    assert np.max(np.abs(exact - whole)) < 1e-6 * max(1.0, float(np.max(np.abs(exact))) * 10)
