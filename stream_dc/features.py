"""Analysis features: the one definition of the STFT, mel filterbank and log-mel features.

Training, export and the runtime all compute the network input and the training targets through this module,
so a model never sees features computed differently from the ones it was trained on.

Conventions
- Analysis runs on 16 kHz mono audio with a periodic Hann window of ``n_fft`` = 512 samples and a hop of 128
  (32 ms / 8 ms).
- Frames are centred: frame ``t`` covers samples ``[t*hop - n_fft/2, t*hop + n_fft/2)`` and samples outside the
  signal are zero. A signal of ``n`` samples has ``n // hop + 1`` frames (as ``librosa.stft(center=True)``).
- Spectra are ``(frames, bins)`` complex; mel spectra and features are ``(frames, n_mels)``.
- The mel filterbank is Slaney's (librosa's default: Slaney mel scale, area-normalised triangles).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

ANALYSIS_RATE = 16000
ANALYSIS_N_FFT = 512
ANALYSIS_HOP = 128
N_MELS = 150


@dataclass(frozen=True)
class FeatureConfig:
    """Every parameter of the analysis features; stored in each model bundle."""

    sample_rate: int = ANALYSIS_RATE
    n_fft: int = ANALYSIS_N_FFT
    hop_length: int = ANALYSIS_HOP
    n_mels: int = N_MELS
    fmin: float = 0.0
    fmax: float = ANALYSIS_RATE / 2
    log_floor: float = 1e-5  # added to the mel magnitude before the log
    silence_db: float = 40.0  # bins this far below the loudest bin are silent

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "FeatureConfig":
        return cls(**values)

    @property
    def frame_rate(self) -> float:
        """Analysis frames per second."""
        return self.sample_rate / self.hop_length


def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window of length ``n`` (as ``scipy.signal.get_window('hann', n)``), float64."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def frame_count(n_samples: int, hop: int) -> int:
    """Number of centred frames for a signal of ``n_samples``: ``n_samples // hop + 1``."""
    return n_samples // hop + 1


def frames_from_padded(padded: np.ndarray, n_fft: int, hop: int, n_frames: int) -> np.ndarray:
    """Frames of a signal that is already padded so that frame 0 starts at index 0.

    padded: ``(samples, ...)``; returns a read-only view ``(n_frames, n_fft, ...)``.
    """
    if n_frames > 0 and (n_frames - 1) * hop + n_fft > len(padded):
        raise ValueError(f"{n_frames} frames of {n_fft} samples need more than the {len(padded)} given")
    step = padded.strides[0]
    return np.lib.stride_tricks.as_strided(padded, (max(n_frames, 0), n_fft) + padded.shape[1:],
                                           (hop * step, step) + padded.strides[1:], writeable=False)


