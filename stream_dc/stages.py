"""The stage protocol that every streaming stage follows, and the fixed delay that lets a stage keep it.

A stage takes blocks of any length with ``process(block)`` and ends with ``flush()``; ``reset()`` starts it over,
and ``latency_samples`` says how far its output lags its input, in samples at its input's rate. The stages of the
streaming processor: the analysis front end (audio -> log-mel frames), the mask engine (frames -> masks), the
synthesis (audio and masks -> stems) and the key change (stems -> stems). A stage that returns exactly one output
sample per input sample, delayed by a fixed latency, buffers what it computes in a ``FixedDelay``; an ``Aligner``
drops a stage's latency where a stream must line up with its input.
"""
from __future__ import annotations

import numpy as np


class FixedDelay:
    """Samples computed ahead of time, handed out ``latency`` samples late: ``take(n)`` returns the next ``n``
    samples ``(n, channels)`` of the delayed stream (zeros for its first ``latency``); ``put(samples)`` appends
    computed samples. Taking more than has been put raises RuntimeError (a latency computed too small)."""

    def __init__(self, latency: int, channels: int):
        self.latency, self.channels = int(latency), channels
        self.reset()

    def reset(self) -> None:
        self.delay_left = self.latency
        self.parts: list[np.ndarray] = []
        self.ready = 0

    def put(self, samples: np.ndarray) -> None:
        if len(samples):
            self.parts.append(samples)
            self.ready += len(samples)

    def take(self, count: int) -> np.ndarray:
        zeros = min(self.delay_left, count)
        self.delay_left -= zeros
        wanted = count - zeros
        if wanted > self.ready:
            raise RuntimeError(f"internal latency error: {wanted} samples due, {self.ready} ready")
        joined = np.concatenate(self.parts) if len(self.parts) > 1 else (
            self.parts[0] if self.parts else np.zeros((0, self.channels), np.float32))
        self.parts = [joined[wanted:]] if len(joined) > wanted else []
        self.ready -= wanted
        if not zeros:
            return joined[:wanted]
        return np.concatenate([np.zeros((zeros, self.channels), np.float32), joined[:wanted]])


class Aligner:
    """Drops the first ``latency`` samples of a delayed stream, so that what remains (with the processor's
    flushed tail) lines up with the input sample for sample: ``trim(*blocks)`` trims one or more parallel
    ``(samples, channels)`` blocks alike."""

    def __init__(self, latency: int):
        self.to_skip = latency

    def trim(self, *blocks: np.ndarray):
        skip = min(self.to_skip, len(blocks[0]))
        self.to_skip -= skip
        trimmed = tuple(block[skip:] for block in blocks)
        return trimmed if len(trimmed) > 1 else trimmed[0]
