"""Analysis front end: input blocks at any rate and channel count -> 16 kHz mono log-mel frames.

Offline separation and the streaming processor both use it, so both see identical features.
"""
from __future__ import annotations

import numpy as np

from .features import LogMel, mono_downmix
from .resample import Resampler
from .stft import FrameAnalyzer, StftGeometry


class AnalysisFrontEnd:
    """A stage (``stages``): ``process(block)`` with ``(samples, channels)`` audio returns the log-mel frames
    ``(frames, n_mels)`` that became complete; ``flush()`` zero-pads and returns the rest; ``reset()`` starts over.
    Frames are numbered from 0 (centred at 16 kHz sample ``t * hop``); ``total_frames`` is known after ``flush``.
    ``latency_samples`` (fractional) is how far past a frame's centre it reads, in input samples."""

    def __init__(self, log_mel: LogMel, sample_rate: int):
        self.log_mel, self.sample_rate = log_mel, sample_rate
        config = log_mel.config
        self.resampler = Resampler(sample_rate, config.sample_rate, 1)
        self.analyzer = FrameAnalyzer(StftGeometry(config.n_fft, config.hop_length), 1, start_frame=0)
        self.reset()

    def reset(self) -> None:
        self.resampler.reset()
        self.analyzer.reset()
        self.total_frames: int | None = None
        self.frames_out = 0
        self.n_in = 0

    @property
    def latency_samples(self) -> float:
        """Input samples past the centre of an analysis frame that it reads: the resampler's look-ahead and the
        second half of the 16 kHz window."""
        config = self.log_mel.config
        return self.resampler.taps_after + (config.n_fft // 2 - 1) * self.sample_rate / config.sample_rate

    def _log_mel(self, spectra: np.ndarray) -> np.ndarray:
        self.frames_out += len(spectra)
        return self.log_mel.log_mel(spectra[:, :, 0])

    def process(self, block: np.ndarray) -> np.ndarray:
        self.n_in += len(block)
        _, spectra = self.analyzer.process(self.resampler.process(mono_downmix(block)[:, None]))
        return self._log_mel(spectra)

    def _analysis_samples(self, n_samples: int) -> int:
        """How many 16 kHz samples ``n_samples`` input samples resample to (rounded up)."""
        return -(-n_samples * self.log_mel.config.sample_rate // self.sample_rate)

    def frames_for(self, n_samples: int) -> int:
        """How many frames a signal of ``n_samples`` input samples gives in all."""
        return self._analysis_samples(n_samples) // self.log_mel.config.hop_length + 1

    def flush(self) -> np.ndarray:
        self.total_frames = self.frames_for(self.n_in)
        _, spectra = self.analyzer.process(self.resampler.flush(self._analysis_samples(self.n_in)))
        _, tail = self.analyzer.flush(self.total_frames)
        return self._log_mel(np.concatenate([spectra, tail]))
