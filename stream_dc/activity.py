"""Frame voice activity: how likely each analysis frame is to hold a voice, from the network's own output.

k-means always splits a mixture in two, so accompaniment alone still gets a voice cluster, and a song's voice
cluster keeps claiming bins in the gaps between phrases. A bundle may carry a voice-activity gate, fitted by the
training package on its own training mixtures: a logistic regression on one frame's embeddings and normalised
log-mel, labelled "voice" where the voice is within 20 dB of the mixture's energy in that frame. Each frame's voice
mask is multiplied by ``sigmoid(logit + offset)``; the offset leans towards keeping the voice in the voice stem,
since a vocal remover that leaves the singer in is worse than one that thins an instrumental.

The gate reads one frame at a time, so offline and streaming runs apply it alike and it adds no latency.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

VOICED_WITHIN_DB = 20.0  # a frame is voiced when its voice energy is within this of the mixture's
DEFAULT_OFFSET = 1.0  # logit offset: a frame the regression finds even odds is gated by 0.73, not 0.5


def frame_features(embeddings: np.ndarray, normalised_log_mel: np.ndarray) -> np.ndarray:
    """``(frames, n_mels, dim)`` embeddings and ``(frames, n_mels)`` normalised log-mel ->
    ``(frames, n_mels * (dim + 1))`` float32: each frame's embeddings, then its log-mel."""
    frames = len(embeddings)
    return np.concatenate([embeddings.reshape(frames, -1), normalised_log_mel.reshape(frames, -1)],
                          axis=1).astype(np.float32, copy=False)


@dataclass
class VoiceActivity:
    """A fitted gate: ``weights`` ``(n_mels * (dim + 1),)`` over ``frame_features``, ``bias``, ``offset``."""

    weights: np.ndarray
    bias: float
    offset: float = DEFAULT_OFFSET

    def logits(self, embeddings: np.ndarray, normalised_log_mel: np.ndarray) -> np.ndarray:
        """``(frames,)`` float32 log-odds that each frame holds a voice (the offset not included)."""
        return frame_features(embeddings, normalised_log_mel) @ self.weights + np.float32(self.bias)

    def gate(self, embeddings: np.ndarray, normalised_log_mel: np.ndarray) -> np.ndarray:
        """``(frames,)`` float32 in (0, 1): the factor on each frame's voice mask."""
        z = np.clip(self.logits(embeddings, normalised_log_mel) + np.float32(self.offset), -60.0, 60.0)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def to_dict(self) -> dict:
        return {"weights": [float(v) for v in self.weights], "bias": float(self.bias), "offset": float(self.offset)}

    @classmethod
    def from_dict(cls, values: dict) -> VoiceActivity:
        return cls(np.asarray(values["weights"], np.float32), float(values["bias"]),
                   float(values.get("offset", DEFAULT_OFFSET)))

    def problems(self, n_mels: int, dim: int) -> list[str]:
        """What is wrong with this gate for a network of ``n_mels`` bands and ``dim``-dimensional embeddings."""
        expected = n_mels * (dim + 1)
        found = []
        if self.weights.shape != (expected,):
            found.append(f"voice_activity weights must have {expected} values, not {self.weights.size}")
        if not (np.all(np.isfinite(self.weights)) and np.isfinite(self.bias) and np.isfinite(self.offset)):
            found.append("voice_activity holds non-finite numbers")
        return found
