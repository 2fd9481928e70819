"""The key change: pitch accuracy, length, latency, block invariance, the bypass at 0 semitones, and the commands."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from stream_dc.keyshift import KeyShift
from stream_dc.stream import StreamProcessor
from tests.conftest import ConstantEmbeddings

CLI = [sys.executable, "-m", "stream_dc"]


def harmonic(seconds, rate, f0=220.0, channels=2):
    t = np.arange(int(seconds * rate)) / rate
    tone = sum(0.2 / k * np.sin(2 * np.pi * f0 * k * t) for k in range(1, 6)).astype(np.float32)
    return np.stack([tone, 0.5 * tone][:channels], axis=1)


def pitch(signal, rate, low=100.0, high=500.0):
    """The strongest frequency between ``low`` and ``high`` Hz, interpolated between FFT bins."""
    window = np.hanning(len(signal))
    size = 8 * len(signal)
    spectrum = np.abs(np.fft.rfft(signal * window, size))
    lo, hi = int(low * size / rate), int(high * size / rate)
    k = lo + int(np.argmax(spectrum[lo:hi]))
    a, b, c = np.log(spectrum[k - 1:k + 2])
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * rate / size


def shifted(signal, rate, semitones, block):
    stage = KeyShift(rate, signal.shape[1], semitones)
    out = np.concatenate([stage.process(signal[i:i + block]) for i in range(0, len(signal), block)] + [stage.flush()])
    assert len(out) == len(signal) + stage.latency_samples
    return out[stage.latency_samples:]


@pytest.mark.parametrize("semitones", [-2.0, 3.5, -12.0, 0.25])
@pytest.mark.parametrize("rate", [44100, 48000])
def test_a_harmonic_tone_moves_by_the_semitones_asked(semitones, rate):
    out = shifted(harmonic(4.0, rate), rate, semitones, 1000)
    expected = 220.0 * 2 ** (semitones / 12)
    found = pitch(out[rate:3 * rate, 0], rate, low=0.8 * expected, high=1.25 * expected)
    assert abs(1200 * np.log2(found / expected)) < 10, found
    # the channels keep their balance (a stereo image stays where it was)
    assert np.std(out[rate:, 1]) / np.std(out[rate:, 0]) == pytest.approx(0.5, rel=0.02)


@pytest.mark.parametrize("semitones", [-12.0, -2.0, 5.0])
def test_a_shifted_tone_keeps_its_level(semitones):
    """A partial's bins move together and overlap-add in phase (moving each bin on its own lost 4 dB at -12)."""
    rate = 44100
    tone = harmonic(4.0, rate)
    out = shifted(tone, rate, semitones, 1024)
    level = 10 * np.log10(np.mean(out[rate:3 * rate] ** 2) / np.mean(tone[rate:3 * rate] ** 2))
    assert abs(level) < 1.0, level


def short_term_levels(signal, rate):
    """Level in dB of each 10 ms of ``signal`` ``(samples, channels)``'s first channel."""
    width = rate // 100
    count = len(signal) // width
    return 10 * np.log10(np.mean(signal[:count * width, 0].reshape(count, width).astype(np.float64) ** 2, 1) + 1e-12)


@pytest.mark.parametrize("semitones", [-2.0, 3.0])
def test_a_gliding_tone_keeps_its_level_as_its_peak_moves_from_bin_to_bin(semitones):
    """A region's phase correction travels with its peak (kept per bin, a glide from 1000 to 1500 Hz dipped by 11 dB
    each time its peak changed bins)."""
    rate = 44100
    t = np.arange(3 * rate) / rate
    tone = (0.3 * np.sin(2 * np.pi * np.cumsum(1000.0 * 1.5 ** (t / 3.0)) / rate)).astype(np.float32)
    out = shifted(np.stack([tone, 0.5 * tone], axis=1), rate, semitones, 1024)
    levels = short_term_levels(out, rate)[10:-10] - 10 * np.log10(0.3 ** 2 / 2)
    assert levels.min() > -3.0, levels.min()


