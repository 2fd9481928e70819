"""A network run over a whole mixture, the way the runtime runs it: normalised log-mel ``(frames, n_mels)`` in,
embeddings ``(frames, n_mels, dim)`` out (``Embed``), through 500-frame windows padded with silence (the offline
separator and the window presets) or through the chunked graph one chunk at a time (the ``live`` preset).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from stream_dc.features import LogMel

Embed = Callable[[np.ndarray], np.ndarray]  # a mixture's normalised log-mel (frames, n_mels) -> (frames, n_mels, dim)


def window_embedder(embed_windows: Callable[[np.ndarray], np.ndarray], window: int, log_mel: LogMel) -> Embed:
    """``Embed`` through ``window``-frame windows, the last padded with silence; ``embed_windows`` maps
    ``(n, window, n_mels)`` to ``(n, window, n_mels, dim)``."""
    silence = log_mel.normalise(log_mel.silence_log_mel()[None])

    def embed(normalised: np.ndarray) -> np.ndarray:
        frames, bands = normalised.shape
        padded = -(-frames // window) * window
        windows = np.concatenate([normalised, np.repeat(silence, padded - frames, axis=0)]).reshape(-1, window, bands)
        return np.concatenate([embed_windows(windows[i:i + 8]) for i in range(0, len(windows), 8)]).reshape(
            padded, bands, -1)[:frames]

    return embed


def chunk_embedder(model, chunk: int, lookahead: int, log_mel: LogMel) -> Embed:
    """``Embed`` through a ``ChunkedEmbeddingModel``, ``chunk`` frames at a time with ``lookahead`` frames of
    silence-padded future, from a fresh state for every mixture (as ``stream_dc.engines.ChunkEngine``)."""
    silence = log_mel.normalise(log_mel.silence_log_mel()[None])

    def embed(normalised: np.ndarray) -> np.ndarray:
        model.reset()
        padded = np.concatenate([normalised, np.repeat(silence, chunk + lookahead, axis=0)])
        return np.concatenate([model.embed(padded[first:first + chunk + lookahead], min(chunk, len(normalised) - first))
                               for first in range(0, len(normalised), chunk)])

    return embed


def torch_window_embedder(model, window: int, log_mel: LogMel, device) -> Embed:
    """``Embed`` of a ``DeepClusteringNet`` over ``window``-frame windows."""
    @torch.no_grad()
    def embed_windows(windows: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(windows)).to(device)
        return model(batch).reshape(*batch.shape, -1).cpu().numpy()

    model.eval()
    return window_embedder(embed_windows, window, log_mel)
