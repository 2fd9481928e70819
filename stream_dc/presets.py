"""Latency presets: how the streaming processor schedules the network, in 8 ms analysis frames.

Window presets run the network on 500-frame windows: a window starts every ``hop`` frames and ends ``lookahead``
frames after the frames it decides, and consecutive windows' masks are crossfaded over ``crossfade`` frames.
Chunked presets run the latency-controlled BLSTM (the bundle's chunked graph): ``hop`` frames per chunk, each with
``lookahead`` frames of future context. A custom schedule is written ``hop=H,lookahead=L[,crossfade=X]`` or
``chunk=C,lookahead=L``.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LatencyPreset:
    """Window schedule in analysis frames (8 ms each)."""

    name: str
    hop: int  # frames decided by each window (each chunk, for the chunked engine)
    lookahead: int  # frames of future context after the decided frames
    crossfade: int  # frames blended between consecutive windows (even)
    description: str = ""
    chunked: bool = False  # the latency-controlled BLSTM (the bundle's chunked graph) instead of 500-frame windows

    def validate(self, window_frames: int) -> None:
        if self.chunked:
            if self.hop < 1 or self.lookahead < 1 or self.crossfade:
                raise ValueError("a chunked schedule needs chunk >= 1, lookahead >= 1 and no crossfade")
            return
        if self.hop < 1 or self.lookahead < 0 or self.crossfade < 0 or self.crossfade % 2:
            raise ValueError("hop must be >= 1, lookahead >= 0 and crossfade an even number >= 0")
        if self.crossfade > self.hop:
            raise ValueError("crossfade must not exceed hop")
        if self.crossfade // 2 > self.lookahead and self.crossfade:
            raise ValueError("crossfade/2 must not exceed lookahead")
        if self.hop + self.lookahead + self.crossfade // 2 > window_frames:
            raise ValueError(f"hop + lookahead + crossfade/2 must fit in the {window_frames}-frame window")


PRESETS = {
    "paper": LatencyPreset("paper", hop=500, lookahead=0, crossfade=0,
                           description="non-overlapping 500-frame windows, as the paper's test procedure"),
    "balanced": LatencyPreset("balanced", hop=100, lookahead=100, crossfade=20,
                              description="0.8 s hop, 0.8 s look-ahead"),
    "low": LatencyPreset("low", hop=40, lookahead=40, crossfade=16,
                         description="0.32 s hop, 0.32 s look-ahead"),
    "live": LatencyPreset("live", hop=12, lookahead=12, crossfade=0, chunked=True,
                          description="latency-controlled BLSTM: 96 ms chunks, 96 ms look-ahead"),
}
KEEP = ("accompaniment", "vocals")


def get_preset(latency: str | LatencyPreset) -> LatencyPreset:
    """A named preset, or a custom schedule written ``hop=H,lookahead=L[,crossfade=X]`` in 8 ms frames."""
    if isinstance(latency, LatencyPreset):
        return latency
    if latency in PRESETS:
        return PRESETS[latency]
    if "=" in latency:
        try:
            pairs = [(k.strip(), int(v)) for k, v in (item.split("=") for item in latency.split(","))]
            names = [k for k, _ in pairs]
            repeated = sorted({k for k in names if names.count(k) > 1})
            if repeated:
                raise ValueError(f"custom latency {latency!r}: {', '.join(repeated)} given more than once")
            values = dict(pairs)
            if "chunk" in values:
                chunk, lookahead = values.pop("chunk"), values.pop("lookahead")
                if values:
                    raise KeyError(", ".join(values))
                return LatencyPreset(latency, hop=chunk, lookahead=lookahead, crossfade=0, chunked=True,
                                     description="custom chunked")
            hop, lookahead = values.pop("hop"), values.pop("lookahead")
            crossfade = values.pop("crossfade", min(20, hop, 2 * lookahead) // 2 * 2)
            if values:
                raise KeyError(", ".join(values))
        except ValueError as error:
            if "more than once" in str(error):
                raise
            raise ValueError(f"custom latency {latency!r}: write hop=FRAMES,lookahead=FRAMES[,crossfade=FRAMES] or "
                             "chunk=FRAMES,lookahead=FRAMES") from None
        except KeyError:
            raise ValueError(f"custom latency {latency!r}: write hop=FRAMES,lookahead=FRAMES[,crossfade=FRAMES] or "
                             "chunk=FRAMES,lookahead=FRAMES") from None
        return LatencyPreset(latency, hop=hop, lookahead=lookahead, crossfade=crossfade, description="custom")
    raise ValueError(f"unknown latency preset {latency!r}: choose one of {', '.join(PRESETS)} "
                     "or write hop=FRAMES,lookahead=FRAMES or chunk=FRAMES,lookahead=FRAMES") from None
