"""Readers for separation datasets: voice and accompaniment stems per track.

- ``mir1k``: MIR-1K clips, stereo files with the accompaniment on the left and the voice on the right (the
  original ``.wav`` release or re-encoded ``.ogg``/``.flac``); the unit of a validation split is the singer
  (``<singer>_<song>_<clip>``).
- ``musdb``: MUSDB18 in its distribution format (``<artist> - <title>.stem.mp4``: five AAC streams, mixture, drums,
  bass, other, vocals, decoded by ffmpeg) or MUSDB18-HQ / DSD100 folders (one folder per track holding
  ``vocals.*`` and the other stems; DSD100's ``Sources/<subset>/<track>`` layout is found by searching below the
  given folder). Accompaniment is the sum of every stem but the vocals; the mastered mixture is ignored, so the
  stems add up to the mixture exactly. The unit of a split is the artist (the name before `` - ``).
- ``stems``: one folder per track with ``mixture.*``, ``vocals.*`` and ``accompaniment.*`` (if
  ``accompaniment.*`` is missing it is ``mixture - vocals``).
- ``instrumental``: a folder of audio files with no voice (accompaniment only). Files named ``<number>_<rest>`` with
  the same ``<rest>`` are excerpts of one piece and form a group; any other file is its own group.

Tracks are listed cheaply and loaded on demand (``TrackRef.load()``), at their own rate and channel count.
``select`` picks tracks by group or by track name.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
DATASETS = ("mir1k", "musdb", "stems", "instrumental")
STEM_MP4 = ".stem.mp4"
MUSDB_STREAMS = {"mixture": 0, "drums": 1, "bass": 2, "other": 3, "vocals": 4}  # order in a .stem.mp4


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
        if self.dataset == "instrumental":
            audio, rate = _read(self.paths["audio"])
            return Track(self.name, self.group, rate, voice=np.zeros_like(audio), accompaniment=audio)
        if "stem_mp4" in self.paths:
            return _load_stem_mp4(self)
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
    elif dataset == "instrumental":
        refs = [TrackRef(p.stem, re.sub(r"^\d+_", "", p.stem), dataset, {"audio": p}) for p in _audio_files(directory)]
    else:
        refs = []
        for vocals in sorted(p for p in directory.rglob("vocals.*") if p.suffix.lower() in AUDIO_SUFFIXES):
            folder = vocals.parent
            stems = {p.stem: p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES}
            refs.append(TrackRef(folder.name, _artist(folder.name) if dataset == "musdb" else folder.name, dataset,
                                 stems))
        if dataset == "musdb":
            for path in sorted(directory.rglob("*" + STEM_MP4)):
                name = path.name[:-len(STEM_MP4)]
                refs.append(TrackRef(name, _artist(name), dataset, {"stem_mp4": path}))
    if not refs:
        raise DatasetError(f"no {dataset} tracks found in {directory}")
    return sorted(refs, key=lambda r: r.name)


def _artist(track_name: str) -> str:
    """MUSDB names tracks ``<artist> - <title>``; an artist's tracks stay on one side of a split."""
    return track_name.split(" - ")[0].strip() or track_name


def _ffmpeg() -> str:
    path = shutil.which("ffmpeg")
    if path is None:
        raise DatasetError("reading .stem.mp4 files needs ffmpeg (apt install ffmpeg)")
    return path


def _stream_format(path: Path) -> tuple[int, int]:
    """Sample rate and channel count of the first audio stream of ``path`` (all MUSDB streams share them)."""
    probe = shutil.which("ffprobe") or "ffprobe"
    command = [probe, "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate,channels",
               "-of", "json", str(path)]
    try:
        result = subprocess.run(command, capture_output=True, check=True, timeout=60)
        stream = json.loads(result.stdout)["streams"][0]
        return int(stream["sample_rate"]), int(stream["channels"])
    except (OSError, subprocess.SubprocessError, KeyError, IndexError, ValueError) as error:
        raise DatasetError(f"cannot read {path} with ffprobe ({type(error).__name__})") from None


def read_stem(path: Path, stream: int, stream_format: tuple[int, int] | None = None) -> tuple[np.ndarray, int]:
    """One audio stream of a multi-stream file decoded by ffmpeg: ``(samples, channels)`` float32 and its rate.
    ``stream_format`` is ``(rate, channels)`` when already known."""
    rate, channels = stream_format or _stream_format(path)
    command = [_ffmpeg(), "-v", "error", "-nostdin", "-i", str(path), "-map", f"0:a:{stream}", "-f", "f32le",
               "-acodec", "pcm_f32le", "-ar", str(rate), "-ac", str(channels), "-"]
    try:
        result = subprocess.run(command, capture_output=True, check=True, timeout=600)
    except subprocess.CalledProcessError as error:
        reason = error.stderr.decode(errors="replace").strip().splitlines()
        raise DatasetError(f"cannot decode stream {stream} of {path}: {reason[-1] if reason else 'ffmpeg failed'}") \
            from None
    except (OSError, subprocess.SubprocessError) as error:
        raise DatasetError(f"cannot decode {path} ({type(error).__name__})") from None
    audio = np.frombuffer(result.stdout, np.float32)
    return audio[:len(audio) // channels * channels].reshape(-1, channels).copy(), rate


def _load_stem_mp4(ref: TrackRef) -> Track:
    path = ref.paths["stem_mp4"]
    stream_format = _stream_format(path)
    voice, rate = read_stem(path, MUSDB_STREAMS["vocals"], stream_format)
    stems = [read_stem(path, MUSDB_STREAMS[name], stream_format)[0] for name in ("drums", "bass", "other")]
    n = min(len(voice), *(len(stem) for stem in stems))
    if n == 0:
        raise DatasetError(f"{path} holds no audio")
    return Track(ref.name, ref.group, rate, voice=voice[:n], accompaniment=sum(stem[:n] for stem in stems))


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


def split_names(text: str, refs: list[TrackRef]) -> list[str]:
    """Comma-separated group or track names -> ``[name, ...]``. Pieces that together name one of ``refs``' groups
    or tracks stay one name, so a name with commas in it (the MUSDB artist "Jokers, Jacks & Kings") can be given."""
    known = {r.group for r in refs} | {r.name for r in refs}
    pieces, names, i = text.split(","), [], 0
    while i < len(pieces):
        end = next((j for j in range(len(pieces), i + 1, -1) if ",".join(pieces[i:j]) in known), i + 1)
        names.append(",".join(pieces[i:end]))
        i = end
    return [n for n in names if n]


def select(refs: list[TrackRef], names: list[str]) -> list[TrackRef]:
    """The tracks whose group or name is in ``names``; every name must match something."""
    wanted = set(names)
    missing = [n for n in names if not any(n in (r.group, r.name) for r in refs)]
    if missing:
        raise DatasetError(f"not in the dataset: {', '.join(missing)}")
    return [r for r in refs if r.group in wanted or r.name in wanted]


def split_groups(refs: list[TrackRef], validation: list[str]) -> tuple[list[TrackRef], list[TrackRef]]:
    """Split by whole groups (singers, artists or tracks): ``(training, validation)``. A name in ``validation``
    may also be a track's name, which holds out that track's whole group."""
    held = {r.group for r in select(refs, validation)} if validation else set()
    return [r for r in refs if r.group not in held], [r for r in refs if r.group in held]
