"""Audio handed between the readers, the separators and the front ends: a re-readable source of blocks, the
checks every input passes, and the error bad input raises."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

BLOCK = 1 << 16  # samples per block when reading arrays or files


class InputError(ValueError):
    """The audio cannot be separated (empty, non-finite samples, ...)."""


@dataclass
class AudioSource:
    """Audio that can be read more than once in blocks: ``blocks()`` yields ``(samples, channels)`` float32."""

    sample_rate: int
    channels: int
    frames: int
    blocks: Callable[[], Iterator[np.ndarray]]

    @classmethod
    def from_array(cls, audio: np.ndarray, sample_rate: int) -> "AudioSource":
        audio = np.asarray(audio, np.float32)
        if audio.ndim == 1:
            audio = audio[:, None]
        if audio.ndim != 2:
            raise InputError(f"audio must be (samples,) or (samples, channels), got shape {audio.shape}")
        return cls(sample_rate, audio.shape[1], audio.shape[0],
                   lambda: (audio[i:i + BLOCK] for i in range(0, len(audio), BLOCK)))


def check_block(block: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(block)):
        raise InputError("the audio contains NaN or infinite samples")
    return block


def check_source(source: AudioSource) -> None:
    if source.frames <= 0:
        raise InputError("the audio is empty (no samples)")
    if source.channels <= 0:
        raise InputError("the audio has no channels")
    if not 1000 <= source.sample_rate <= 768000:
        raise InputError(f"unsupported sample rate {source.sample_rate} Hz")
