"""Key change: a streaming pitch shifter, one more stage after synthesis (``process``/``flush``/``reset``/
``latency_samples``).

A phase vocoder that transposes in the frequency domain: each frame of a 64 ms STFT with 8 ms hops (87.5 % overlap,
at the input's rate) has its magnitudes and instantaneous frequencies read at ``bin / factor`` (linear
interpolation) and the frequencies multiplied by ``factor = 2 ** (semitones / 12)``; output phases accumulate those
frequencies from frame to frame, and overlap-add resynthesises. The duration is unchanged. All channels share one
phase track (that of their sum), each channel keeping its phase offset to the sum at the source bin, so a stereo
image (and stems that are mixed back together) stays coherent. At 0 semitones the stage gives its input back
exactly, delayed; the key can change between blocks (``semitones``), taking effect at the next frame.

Why our own and not a library (measured here): python-stretch 0.3.1 (Signalsmith Stretch) resets its state on
every ``process`` call, so block by block its pitch depends on the block size (a 220 Hz tone shifted by -2
semitones came out at 220.0 Hz in blocks of 512 samples, 176.9 Hz in blocks of 1024); pedalboard's PitchShift and
pylibrb wrap Rubber Band, which is GPL (this project is MIT), and pedalboard's streaming form returned no sound in
its first 6 s here. This stage is built from the same block-invariant ``FrameAnalyzer`` and ``OverlapAdd`` as
synthesis, so its output does not depend on how the input is cut, and its latency is one window.
"""
from __future__ import annotations

import numpy as np

from .stages import Aligner, FixedDelay
from .stft import FrameAnalyzer, OverlapAdd, StftGeometry

WINDOW_HOPS = 8  # 64 ms windows of 8 ms hops
TINY = np.float32(1e-20)


class KeyShift:
    """Pitch shift of ``(samples, channels)`` float32 blocks by ``semitones``: ``process(block)`` returns the same
    number of samples, delayed by ``latency_samples``; ``flush()`` returns the last ``latency_samples``."""

    def __init__(self, sample_rate: int, channels: int, semitones: float = 0.0):
        self.geometry = StftGeometry.for_rate(sample_rate, WINDOW_HOPS)
        self.channels = channels
        self.semitones = float(semitones)
        self.latency_samples = self.geometry.n_fft - 1
        bins = self.geometry.bins
        # the phase advance of bin k over one hop for a stationary sinusoid at the bin's centre frequency
        self.expected_advance = 2.0 * np.pi * np.arange(bins) * self.geometry.hop / self.geometry.n_fft
        self.analyzer = FrameAnalyzer(self.geometry, channels, self.geometry.first_frame)
        self.synthesis = OverlapAdd(self.geometry, channels)
        self.output = FixedDelay(self.latency_samples, channels)
        self.reset()

    @property
    def factor(self) -> float:
        return float(2.0 ** (self.semitones / 12.0))

    def reset(self) -> None:
        self.analyzer.reset()
        self.synthesis.reset()
        self.output.reset()
        self.previous_phase = np.zeros(self.geometry.bins)
        self.output_phase = np.zeros(self.geometry.bins, np.float64)
        self.n_in = 0

    def process(self, block: np.ndarray) -> np.ndarray:
        block = np.asarray(block, np.float32).reshape(-1, self.channels)
        self.n_in += len(block)
        _, spectra = self.analyzer.process(block)
        self.output.put(self.synthesis.add(self._shift(spectra)))
        return self.output.take(len(block))

    def flush(self) -> np.ndarray:
        _, spectra = self.analyzer.flush(self.geometry.frames_covering(self.n_in + self.latency_samples))
        self.output.put(self.synthesis.add(self._shift(spectra)))
        return self.output.take(self.latency_samples)

    def _shift(self, spectra: np.ndarray) -> np.ndarray:
        """Transposed spectra ``(frames, bins, channels)`` complex64 of ``(frames, bins, channels)`` spectra."""
        if not len(spectra):
            return spectra
        reference = spectra.sum(axis=2)  # (frames, bins)
        # phases in float64: an advance of up to 2 pi x bins x hop / n_fft rad per frame (about 1100 rad) is
        # accumulated frame after frame, and float32's 1e-4 rad at that size would make the output drift
        phase = np.angle(reference.astype(np.complex128))
        previous = np.concatenate([self.previous_phase[None], phase[:-1]])
        deviation = phase - previous - self.expected_advance
        advance = self.expected_advance + (deviation + np.pi) % (2.0 * np.pi) - np.pi  # per hop, (frames, bins)
        self.previous_phase = phase[-1]
        # each channel's spectrum turned to the sum's phase: |X_c| exp(i (angle X_c - angle sum))
        turned = spectra * (np.conj(reference) / np.maximum(np.abs(reference), TINY))[:, :, None]
        factor = self.factor
        if factor != 1.0:
            bins = self.geometry.bins
            source = np.arange(bins, dtype=np.float32) / np.float32(factor)
            inside = source <= bins - 1  # nothing comes from past the top bin
            lower = np.minimum(source.astype(np.int64), bins - 2)
            upper_weight = np.where(inside, source - lower, 0.0).astype(np.float32)
            lower_weight = np.where(inside, 1.0 - upper_weight, 0.0).astype(np.float32)
            turned = lower_weight[:, None] * turned[:, lower] + upper_weight[:, None] * turned[:, lower + 1]
            advance = factor * (lower_weight * advance[:, lower] + upper_weight * advance[:, lower + 1])
        # accumulated frame after frame, never wrapped, so the phases do not depend on how the frames were batched
        # (after an hour they are about 1e10 rad, still exact to 1e-5)
        output_phase = self.output_phase + np.cumsum(advance, axis=0)  # (frames, bins)
        self.output_phase = output_phase[-1]
        rotation = np.exp(1j * (output_phase % (2.0 * np.pi)).astype(np.float32))
        return (turned * rotation[:, :, None]).astype(np.complex64, copy=False)


class AlignedKeyShift:
    """A ``KeyShift`` whose output lines up with its input: its first ``latency_samples`` output samples are
    dropped and ``flush()`` hands over the rest, so a whole stream comes out at its exact length (offline
    separation, and each song or seek of the player)."""

    def __init__(self, sample_rate: int, channels: int, semitones: float = 0.0):
        self.shift = KeyShift(sample_rate, channels, semitones)
        self.reset()

    @property
    def semitones(self) -> float:
        return self.shift.semitones

    @semitones.setter
    def semitones(self, value: float) -> None:
        self.shift.semitones = float(value)

    def reset(self) -> None:
        self.shift.reset()
        self.aligner = Aligner(self.shift.latency_samples)

    def process(self, block: np.ndarray) -> np.ndarray:
        return self.aligner.trim(self.shift.process(block))

    def flush(self) -> np.ndarray:
        return self.aligner.trim(self.shift.flush())
