"""Readers for separation datasets: voice and accompaniment stems per track.

- ``mir1k``: MIR-1K clips, stereo files with the accompaniment on the left and the voice on the right (the
  original ``.wav`` release or re-encoded ``.ogg``/``.flac``); the unit of a validation split is the singer
  (``<singer>_<song>_<clip>``).
- ``musdb``: MUSDB18-HQ / DSD100 folders: one folder per track holding ``vocals.*`` and the other stems
  (``bass``, ``drums``, ``other``...); accompaniment is the sum of every stem but the vocals (``mixture.*`` is
  ignored). DSD100's ``Sources/<subset>/<track>`` layout is found by searching below the given folder.
- ``stems``: one folder per track with ``mixture.*``, ``vocals.*`` and ``accompaniment.*`` (if
  ``accompaniment.*`` is missing it is ``mixture - vocals``).

Tracks are listed cheaply and loaded on demand (``TrackRef.load()``), at their own rate and channel count.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
DATASETS = ("mir1k", "musdb", "stems")


class DatasetError(ValueError):
    """A dataset folder cannot be read."""


@dataclass
class Track:
    """Stems of one track: ``voice`` and ``accompaniment`` are ``(samples, channels)`` float32 at ``sample_rate``."""

    name: str
    group: str
    sample_rate: int
    voice: np.ndarray
    accompaniment: np.ndarray

    @property
    def mixture(self) -> np.ndarray:
        return self.voice + self.accompaniment

    @property
    def duration(self) -> float:
        return len(self.voice) / self.sample_rate


@dataclass
class TrackRef:
    """A track that has been found but not read yet."""

    name: str
    group: str
    dataset: str
    paths: dict = field(default_factory=dict)

    def load(self) -> Track:
        if self.dataset == "mir1k":
            return _load_mir1k(self)
        return _load_stems(self)


def _read(path: Path) -> tuple[np.ndarray, int]:
    try:
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise DatasetError(f"cannot read {path}: {error}") from None
    return audio, rate


def _audio_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def list_tracks(directory: str | Path, dataset: str) -> list[TrackRef]:
    """Find the tracks of ``dataset`` below ``directory``, sorted by name."""
    directory = Path(directory)
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}: choose one of {', '.join(DATASETS)}")
    if not directory.is_dir():
        raise DatasetError(f"dataset folder not found: {directory}")
    if dataset == "mir1k":
        refs = [TrackRef(p.stem, p.stem.split("_")[0], "mir1k", {"stereo": p}) for p in _audio_files(directory)]
    else:
        refs = []
        for vocals in sorted(p for p in directory.rglob("vocals.*") if p.suffix.lower() in AUDIO_SUFFIXES):
            folder = vocals.parent
            stems = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES}
            refs.append(TrackRef(folder.name, folder.name, dataset, stems))
    if not refs:
        raise DatasetError(f"no {dataset} tracks found in {directory}")
    return sorted(refs, key=lambda r: r.name)


def _load_mir1k(ref: TrackRef) -> Track:
    audio, rate = _read(ref.paths["stereo"])
    if audio.shape[1] != 2:
        raise DatasetError(f"{ref.paths['stereo']}: MIR-1K clips are stereo (accompaniment left, voice right)")
    return Track(ref.name, ref.group, rate, voice=audio[:, 1:2].copy(), accompaniment=audio[:, 0:1].copy())


def _load_stems(ref: TrackRef) -> Track:
    voice, rate = _read(ref.paths["vocals"])
    others = {k: p for k, p in ref.paths.items() if k not in ("vocals", "mixture")}
    if "accompaniment" in others:
        others = {"accompaniment": others["accompaniment"]}
    if others:
        accompaniment = np.zeros_like(voice)
        for _, path in sorted(others.items()):
            stem, stem_rate = _read(path)
            if stem_rate != rate or stem.shape[1] != voice.shape[1]:
                raise DatasetError(f"{path}: rate or channel count differs from {ref.paths['vocals']}")
            n = min(len(stem), len(accompaniment))
            accompaniment = accompaniment[:n] + stem[:n]
            voice = voice[:n]
    elif "mixture" in ref.paths:
        mixture, mixture_rate = _read(ref.paths["mixture"])
        if mixture_rate != rate or mixture.shape[1] != voice.shape[1]:
            raise DatasetError(f"{ref.paths['mixture']}: rate or channel count differs from the vocals")
        n = min(len(mixture), len(voice))
        voice, accompaniment = voice[:n], mixture[:n] - voice[:n]
    else:
        raise DatasetError(f"track {ref.name}: vocals without accompaniment stems or a mixture")
    return Track(ref.name, ref.group, rate, voice=voice, accompaniment=accompaniment)


def split_groups(refs: list[TrackRef], validation: list[str]) -> tuple[list[TrackRef], list[TrackRef]]:
    """Split by whole groups (singers or tracks): ``(training, validation)``."""
    known = {r.group for r in refs}
    missing = [g for g in validation if g not in known]
    if missing:
        raise DatasetError(f"validation groups not in the dataset: {', '.join(missing)}")
    chosen = set(validation)
    return [r for r in refs if r.group not in chosen], [r for r in refs if r.group in chosen]
