"""Key change: a streaming pitch shifter, one more stage after synthesis (``process``/``flush``/``reset``/
``latency_samples``).

A phase vocoder that transposes in the frequency domain, moving whole peaks (Laroche & Dolson, "New phase-vocoder
techniques for pitch-shifting, harmonizing and other exotic effects", 1999): each frame of a 64 ms STFT with 8 ms
hops (87.5 % overlap, at the input's rate) is cut into regions, each bin belonging to the nearest peak of the
channels' sum, and each region is moved as one piece from its peak's bin ``p`` to ``round(p * factor)``, where
``factor = 2 ** (semitones / 12)``, turned by a phase correction that makes the peak advance ``factor`` times as
fast as it does. The correction travels with the peak from frame to frame, so a partial whose peak moves to the next
bin keeps its phase, and the half-window turn that moving a region by an odd number of bins gives the frame's centre
is taken back. Moving a region whole keeps the phase relations between a partial's bins, so frames overlap-add in
phase: on the example song the level changes by -0.5 to -0.6 dB at every shift from -12 to +5 semitones, where
moving each bin on its own (this stage's first form) lost 3.9 dB at -2 and 5.3 dB at -12, and sounded phasey. The
duration is unchanged. All channels move alike, so a stereo image (and stems that are mixed back together) stays
coherent. At 0 semitones the stage gives its input back exactly, delayed; the key can change between blocks
(``semitones``), taking effect at the next frame (a change dips a tone's level by up to 2 dB for a few milliseconds,
by up to 4 dB on a return from -2 to 0: the overlapping frames hold two pitches). Back at 0, each region's correction
glides to zero within 0.4 s (switching it off at once dipped 5 dB), then the input passes unchanged.

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
RETURN_GLIDE = 0.85  # per frame: back at 0 semitones, each region's phase correction shrinks by this factor ...
RETURNED = 1e-3  # ... until it is below this (rad): at most 50 frames (0.4 s) after a correction of pi


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
        self.correction = np.zeros(self.geometry.bins, np.float64)
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
        factor = self.factor
        if factor == 1.0 and not self.correction.any():  # the input as it is; only the last frame's phase is kept
            self.previous_phase = np.angle(spectra[-1].sum(axis=1).astype(np.complex128))
            return spectra
        reference = spectra.sum(axis=2)  # (frames, bins): all channels share its peaks and frequencies
        # phases in float64: an advance of up to 2 pi x bins x hop / n_fft rad per frame (about 1100 rad) is
        # accumulated frame after frame, and float32's 1e-4 rad at that size would make the output drift
        phase = np.angle(reference.astype(np.complex128))
        previous = np.concatenate([self.previous_phase[None], phase[:-1]])
        deviation = phase - previous - self.expected_advance
        advance = self.expected_advance + (deviation + np.pi) % (2.0 * np.pi) - np.pi  # per hop, (frames, bins)
        self.previous_phase = phase[-1]
        peaks = _nearest_peaks(np.abs(reference))  # (frames, bins)
        frames, bins, channels = spectra.shape
        # each region's phase correction makes its peak advance factor times as fast as it does; it travels with
        # the peak: next frame, every bin of the region starts from the peak's correction, so a partial that
        # moves to the next bin keeps its phase. Never wrapped (about 5e8 rad after an hour, exact to 1e-7).
        correction = np.empty((frames, bins))
        carried = self.correction
        for n in range(frames):
            correction[n] = carried + (factor - 1.0) * advance[n]
            carried = correction[n, peaks[n]]
            if factor == 1.0:  # back at the original key: the correction glides to zero, then the input passes
                carried = (carried + np.pi) % (2.0 * np.pi) - np.pi  # the same turn, the shortest way back
                carried = np.where(np.abs(carried) < RETURNED, 0.0, RETURN_GLIDE * carried)
        self.correction = np.where(np.isfinite(carried), carried, 0.0)  # a damaged frame does not last
        rows = np.arange(frames)[:, None]
        move = np.rint(peaks * factor).astype(np.int64) - peaks  # bins each bin moves by: its region's
        target = move + np.arange(bins)
        # frames are centred but the FFT counts phase from their first sample: moving d bins turns the centre by
        # pi * d, which is taken back so that frames whose regions moved differently still overlap-add in phase
        turn = correction[rows, peaks] - np.pi * move
        rotation = np.exp(1j * (turn % (2.0 * np.pi))).astype(np.complex64)
        moved = spectra * rotation[:, :, None]
        kept = (target >= 0) & (target < bins)  # the top partials of an upward shift leave the band
        slots = (rows * bins + target)[kept]
        out = np.empty((frames * bins, channels), np.complex64)
        for c in range(channels):
            values = moved[:, :, c][kept]
            out[:, c].real = np.bincount(slots, values.real, frames * bins)
            out[:, c].imag = np.bincount(slots, values.imag, frames * bins)
        return out.reshape(frames, bins, channels)


def _nearest_peaks(magnitude: np.ndarray) -> np.ndarray:
    """For each bin of ``(frames, bins)`` magnitudes, the nearest local maximum of its frame (above the two bins
    below it, at least the two above; a bin halfway between two goes to the lower), ``(frames, bins)`` int64; a bin
    of a frame without one is its own."""
    bins = magnitude.shape[1]
    peak = np.zeros(magnitude.shape, bool)
    inner = magnitude[:, 2:-2]
    peak[:, 2:-2] = ((inner > magnitude[:, 1:-3]) & (inner > magnitude[:, :-4]) & (inner >= magnitude[:, 3:-1])
                     & (inner >= magnitude[:, 4:]))
    index = np.arange(bins)
    below = np.maximum.accumulate(np.where(peak, index, -1), axis=1)  # the nearest peak at or below each bin
    above = np.minimum.accumulate(np.where(peak, index, bins)[:, ::-1], axis=1)[:, ::-1]  # at or above
    take_above = (above < bins) & ((below < 0) | (above - index < index - below))
    nearest = np.where(take_above, above, below)
    return np.where(nearest < 0, index, nearest)


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