def test_key_changes_stay_in_phase_and_a_shift_after_a_pause_at_zero_starts_afresh():
    """Stepping the key like the player (each step taking effect at a frame) dips the level for a moment by no more
    than 3 dB, back to 0 semitones included (the correction glides away there); a shift that starts again after 0
    semitones dips no more than the first one did."""
    rate, block = 44100, 1024
    tone = harmonic(4.0, rate)
    keys = [0.0, -1.0, -2.0, -1.0, 0.0, -2.0, -3.0, -2.0]  # one each half second

    stage = KeyShift(rate, 2, 0.0)
    parts = []
    for start in range(0, len(tone), block):
        stage.semitones = keys[min(start * 2 // rate, len(keys) - 1)]
        parts.append(stage.process(tone[start:start + block]))
    out = np.concatenate(parts)[stage.latency_samples:]
    dips = short_term_levels(out, rate) - short_term_levels(tone, rate)[:len(out) // (rate // 100)]
    around = {k: dips[50 * k - 5:50 * k + 15].min() for k in range(1, len(keys))}  # 50 ms before, 150 ms after
    for k in (2, 3, 4, 6, 7):  # from one shift to another, and back to 0
        assert around[k] > -3.0, (keys[k - 1], keys[k], around[k])
    assert around[5] > around[1] - 1.0, (around[1], around[5])  # 0 -> -1 at first, 0 -> -2 after -1, -2, -1, 0


def test_back_at_zero_semitones_the_input_passes_unchanged_once_the_correction_has_glided_away():
    rate = 44100
    tone = harmonic(3.0, rate)
    stage = KeyShift(rate, 2, -2.0)
    parts = []
    for start in range(0, len(tone), 1024):
        stage.semitones = -2.0 if start < rate else 0.0
        parts.append(stage.process(tone[start:start + 1024]))
    out = np.concatenate(parts)[stage.latency_samples:]
    assert not stage.correction.any()
    np.testing.assert_allclose(out[2 * rate:], tone[2 * rate:len(out)], atol=1e-6)  # 1 s after the return


def test_zero_semitones_gives_the_input_back_and_any_block_size_the_same_output():
    rng = np.random.default_rng(3)
    signal = (0.1 * rng.standard_normal((3 * 44100, 2))).astype(np.float32)
    np.testing.assert_allclose(shifted(signal, 44100, 0.0, 512), signal, atol=1e-6)
    np.testing.assert_allclose(shifted(signal, 44100, -3.0, 1), shifted(signal, 44100, -3.0, 4096), atol=1e-6)


def test_the_key_can_change_between_blocks():
    rate = 44100
    signal = harmonic(4.0, rate)
    stage = KeyShift(rate, 2, 0.0)
    parts = []
    for start in range(0, len(signal), 1024):
        stage.semitones = 0.0 if start < 2 * rate else 5.0
        parts.append(stage.process(signal[start:start + 1024]))
    out = np.concatenate(parts)[stage.latency_samples:]
    assert abs(pitch(out[rate // 2:3 * rate // 2, 0], rate) - 220.0) < 1.5
    assert abs(1200 * np.log2(pitch(out[int(2.5 * rate):int(3.8 * rate), 0], rate) / (220 * 2 ** (5 / 12)))) < 10


@pytest.mark.parametrize("semitones", [-2.0, 3.0])
@pytest.mark.parametrize("rate", [16000, 44100])
def test_the_reported_latency_is_the_delay_of_a_tone_burst_with_the_key_on(bundle, semitones, rate):
    """A 30 ms tone burst comes out moved in pitch, its energy centred on the latency the processor reports (within
    1 ms), which adds the key stage's window to the separation's. (A burst, not an impulse: an impulse has no
    partials to move, and the shifter scatters it over its window.)"""
    processor = StreamProcessor(bundle, rate, 2, latency="balanced", keep="vocals", model=ConstantEmbeddings(bundle),
                                mask_softness=0, refine=False, key=semitones)
    plain = StreamProcessor(bundle, rate, 2, latency="balanced", model=ConstantEmbeddings(bundle))
    assert processor.latency_samples == plain.latency_samples + processor.key.latency_samples
    audio = np.zeros((3 * rate, 2), np.float32)
    burst = int(0.03 * rate)
    tone = np.hanning(burst) * np.sin(2 * np.pi * 1000 * np.arange(burst) / rate)
    audio[rate // 3:rate // 3 + burst] = tone[:, None]
    out = np.concatenate([processor.process(audio[i:i + 997]) for i in range(0, len(audio), 997)]
                         + [processor.flush()])
    assert len(out) == len(audio) + processor.latency_samples

    def centre(signal):
        energy = signal[:, 0].astype(np.float64) ** 2
        return np.sum(np.arange(len(energy)) * energy) / np.sum(energy)

    assert abs(centre(out) - centre(audio) - processor.latency_samples) < rate / 1000


def test_key_zero_adds_no_stage_and_no_latency(bundle):
    assert StreamProcessor(bundle, 44100, 2, key=0).key is None
    assert StreamProcessor(bundle, 44100, 2, key=0).latency_samples == StreamProcessor(bundle, 44100, 2).latency_samples


def test_separate_with_a_key_change_keeps_the_exact_length(tmp_path):
    rate = 44100
    sf.write(tmp_path / "tone.wav", harmonic(3.0, rate) + 0.0, rate, subtype="FLOAT")
    for mode in ("offline", "stream"):
        out = tmp_path / mode
        result = subprocess.run(CLI + ["separate", str(tmp_path / "tone.wav"), "-o", str(out), "--key", "-2",
                                       "--mode", mode, "--device", "cpu", "-q"], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        vocals, _ = sf.read(out / "tone" / "vocals.wav", dtype="float32")
        accompaniment, _ = sf.read(out / "tone" / "accompaniment.wav", dtype="float32")
        assert vocals.shape == accompaniment.shape == (3 * rate, 2)
        both = vocals + accompaniment  # the stems sum to the shifted mixture
        expected = 220.0 * 2 ** (-2 / 12)
        assert abs(1200 * np.log2(pitch(both[rate // 2:5 * rate // 2, 0], rate) / expected)) < 10


@pytest.mark.parametrize("value", ["13", "-12.5"])
def test_keys_beyond_an_octave_are_refused(value):
    result = subprocess.run(CLI + ["stream", "--key", value], input=b"", capture_output=True)
    assert result.returncode == 1
    assert result.stderr.decode().strip() == f"stream-dc stream: error: key {float(value)!r}: use -12 to +12 semitones"
