"""The one input opener: audio files read in blocks, through libsndfile or, for what it cannot read (m4a/AAC, opus,
video files), through ffmpeg; and folders turned into the audio files below them.

Every input is a regular file (a FIFO or a device would block a batch forever, so it is refused at once), its
format passes ``audio.check_format``, and its samples pass ``audio.check_block`` as they are read. A file that
decodes to much less than its header announces (a truncated or corrupt file) raises InputError naming it instead
of giving short stems.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import soundfile as sf

from .audio import AudioSource, InputError, check_block, check_format

FILE_BLOCK = 1 << 16
AUDIO_SUFFIXES = frozenset((".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".mp4", ".aiff",
                            ".aif", ".wma", ".webm", ".mka", ".caf", ".w64", ".rf64"))
SHORTFALL = (0.05, 0.05)  # a file may decode this fraction of its announced length, and this many seconds, short
PROBE_TIMEOUT = 20.0  # seconds for ffprobe to read a header


def quoted(path: str | Path) -> str:
    """A file name as error lines show it: as is when plain, else quoted, so a name holding a newline or a control
    character cannot forge a second line."""
    text = str(path)
    return text if text.isprintable() and "'" not in text and '"' not in text else repr(text)


def audio_files(paths: list[str | Path]) -> list[Path]:
    """The inputs in order, each folder replaced by the audio files below it (recursively, by name; a folder with
    none stays, for ``open_source`` to report); files named directly are kept whatever their name (the reader
    decides)."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            below = [p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()]
            found += sorted(below, key=lambda p: [part.lower() for part in p.relative_to(path).parts]) or [path]
        else:
            found.append(path)
    return found


def open_source(path: str | Path) -> tuple[AudioSource, str]:
    """An ``AudioSource`` reading ``path`` in blocks, and the file's sample format (libsndfile's subtype name, or
    ``"compressed"`` for what ffmpeg decodes). Raises InputError."""
    path = Path(path)
    name = quoted(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except OSError as error:
        raise InputError(f"{name}: cannot open ({error.strerror})") from None
    if stat.S_ISDIR(mode):
        raise InputError(f"{name}: a folder with no audio files in it")
    if not stat.S_ISREG(mode):
        raise InputError(f"{name}: not a regular file (a pipe or a device): give a file, or use stream-dc stream")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as error:
        return _ffmpeg_source(path, name, _short(error))
    _check_format(info.samplerate, info.channels, name)

    def blocks(start: int = 0) -> Iterator[np.ndarray]:
        read = start = max(0, min(start, info.frames))
        try:
            with sf.SoundFile(str(path)) as handle:
                if start:
                    handle.seek(start)
                while True:
                    block = handle.read(FILE_BLOCK, dtype="float32", always_2d=True)
                    if not len(block):
                        break
                    read += len(block)
                    yield _checked(block, name)
        except (sf.LibsndfileError, RuntimeError) as error:
            raise InputError(f"{name}: cannot decode ({_short(error)})") from None
        _check_length(name, read, info.frames, info.samplerate)

    return AudioSource(info.samplerate, info.channels, info.frames, blocks), info.subtype


def _check_format(rate: int, channels: int, name: str) -> None:
    try:
        check_format(rate, channels)
    except InputError as error:
        raise InputError(f"{name}: {error}") from None


def _checked(block: np.ndarray, name: str) -> np.ndarray:
    try:
        return check_block(block)
    except InputError as error:
        raise InputError(f"{name}: {error}") from None


def _check_length(name: str, read: int, announced: int, rate: int) -> None:
    if announced > 0 and read < announced * (1 - SHORTFALL[0]) and announced - read > SHORTFALL[1] * rate:
        raise InputError(f"{name}: decoded {read / rate:.3f} s but its header announces {announced / rate:.3f} s "
                         "(truncated or corrupt file)")


def _short(error: Exception) -> str:
    return str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__


# -- ffmpeg, for what libsndfile cannot read --------------------------------------------------------------------
def _ffmpeg_source(path: Path, name: str, reason: str) -> tuple[AudioSource, str]:
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    if ffmpeg is None or ffprobe is None:
        raise InputError(f"{name}: not a readable audio file ({reason}; install ffmpeg for m4a/AAC and other formats)")
    rate, channels, seconds = _probe(ffprobe, path, name)
    _check_format(rate, channels, name)
    announced = int(round(seconds * rate)) if seconds else 0

    def blocks(start: int = 0) -> Iterator[np.ndarray]:
        start = max(0, start)
        seek = ["-ss", f"{start / rate:.6f}"] if start else []
        command = [ffmpeg, "-v", "error", "-nostdin", *seek, "-i", str(path), "-map", "0:a:0", "-f", "f32le",
                   "-acodec", "pcm_f32le", "-ar", str(rate), "-ac", str(channels), "-"]
        # ffmpeg's complaints go to a file, not a pipe: a damaged file can log more than a pipe holds, and ffmpeg
        # would then block on its stderr while this reads its stdout
        with tempfile.TemporaryFile() as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
            frame_bytes, read, finished = 4 * channels, start, False
            try:
                while data := process.stdout.read(FILE_BLOCK * frame_bytes):
                    usable = len(data) // frame_bytes * frame_bytes
                    block = np.frombuffer(data[:usable], "<f4").reshape(-1, channels).copy()
                    read += len(block)
                    yield _checked(block, name)
                finished = True
            finally:
                process.stdout.close()
                if not finished:  # left early (an error, a seek): ffmpeg's work is not wanted any more
                    process.kill()
                status = process.wait()
            log.seek(0)
            errors = log.read().decode(errors="replace").strip().splitlines()
        if status != 0:
            raise InputError(f"{name}: cannot decode ({errors[-1] if errors else f'ffmpeg exit status {status}'})")
        _check_length(name, read, announced, rate)

    return AudioSource(rate, channels, max(announced, 1), blocks), "compressed"


def _probe(ffprobe: str, path: Path, name: str) -> tuple[int, int, float]:
    """Sample rate, channel count and duration (0 when unknown) of the first audio stream of ``path``."""
    command = [ffprobe, "-v", "error", "-select_streams", "a:0", "-show_entries",
               "stream=sample_rate,channels,duration:format=duration", "-of", "json", str(path)]
    try:
        result = subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT, stdin=subprocess.DEVNULL)
        report = json.loads(result.stdout or b"{}")
        stream = report["streams"][0]
        rate, channels = int(stream["sample_rate"]), int(stream["channels"])
    except subprocess.TimeoutExpired:
        raise InputError(f"{name}: ffprobe took more than {PROBE_TIMEOUT:g} s to read its header") from None
    except (OSError, KeyError, IndexError, ValueError, TypeError):
        raise InputError(f"{name}: not a readable audio file (neither libsndfile nor ffmpeg finds an audio "
                         "stream)") from None
    duration = stream.get("duration") or report.get("format", {}).get("duration") or 0
    try:
        seconds = float(duration)
    except ValueError:
        seconds = 0.0
    return rate, channels, seconds if np.isfinite(seconds) and seconds > 0 else 0.0
