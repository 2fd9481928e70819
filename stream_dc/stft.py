"""Streaming STFT analysis and overlap-add synthesis with centred frames (see ``features`` for the convention).

Both classes work on ``(samples, channels)`` blocks of any size and give the same frames and samples however the
signal is cut, so offline separation and the streaming processor share them. Their transforms run on slices of
``FRAME_SLICE`` frames, which stay in the CPU's caches (four times faster than one transform of a whole segment),
shared among the threads of a ``parallel.SlicePool`` where one is given.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import ANALYSIS_HOP, ANALYSIS_N_FFT, ANALYSIS_RATE, frames_from_padded, hann_window
from .parallel import SERIAL, SlicePool

HOP_MS = 1000 * ANALYSIS_HOP // ANALYSIS_RATE  # 8 ms: every synthesis STFT's hop, about
STREAM_WINDOW_HOPS = ANALYSIS_N_FFT // ANALYSIS_HOP  # streaming synthesis: 32 ms windows (each adds latency)
OFFLINE_WINDOW_HOPS = 8  # offline synthesis: 64 ms windows resolve voice harmonics from the accompaniment better
FRAME_SLICE = 64  # frames transformed at a time


@dataclass(frozen=True)
class StftGeometry:
    """Window and hop (samples) of an STFT; the window is a multiple of the hop."""

    n_fft: int
    hop: int

    @classmethod
    def for_rate(cls, sample_rate: int, window_hops: int = STREAM_WINDOW_HOPS) -> "StftGeometry":
        """About the analysis STFT's 8 ms hop at another rate, with a window of ``window_hops`` hops (4: the
        analysis STFT's 32 ms).

        The hop is the whole number of samples nearest to 8 ms that has no prime factor above 5 (nor has its
        window, for a ``window_hops`` of 4 or 8), so the FFT stays fast: at 44.1 kHz a 1412-point FFT (4 x 353, a
        prime) is about ten times slower than the 1440-point one used instead (hop 360 = 8.16 ms). Masks are
        interpolated in time, so any hop works.
        """
        ideal = sample_rate * ANALYSIS_HOP / ANALYSIS_RATE
        candidates = [h for h in range(max(1, int(ideal * 0.9)), int(ideal * 1.1) + 2) if _smooth(h)]
        hop = min(candidates, key=lambda h: (abs(h - ideal), h)) if candidates else max(1, round(ideal))
        return cls(n_fft=hop * window_hops, hop=hop)

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def first_frame(self) -> int:
        """Lowest frame index that overlaps sample 0 (frames start at ``t*hop - n_fft/2``)."""
        return -((self.n_fft // 2 - 1) // self.hop)

    def frames_covering(self, n_samples: int) -> int:
        """One past the last frame index that overlaps samples ``[0, n_samples)``."""
        return (n_samples - 1 + self.n_fft // 2) // self.hop + 1


def _smooth(n: int) -> bool:
    """True when ``n`` has no prime factor above 5."""
    for p in (2, 3, 5):
        while n % p == 0:
            n //= p
    return n == 1


class FrameAnalyzer:
    """Cuts a stream into windowed centred frames and returns their spectra.

    ``process(block)`` returns ``(first_index, spectra)`` with spectra ``(frames, bins, channels)`` complex64 for
    every frame ``t >= start_frame`` whose samples have all arrived; ``flush(end_frame)`` zero-pads the input and
    returns the remaining frames below ``end_frame``.
    """

    def __init__(self, geometry: StftGeometry, channels: int, start_frame: int = 0, pool: SlicePool = SERIAL):
        if start_frame * geometry.hop - geometry.n_fft // 2 > 0:
            raise ValueError("the first frame must overlap the start of the signal")
        self.geometry, self.channels, self.start_frame, self.pool = geometry, channels, start_frame, pool
        self.window = hann_window(geometry.n_fft).astype(np.float32)[None, :, None]
        self.reset()

    def reset(self) -> None:
        g = self.geometry
        self.next_frame = self.start_frame
        # buffer holds samples from next_frame's start; samples before 0 are zeros
        self.buffer_start = self.start_frame * g.hop - g.n_fft // 2
        self.buffer = np.zeros((max(0, -self.buffer_start), self.channels), np.float32)
        self.n_in = 0

    def _take(self, end_frame: int) -> tuple[int, np.ndarray]:
        g = self.geometry
        first = self.next_frame
        count = end_frame - first
        if count <= 0:
            return first, np.zeros((0, g.bins, self.channels), np.complex64)
        frames = frames_from_padded(self.buffer, g.n_fft, g.hop, count)  # (count, n_fft, channels)
        spectra = np.empty((count, g.bins, self.channels), np.complex64)

        def transform(part: slice) -> None:
            spectra[part] = np.fft.rfft(frames[part] * self.window, axis=1)

        self.pool.run(transform, count, FRAME_SLICE)
        self.next_frame = end_frame
        consumed = count * g.hop
        self.buffer = self.buffer[consumed:]
        self.buffer_start += consumed
        return first, spectra

    def process(self, block: np.ndarray) -> tuple[int, np.ndarray]:
        block = np.asarray(block, np.float32).reshape(-1, self.channels)
        self.buffer = np.concatenate([self.buffer, block])
        self.n_in += len(block)
        g = self.geometry
        # frame t is complete when sample t*hop + n_fft/2 - 1 has arrived
        complete = (self.n_in - g.n_fft // 2) // g.hop + 1
        return self._take(max(complete, self.next_frame))

    def flush(self, end_frame: int) -> tuple[int, np.ndarray]:
        g = self.geometry
        needed = (end_frame - 1) * g.hop + g.n_fft // 2 - self.buffer_start
        if needed > len(self.buffer):
            padding = np.zeros((needed - len(self.buffer), self.channels), np.float32)
            self.buffer = np.concatenate([self.buffer, padding])
        return self._take(max(end_frame, self.next_frame))


class OverlapAdd:
    """Weighted overlap-add synthesis of centred frames (Hann synthesis window, squared-window normalisation).

    ``add(spectra)`` takes the next ``(frames, bins, channels)`` spectra in order, starting at frame
    ``geometry.first_frame``, and returns the output samples that no later frame can change, from sample 0 on.
    With unmodified spectra from ``FrameAnalyzer(start_frame=geometry.first_frame)`` the output equals the input.
    """

    def __init__(self, geometry: StftGeometry, channels: int, pool: SlicePool = SERIAL):
        self.geometry, self.channels, self.pool = geometry, channels, pool
        n, h = geometry.n_fft, geometry.hop
        self.window = hann_window(n).astype(np.float32)
        # sum of squared windows seen by a sample at each phase within a hop (constant for windows of 4 or more hops)
        norm = np.zeros(h, np.float64)
        for k in range(n // h):
            norm += self.window[k * h:(k + 1) * h].astype(np.float64) ** 2
        self.inverse_norm = (1.0 / norm).astype(np.float32)
        self.reset()

    def reset(self) -> None:
        g = self.geometry
        self.next_frame = g.first_frame
        self.acc_start = g.first_frame * g.hop - g.n_fft // 2  # sample index of acc[0]
        self.acc = np.zeros((g.n_fft, self.channels), np.float32)
        self.n_out = 0  # samples returned so far (from sample 0)

    def add(self, spectra: np.ndarray) -> np.ndarray:
        g = self.geometry
        count = len(spectra)
        if count == 0:
            return np.zeros((0, self.channels), np.float32)
        frames = np.empty((count, g.n_fft, self.channels), np.float32)

        def transform(part: slice) -> None:
            frames[part] = np.fft.irfft(spectra[part], n=g.n_fft, axis=1) * self.window[:, None]

        self.pool.run(transform, count, FRAME_SLICE)
        span = (count - 1) * g.hop + g.n_fft
        if len(self.acc) < span:
            self.acc = np.concatenate([self.acc, np.zeros((span - len(self.acc), self.channels), np.float32)])
        # add frames hop by hop: the k-th hop-long piece of every frame lands at offset (i + k) * hop
        pieces = frames.reshape(count, g.n_fft // g.hop, g.hop, self.channels)
        for k in range(g.n_fft // g.hop):
            target = self.acc[k * g.hop:(k + count) * g.hop].reshape(count, g.hop, self.channels)
            target += pieces[:, k]
        self.next_frame += count
        return self._release(self.next_frame * g.hop - g.n_fft // 2)

    def _release(self, final_end: int) -> np.ndarray:
        """Return samples ``[n_out, final_end)``, normalised, and drop them from the accumulator."""
        g = self.geometry
        keep = final_end - self.acc_start
        if keep <= 0:
            return np.zeros((0, self.channels), np.float32)
        out, start = self.acc[:keep], self.acc_start
        self.acc = self.acc[keep:]
        self.acc_start = final_end
        if start < 0:  # samples before the signal start are discarded
            out, start = out[-start:], 0
        if len(out) == 0:
            return np.zeros((0, self.channels), np.float32)
        out = out * self.inverse_norm[np.arange(start, final_end) % g.hop][:, None]
        self.n_out = final_end
        return out