def stft(signal: np.ndarray, n_fft: int = ANALYSIS_N_FFT, hop: int = ANALYSIS_HOP) -> np.ndarray:
    """Centred STFT with a periodic Hann window and zero padding.

    signal: ``(samples,)`` or ``(samples, channels)``; returns ``(frames, n_fft//2+1)`` or
    ``(frames, n_fft//2+1, channels)`` complex64 with ``frames = samples // hop + 1``.
    """
    signal = np.asarray(signal, dtype=np.float32)
    n_frames = frame_count(signal.shape[0], hop)
    pad = [(n_fft // 2, n_fft // 2)] + [(0, 0)] * (signal.ndim - 1)
    padded = np.pad(signal, pad)
    frames = frames_from_padded(padded, n_fft, hop, n_frames)
    window = hann_window(n_fft).astype(np.float32)
    window = window.reshape((n_fft,) + (1,) * (signal.ndim - 1))
    return np.fft.rfft(frames * window, axis=1).astype(np.complex64)


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz, logarithmic above."""
    freq = np.asarray(freq, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = freq / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    log_region = freq >= min_log_hz
    mels = np.where(log_region, min_log_mel + np.log(np.maximum(freq, 1e-10) / min_log_hz) / logstep, mels)
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, np.log(6.4) / 27.0
    return np.where(mels >= min_log_mel, min_log_hz * np.exp(logstep * (mels - min_log_mel)), f_sp * mels)


def mel_band_edges(config: FeatureConfig) -> np.ndarray:
    """The ``n_mels + 2`` corner frequencies (Hz) of the triangular filters; band ``b`` peaks at ``edges[b+1]``."""
    mel_points = np.linspace(_hz_to_mel(config.fmin), _hz_to_mel(config.fmax), config.n_mels + 2)
    return _mel_to_hz(mel_points)


def mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """Slaney mel filterbank ``(n_mels, n_fft//2+1)`` float32, equal to ``librosa.filters.mel`` defaults."""
    fft_freqs = np.linspace(0.0, config.sample_rate / 2, config.n_fft // 2 + 1)
    edges = mel_band_edges(config)
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def band_centres(config: FeatureConfig) -> np.ndarray:
    """Centre frequency (Hz) of each mel band, ``(n_mels,)``."""
    return mel_band_edges(config)[1:-1]


class LogMel:
    """Log-mel features of 16 kHz spectra and their normalisation.

    ``mean`` and ``std`` are per-band statistics of the log-mel features on the training set, ``(n_mels,)``.
    """

    def __init__(self, config: FeatureConfig, mean: np.ndarray | None = None, std: np.ndarray | None = None):
        self.config = config
        self.filterbank = mel_filterbank(config)  # (n_mels, bins)
        self.filterbank64 = self.filterbank.astype(np.float64)
        self.mean = np.zeros(config.n_mels, np.float32) if mean is None else np.asarray(mean, np.float32)
        self.std = np.ones(config.n_mels, np.float32) if std is None else np.asarray(std, np.float32)
        if self.mean.shape != (config.n_mels,) or self.std.shape != (config.n_mels,):
            raise ValueError(f"normalisation statistics must have shape ({config.n_mels},)")
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.std)) and np.all(self.std > 0)):
            raise ValueError("normalisation statistics must be finite with a positive standard deviation")

    def mel_magnitude(self, spectrum: np.ndarray) -> np.ndarray:
        """``(frames, bins)`` complex -> ``(frames, n_mels)`` mel magnitude (filterbank applied to ``|X|``).

        A float32 matrix product rounds differently depending on how many frames it gets at once (the BLAS
        kernel changes with the row count), and one rounding step can flip a binary mask bin; computed in
        float64 and rounded once, each frame's result no longer depends on how a stream was cut into blocks.
        """
        return (np.abs(spectrum).astype(np.float64) @ self.filterbank64.T).astype(np.float32)

    def mel_power(self, spectrum: np.ndarray) -> np.ndarray:
        """``(frames, bins)`` complex -> ``(frames, n_mels)`` mel power (filterbank applied to ``|X|^2``)."""
        return (np.abs(spectrum) ** 2) @ self.filterbank.T

    def log_mel(self, spectrum: np.ndarray) -> np.ndarray:
        """``(frames, bins)`` complex -> ``(frames, n_mels)`` un-normalised log mel magnitude, float32."""
        return self.log_of(self.mel_magnitude(spectrum))

    def log_of(self, mel_magnitude: np.ndarray) -> np.ndarray:
        """``(frames, n_mels)`` mel magnitude -> its un-normalised log mel, float32 (the floor added)."""
        return np.log(mel_magnitude + self.config.log_floor).astype(np.float32)

    def normalise(self, log_mel: np.ndarray) -> np.ndarray:
        """Log-mel ``(..., n_mels)`` -> network input ``(..., n_mels)`` float32."""
        return ((log_mel - self.mean) / self.std).astype(np.float32)

    def silence_log_mel(self) -> np.ndarray:
        """Log-mel value of a digitally silent frame, ``(n_mels,)``."""
        return np.full(self.config.n_mels, np.log(self.config.log_floor), np.float32)

    def active_bins(self, log_mel: np.ndarray, reference_log_mel: float | None = None) -> np.ndarray:
        """Bins within ``silence_db`` of the loudest bin (or of ``reference_log_mel``), ``(frames, n_mels)`` bool.

        Digitally silent bins are never active.
        """
        if reference_log_mel is None:
            reference_log_mel = float(np.max(log_mel)) if log_mel.size else 0.0
        threshold = reference_log_mel - self.config.silence_db / 20.0 * np.log(10.0)
        floor = np.log(self.config.log_floor) + 1e-3
        return (log_mel >= threshold) & (log_mel > floor)


def ideal_binary_mask(voice_spectrum: np.ndarray, accompaniment_spectrum: np.ndarray, log_mel: LogMel) -> np.ndarray:
    """Voice-dominated bins of the mel power spectrogram: ``(frames, n_mels)`` bool (True = voice)."""
    return log_mel.mel_power(voice_spectrum) > log_mel.mel_power(accompaniment_spectrum)


def mono_downmix(audio: np.ndarray) -> np.ndarray:
    """``(samples, channels)`` -> ``(samples,)`` float32 mean over channels."""
    audio = np.asarray(audio, np.float32)
    return audio if audio.ndim == 1 else audio.mean(axis=1, dtype=np.float32)
