"""The mixing engine for training: voices over accompaniments from other songs and sources, with audio effects.

Clips are 16 kHz mono (``Stems``). A remix takes the voice of one clip and a segment of the accompaniment of
another (a different song, possibly from another dataset), passes each through its own random chain of effects
(pedalboard), sets the voice-to-accompaniment ratio and the overall level at random, and returns the two
processed stems: the training target is the ideal binary mask of *these* stems, so a voice's reverb tail is voice
and a distorted guitar is accompaniment. Every remix is described by a ``RemixSpec`` drawn from a seed, so an
epoch's data depends only on the seed and the epoch number, never on the worker that renders it.

Effects (each applied with its own probability):
- voice: high-pass and peaking/shelving EQ, compression, saturation, doubling (chorus), reverb, and (when
  ``voice_pitch`` is set) a pitch shift that keeps the formants, so few singers sound like more;
- accompaniment: EQ, compression, distortion, a small pitch shift and a small tempo change.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stream_dc.features import ANALYSIS_RATE


@dataclass(frozen=True)
class MixingConfig:
    """How remixes are drawn. The defaults are the paper's: 0 dB, no effects, levels as recorded."""

    snr_db: tuple[float, float] = (0.0, 0.0)  # voice-to-accompaniment ratio, uniform in this range
    level_dbfs: tuple[float, float] | None = None  # mixture RMS, uniform in this range (None: keep the voice's)
    augment: bool = False  # random effect chains
    no_voice: float = 0.0  # fraction of remixes whose voice is silenced (accompaniment alone)
    voice_weights: dict = field(default_factory=dict)  # source -> share of remix voices (default: by clip count)
    accompaniment_weights: dict = field(default_factory=dict)  # source -> share of accompaniments
    voice_pitch: float = 0.0  # largest voice pitch shift in semitones, half the augmented voices (0: none)


