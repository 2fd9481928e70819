"""A written bundle's first separations: does it find a voice at all?

A fine-tuned network whose voice labels went wrong separates every song into empty vocals, and nothing in its
graphs shows it. After writing a bundle, export separates up to ``CLIPS`` voiced clips of the run's own validation
set (the ``--data`` sources and validation groups its checkpoint records, when they can be read from here), or
else a small built-in set of synthetic songs (sung notes with vibrato over chords and drums), and warns when the
vocals come out empty (``EMPTY_SHARE`` of the mixture's energy or less) on ``WARN_FRACTION`` of them or more.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CLIPS = 8
EMPTY_SHARE = 0.001
WARN_FRACTION = 0.25
SECONDS = 6.0


def validation_clips(provenance: dict, limit: int = CLIPS) -> list[tuple[np.ndarray, int]]:
    """Up to ``limit`` voiced mixtures ``(samples, channels)`` of the run's validation groups, with their rates
    (none when the run's data cannot be read from here)."""
    from stream_dc.evaluation.datasets import DatasetError, list_tracks

    groups = set(provenance.get("validation_groups", []))
    found = []
    for source in provenance.get("data", []):
        kind, _, path = source.partition(":")
        if not Path(path).is_dir():
            continue
        try:
            refs = [r for r in list_tracks(path, kind) if f"{kind}:{r.group}" in groups]
        except DatasetError:
            continue
        for ref in refs:
            if len(found) >= limit:
                return found
            try:
                track = ref.load()
            except (DatasetError, OSError, ValueError):
                continue
            if np.any(track.voice):
                found.append((track.mixture.astype(np.float32), track.sample_rate))
    return found


def built_in_clips(count: int = 4, rate: int = 16000) -> list[tuple[np.ndarray, int]]:
    """Synthetic songs: harmonic sung notes with vibrato over steady chords and noise bursts on a beat."""
    rng = np.random.default_rng(20)
    clips = []
    time = np.arange(int(SECONDS * rate)) / rate
    for _ in range(count):
        voice = np.zeros_like(time)
        for start in np.arange(0.0, SECONDS, 0.7):
            note = (time >= start) & (time < start + 0.55)
            f0 = rng.uniform(180, 480)
            phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.02 * np.sin(2 * np.pi * 5.5 * time))) / rate
            voice += note * sum(np.sin(h * phase) / h for h in range(1, 8))
        chords = sum(0.05 / h * np.sin(2 * np.pi * rng.uniform(90, 200) * ratio * h * time)
                     for ratio in (1.0, 1.25, 1.5) for h in range(1, 5))
        beat = np.zeros_like(time)
        for start in range(0, len(time), rate // 4):
            length = min(rate // 4, len(time) - start)
            beat[start:start + length] = 0.2 * rng.standard_normal(length) * np.exp(-np.arange(length) / (0.03 * rate))
        accompaniment = chords + beat
        voice *= np.sqrt(np.mean(accompaniment ** 2) / np.mean(voice ** 2))
        clips.append(((0.3 * (voice + accompaniment))[:, None].astype(np.float32), rate))
    return clips


def check_bundle(directory: str | Path, provenance: dict) -> str | None:
    """A warning when the bundle in ``directory`` gives empty vocals on too many clips, else None."""
    from stream_dc.separator import Separator

    clips = validation_clips(provenance)
    where = "of its validation clips"
    if not clips:
        clips, where = built_in_clips(), "built-in synthetic songs (its validation data is not readable here)"
    separator = Separator(directory, device="cpu")
    empty = 0
    for mixture, rate in clips:
        vocals, _ = separator.separate(mixture, rate)
        share = float(np.sum(vocals.astype(np.float64) ** 2) / max(np.sum(mixture.astype(np.float64) ** 2), 1e-20))
        empty += share <= EMPTY_SHARE
    if empty and empty >= WARN_FRACTION * len(clips):
        return (f"the bundle gives empty vocals on {empty} of {len(clips)} {where}: its voice labels may be wrong "
                "(measure them again with python -m training.calibrate BUNDLE @RECIPE)")
    return None
