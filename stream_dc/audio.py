"""Audio handed between the readers, the separators and the front ends: a re-readable source of blocks, the one
policy every input passes (formats and sample values), and the error bad input raises.

Limits (the resource model: work and memory grow with duration x channels x rate, so each is bounded where it is
honest to bound it):

- sample rate ``MIN_RATE``..``MAX_RATE`` Hz; channels 1..``MAX_CHANNELS``;
- samples must be finite and within ``MAX_SAMPLE`` of full scale (1.0): float audio 60 dB louder than full scale is
  not audio, and squaring it for spectra overflows. Such input is refused, never scaled silently, and never turns
  into NaN stems.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

BLOCK = 1 << 16  # samples per block when reading arrays or files
MIN_RATE, MAX_RATE = 1000, 768_000
MAX_CHANNELS = 64
MAX_SAMPLE = 1000.0


class InputError(ValueError):
    """The audio cannot be separated (empty, non-finite samples, unsupported format, ...)."""


@dataclass
class AudioSource:
    """Audio that can be read more than once in blocks: ``blocks(start=0)`` yields ``(samples, channels)`` float32
    from frame ``start`` on. ``frames`` is the length its header announces (``blocks`` checks what arrives against
    it)."""

    sample_rate: int
    channels: int
    frames: int
    blocks: Callable[..., Iterator[np.ndarray]]

    @classmethod
    def from_array(cls, audio: np.ndarray, sample_rate: int) -> "AudioSource":
        audio = np.asarray(audio, np.float32)
        if audio.ndim == 1:
            audio = audio[:, None]
        if audio.ndim != 2:
            raise InputError(f"audio must be (samples,) or (samples, channels), got shape {audio.shape}")
        return cls(sample_rate, audio.shape[1], audio.shape[0],
                   lambda start=0: (audio[i:i + BLOCK] for i in range(max(start, 0), len(audio), BLOCK)))


def check_format(sample_rate: int, channels: int) -> None:
    """Refuse a rate or channel count outside the limits (see the module docstring)."""
    if not MIN_RATE <= sample_rate <= MAX_RATE:
        raise InputError(f"unsupported sample rate {sample_rate} Hz (use {MIN_RATE} to {MAX_RATE} Hz)")
    if not 1 <= channels <= MAX_CHANNELS:
        raise InputError(f"unsupported channel count {channels} (use 1 to {MAX_CHANNELS} channels)")


def check_block(block: np.ndarray) -> np.ndarray:
    """``block`` itself when its samples are finite and within ``MAX_SAMPLE``; raises InputError otherwise (the
    caller names the input)."""
    if block.size:
        peak = float(np.max(np.abs(block)))
        if not np.isfinite(peak):
            raise InputError("the audio contains NaN or infinite samples")
        if peak > MAX_SAMPLE:
            raise InputError(f"the audio has samples of {peak:.3g}, beyond {MAX_SAMPLE:g} times full scale: float "
                             "audio must lie about within -1..1")
    return block


def check_source(source: AudioSource) -> None:
    if source.frames <= 0:
        raise InputError("the audio is empty (no samples)")
    check_format(source.sample_rate, source.channels)