@dataclass(frozen=True)
class RemixSpec:
    """One remix: voice of clip ``voice``, accompaniment of clip ``accompaniment`` from ``offset`` samples on."""

    voice: int
    accompaniment: int
    offset: int
    seed: int


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def _pick(indices_by_source: dict[str, list[int]], weights: dict, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` clip indices: a source by ``weights`` (by clip count when empty), then a clip within it."""
    sources = [s for s, indices in indices_by_source.items() if indices]
    if not sources:
        return np.zeros(0, np.int64)
    shares = np.array([float(weights.get(s, 0.0)) if weights else len(indices_by_source[s]) for s in sources])
    if shares.sum() <= 0:
        raise ValueError(f"mixing weights {weights} give no share to the sources present ({', '.join(sources)})")
    chosen = rng.choice(len(sources), size=count, p=shares / shares.sum())
    return np.array([indices_by_source[sources[c]][rng.integers(len(indices_by_source[sources[c]]))] for c in chosen],
                    np.int64)


def draw_remixes(clips: list, count: int, config: MixingConfig, rng: np.random.Generator) -> list[RemixSpec]:
    """``count`` remixes of the clips (``Stems`` with ``source``, ``group``, ``voice``, ``accompaniment``): a clip
    with a voice over the accompaniment of a clip from another group (song or singer)."""
    voices: dict[str, list[int]] = {}
    accompaniments: dict[str, list[int]] = {}
    for i, clip in enumerate(clips):
        if clip.has_voice:
            voices.setdefault(clip.source, []).append(i)
        accompaniments.setdefault(clip.source, []).append(i)
    if len({c.group for c in clips}) < 2 or not voices:
        return []
    voice_picks = _pick(voices, config.voice_weights, count, rng)
    specs = []
    for v in voice_picks:
        while True:
            a = int(_pick(accompaniments, config.accompaniment_weights, 1, rng)[0])
            if clips[a].group != clips[v].group:
                break
        length = len(clips[v].voice)
        spare = len(clips[a].accompaniment) - length
        offset = (int(rng.integers(0, spare + 1)) if spare > 0
                  else int(rng.integers(0, max(1, len(clips[a].accompaniment)))))
        specs.append(RemixSpec(int(v), a, offset, int(rng.integers(0, 2**63 - 1))))
    return specs


def segment(audio: np.ndarray, offset: int, length: int) -> np.ndarray:
    """``length`` samples of ``audio`` from ``offset`` on, looping when the audio is shorter."""
    if offset + length <= len(audio):
        return audio[offset:offset + length]
    return np.resize(np.roll(audio, -offset), length)


def render(spec: RemixSpec, clips: list, config: MixingConfig) -> tuple[np.ndarray, np.ndarray]:
    """The processed ``(voice, accompaniment)`` of a remix, each ``(samples,)`` float32 at 16 kHz."""
    rng = np.random.default_rng(spec.seed)
    voice = clips[spec.voice].voice.astype(np.float32)
    accompaniment = segment(clips[spec.accompaniment].accompaniment, spec.offset, len(voice)).astype(np.float32)
    if config.augment:
        voice = voice_effects(rng)(voice[None], ANALYSIS_RATE)[0, :len(voice)]
        if config.voice_pitch > 0 and _maybe(rng, 0.5):
            voice = fit_length(pitch_shifted(voice, float(rng.uniform(-1, 1)) * config.voice_pitch), len(voice))
        accompaniment = fit_length(accompaniment_effects(accompaniment, rng), len(voice))
    voice_level, accompaniment_level = rms(voice), rms(accompaniment)
    snr = rng.uniform(*config.snr_db)
    if voice_level > 0 and accompaniment_level > 0:  # accompaniment scaled to the drawn ratio
        accompaniment = accompaniment * (voice_level / accompaniment_level * 10 ** (-snr / 20))
    if rng.random() < config.no_voice:
        voice = np.zeros_like(voice)
    if config.level_dbfs is not None:
        level = rms(voice + accompaniment)
        if level > 0:
            gain = 10 ** (rng.uniform(*config.level_dbfs) / 20) / level
            voice, accompaniment = voice * gain, accompaniment * gain
    return voice.astype(np.float32), accompaniment.astype(np.float32)


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    return audio[:length] if len(audio) >= length else np.pad(audio, (0, length - len(audio)))


def _maybe(rng: np.random.Generator, probability: float) -> bool:
    return bool(rng.random() < probability)


def _equaliser(rng: np.random.Generator) -> list:
    import pedalboard as fx

    chain = []
    if _maybe(rng, 0.3):
        chain.append(fx.HighpassFilter(cutoff_frequency_hz=float(rng.uniform(60, 250))))
    if _maybe(rng, 0.5):
        chain.append(fx.PeakFilter(cutoff_frequency_hz=float(np.exp(rng.uniform(np.log(150), np.log(5000)))),
                                   gain_db=float(rng.uniform(-8, 8)), q=float(rng.uniform(0.5, 2.0))))
    if _maybe(rng, 0.3):
        chain.append(fx.HighShelfFilter(cutoff_frequency_hz=float(rng.uniform(2500, 6000)),
                                        gain_db=float(rng.uniform(-8, 6))))
    if _maybe(rng, 0.2):
        chain.append(fx.LowShelfFilter(cutoff_frequency_hz=float(rng.uniform(80, 300)),
                                       gain_db=float(rng.uniform(-6, 6))))
    return chain


def _compressor(rng: np.random.Generator):
    import pedalboard as fx

    return fx.Compressor(threshold_db=float(rng.uniform(-30, -10)), ratio=float(rng.uniform(2, 8)),
                         attack_ms=float(rng.uniform(1, 15)), release_ms=float(rng.uniform(40, 250)))


def voice_effects(rng: np.random.Generator):
    """A random vocal chain: EQ, compression, saturation, doubling, reverb (a ``pedalboard.Pedalboard``)."""
    import pedalboard as fx

    chain = _equaliser(rng)
    if _maybe(rng, 0.5):
        chain.append(_compressor(rng))
    if _maybe(rng, 0.1):
        chain.append(fx.Distortion(drive_db=float(rng.uniform(2, 12))))
    if _maybe(rng, 0.2):  # doubling: a slightly detuned, delayed copy
        chain.append(fx.Chorus(rate_hz=float(rng.uniform(0.2, 1.5)), depth=float(rng.uniform(0.1, 0.4)),
                               centre_delay_ms=float(rng.uniform(8, 25)), feedback=0.0,
                               mix=float(rng.uniform(0.2, 0.5))))
    if _maybe(rng, 0.5):
        chain.append(fx.Reverb(room_size=float(rng.uniform(0.1, 0.85)), damping=float(rng.uniform(0.2, 0.8)),
                               wet_level=float(rng.uniform(0.05, 0.35)), dry_level=1.0))
    return fx.Pedalboard(chain)


def pitch_shifted(audio: np.ndarray, semitones: float) -> np.ndarray:
    """``(samples,)`` shifted by ``semitones`` at the same tempo, formants kept (Rubber Band via pedalboard)."""
    import pedalboard as fx

    return fx.time_stretch(audio[None].astype(np.float32), ANALYSIS_RATE, pitch_shift_in_semitones=semitones,
                           preserve_formants=True)[0]


def accompaniment_effects(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random accompaniment chain on ``(samples,)``: EQ, compression, distortion, small pitch/tempo changes
    (the length may change with the tempo)."""
    import pedalboard as fx

    chain = _equaliser(rng)
    if _maybe(rng, 0.4):
        chain.append(_compressor(rng))
    if _maybe(rng, 0.1):
        chain.append(fx.Distortion(drive_db=float(rng.uniform(4, 20))))
    out = fx.Pedalboard(chain)(audio[None], ANALYSIS_RATE)
    if _maybe(rng, 0.2):
        out = fx.time_stretch(out, ANALYSIS_RATE, stretch_factor=float(rng.uniform(0.94, 1.06)),
                              pitch_shift_in_semitones=float(rng.uniform(-1.0, 1.0)))
    return out[0].astype(np.float32)
