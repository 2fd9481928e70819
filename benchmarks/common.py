"""Helpers shared by the benchmark scripts: the machine's description, test audio, result files."""
from __future__ import annotations

import csv
import os
import platform
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SONG = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "songs" / "spleeter_audio_example.mp3"


def machine(with_gpu: bool = False) -> str:
    """CPU model and core count, e.g. 'Intel Xeon ... (2 cores)', and the GPU's name when ``with_gpu``."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    described = f"{model} ({os.cpu_count()} cores)"
    if with_gpu:
        try:
            gpus = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                  text=True, timeout=30).stdout.strip().replace("\n", ", ")
        except (OSError, subprocess.SubprocessError):
            gpus = ""
        described += f", {gpus or 'no GPU found'}"
    return described


def music(seconds: float, rate: int, channels: int) -> np.ndarray:
    """``seconds`` of the real song in ``../shared`` (looped, resampled), or of a synthetic mixture without it;
    ``(samples, channels)`` float32."""
    from stream_dc.resample import resample

    if SONG.exists():
        import soundfile as sf

        song, song_rate = sf.read(str(SONG), dtype="float32", always_2d=True)
        song = resample(song, song_rate, rate) if song_rate != rate else song
    else:
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.synthetic import accompaniment, voice

        rng = np.random.default_rng(0)
        song = np.stack([voice(10.0, rate, rng) + accompaniment(10.0, rate, rng)] * 2, axis=1)
    if channels == 1:
        song = song.mean(axis=1, keepdims=True)
    elif song.shape[1] < channels:
        song = np.repeat(song[:, :1], channels, axis=1)
    else:
        song = song[:, :channels]
    reps = int(np.ceil(seconds * rate / len(song)))
    return np.tile(song, (reps, 1))[: int(seconds * rate)].astype(np.float32)


def write_csv(name: str, rows: list[dict]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_report(name: str, text: str) -> Path:
    """Print ``text`` (a machine line and a table) and keep it as ``results/<name>``."""
    print(text)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    path.write_text(text + "\n")
    return path


def table(rows: list[dict], columns: list[str]) -> str:
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(str(r[c]).ljust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)


@contextmanager
def jack_server(name: str, rate: int, period: int):
    """A JACK server with the dummy driver (a real-time device without a sound card) named ``name``, ready for
    clients while the ``with`` block runs."""
    import jack

    server = subprocess.Popen(["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", str(rate), "-p",
                               str(period)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        for _ in range(150):
            try:
                jack.Client("probe", servername=name, no_start_server=True).close()
                break
            except jack.JackOpenError:
                time.sleep(0.1)
        yield name
    finally:
        server.terminate()
        server.wait(timeout=10)
