"""Files that are never half-written and never written through a link: the one safe-write helper.

A file is written to a temporary sibling with an unpredictable name, created exclusively (``O_CREAT | O_EXCL |
O_NOFOLLOW``: a planted file or link at that name makes the creation fail and another name is drawn), then renamed
onto its name when complete; a rename replaces a link planted at the final name instead of writing through it. A
command writing below an output folder checks that every path it writes stays inside it once links are resolved
(``inside``).
"""
from __future__ import annotations

import errno
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

DISK_FULL_MARGIN = 1 << 20  # bytes: less free space than this after a failed write means the device is full
EXCLUSIVE = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)

# stem formats: file format, default sample format, and the sample formats (bit depths) each takes
FORMATS = {
    "wav": ("WAV", None, {"16": "PCM_16", "24": "PCM_24", "32": "PCM_32", "float": "FLOAT"}),
    "flac": ("FLAC", "PCM_24", {"16": "PCM_16", "24": "PCM_24"}),
    "mp3": ("MP3", "MPEG_LAYER_III", {}),
    "ogg": ("OGG", "VORBIS", {}),
}
PCM_SUBTYPES = ("PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")


def create_temporary(directory: Path, prefix: str, suffix: str = "", folder: bool = False) -> Path:
    """A new, uniquely named file (or folder) in ``directory``, created exclusively without following links, with
    the permissions the process's umask gives (``tempfile`` would make it private, and reading the umask means
    setting it, racily, for every thread)."""
    path, descriptor = open_temporary(directory, prefix, suffix, folder)
    if descriptor is not None:
        os.close(descriptor)
    return path


def open_temporary(directory: Path, prefix: str, suffix: str = "", folder: bool = False) -> tuple[Path, int | None]:
    """``create_temporary`` that keeps the new file open: its path and a write descriptor (None for a folder)."""
    while True:
        path = Path(directory) / f"{prefix}{secrets.token_hex(8)}{suffix}"
        try:
            if folder:
                os.mkdir(path, 0o777)
                return path, None
            return path, os.open(path, EXCLUSIVE, 0o666)
        except FileExistsError:
            continue


@contextmanager
def replaced_on_success(path: str | Path) -> Iterator[Path]:
    """Yields a new temporary sibling of ``path`` to write; renames it onto ``path`` if the block succeeds, else
    removes it, so ``path`` is never half-written."""
    path = Path(path)
    temporary = create_temporary(path.parent, f".{path.name}.", ".part")
    try:
        yield temporary
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    os.replace(temporary, path)


def inside(root: Path, path: Path) -> None:
    """Refuse ``path`` (ValueError) unless it lies inside ``root`` once both are resolved (links followed)."""
    resolved_root, resolved = Path(root).resolve(), Path(path).resolve()
    if resolved_root != resolved and resolved_root not in resolved.parents:
        raise ValueError(f"output {path} would lie outside {root} (it resolves to {resolved})")


def output_folder_name(file_name: str) -> str:
    """A folder name for an input's stems: the file name without its extension, with separators, control
    characters and leading dots removed (so ``..wav`` or ``...wav`` cannot name ``..`` or ``.``)."""
    stem = file_name.rsplit(".", 1)[0] if "." in file_name.lstrip(".") else file_name
    cleaned = "".join("_" if c in "/\\" or not c.isprintable() else c for c in stem).strip().lstrip(".").strip()
    return cleaned or "audio"


def stem_subtype(file_format: str, input_subtype: str, bits: str | None) -> str:
    """libsndfile's sample format for stems in ``file_format`` at ``bits`` (16, 24, 32, float or None: WAV keeps the
    input's PCM depth and writes 32-bit float for compressed input, whose stems would otherwise clip where they
    exceed full scale; FLAC writes 24 bits). Raises ValueError for a depth the format has no room for."""
    _, default, depths = FORMATS[file_format]
    if bits is None:
        if file_format == "wav":
            return input_subtype if input_subtype in PCM_SUBTYPES else "FLOAT"
        return default
    if bits not in depths:
        allowed = ", ".join(depths) or "none (the format is compressed)"
        raise ValueError(f"--bits {bits} does not apply to {file_format}: choose {allowed}")
    return depths[bits]


class StemWriter:
    """Writes one stem through an exclusive temporary sibling; ``commit()`` renames it into place, ``abort()``
    removes it. Write errors become ``OSError`` naming the file (``ENOSPC`` when the device is full). PCM formats
    clip to full scale (``clipped`` counts the samples that went past it); float and compressed ones keep what they
    are given."""

    def __init__(self, path: Path, sample_rate: int, channels: int, subtype: str, file_format: str = "wav"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.temporary, descriptor = open_temporary(self.path.parent, f".{self.path.name}.", ".part")
        self.clip = subtype.startswith("PCM")
        self.frames = self.clipped = 0
        try:
            self.file = sf.SoundFile(descriptor, "w", samplerate=sample_rate, channels=channels, subtype=subtype,
                                     format=FORMATS[file_format][0], closefd=True)
        except (sf.LibsndfileError, RuntimeError, TypeError) as error:
            os.close(descriptor)
            self.temporary.unlink(missing_ok=True)
            raise self._os_error(error) from None

    def _os_error(self, error: Exception) -> OSError:
        """libsndfile says only 'System error' when the disk is full: look at the free space to tell."""
        try:
            full = shutil.disk_usage(self.path.parent).free < DISK_FULL_MARGIN
        except OSError:
            full = False
        if full:
            return OSError(errno.ENOSPC, f"no space left on the device holding {self.path.parent}")
        return OSError(f"cannot write {self.path} ({str(error).strip().splitlines()[-1] if str(error) else error})")

    def write(self, block: np.ndarray) -> None:
        if len(block):
            try:
                if self.clip:
                    self.clipped += int(np.count_nonzero(np.abs(block) > 1.0))
                    block = np.clip(block, -1.0, 1.0)
                self.file.write(block)
            except (sf.LibsndfileError, RuntimeError) as error:
                raise self._os_error(error) from None
            self.frames += len(block)

    def commit(self) -> None:
        try:
            self.file.close()
        except (sf.LibsndfileError, RuntimeError) as error:
            raise self._os_error(error) from None
        os.replace(self.temporary, self.path)

    def abort(self) -> None:
        try:
            if not self.file.closed:
                self.file.close()
        except (sf.LibsndfileError, RuntimeError, AttributeError):
            pass
        self.temporary.unlink(missing_ok=True)
