"""Small synthetic separation data for tests: a vibrato harmonic "voice" over chords and noise bursts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf


def voice(seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Sung notes: harmonic tones with vibrato and a falling spectral slope, separated by short rests."""
    n = int(seconds * rate)
    out = np.zeros(n, np.float32)
    t = 0
    while t < n:
        length = int(rng.uniform(0.3, 0.9) * rate)
        f0 = rng.uniform(180, 520)
        time = np.arange(min(length, n - t)) / rate
        vibrato = 1 + 0.02 * np.sin(2 * np.pi * rng.uniform(4.5, 6.5) * time)
        phase = 2 * np.pi * np.cumsum(f0 * vibrato) / rate
        note = sum(np.sin(h * phase) / h for h in range(1, 9) if h * f0 < rate / 2 * 0.9)
        envelope = np.minimum(1, np.minimum(time / 0.03, (time[-1] - time + 1e-3) / 0.05))
        out[t:t + len(time)] = 0.3 * note * envelope
        t += len(time) + int(rng.uniform(0.05, 0.25) * rate)
    return out


def accompaniment(seconds: float, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Steady chords (stable pitch, many partials) and decaying noise bursts on a beat."""
    n = int(seconds * rate)
    time = np.arange(n) / rate
    out = np.zeros(n, np.float64)
    chord_length = int(rate * 1.0)
    for start in range(0, n, chord_length):
        root = rng.uniform(90, 200)
        segment = time[start:start + chord_length] - time[start]
        for ratio in (1.0, 1.25, 1.5):
            for h in range(1, 6):
                f = root * ratio * h
                if f < rate / 2 * 0.9:
                    out[start:start + len(segment)] += 0.05 / h * np.sin(2 * np.pi * f * segment)
    beat = int(rate * 0.25)
    for start in range(0, n, beat):
        length = min(beat, n - start)
        decay = np.exp(-np.arange(length) / (0.03 * rate))
        out[start:start + length] += 0.25 * rng.standard_normal(length) * decay
    return out.astype(np.float32)


def write_mir1k_like(folder: Path, singers: list[str], clips_per_singer: int, seconds: float = 4.0,
                     rate: int = 16000, seed: int = 0, suffix: str = ".wav") -> list[Path]:
    """Stereo clips named ``<singer>_<song>_<clip>``: accompaniment left, voice right, equal energy."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for singer in singers:
        for clip in range(clips_per_singer):
            v, a = voice(seconds, rate, rng), accompaniment(seconds, rate, rng)
            a *= np.sqrt(np.mean(v ** 2) / max(np.mean(a ** 2), 1e-12))
            path = folder / f"{singer}_1_{clip + 1:02d}{suffix}"
            sf.write(path, np.stack([a, v], axis=1), rate)
            paths.append(path)
    return paths
