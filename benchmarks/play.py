"""The karaoke player on a real-time device (a JACK server with the dummy driver): time to first sound, real-time
factor with a key change, a long play of a folder, and how soon a web control is heard.

    python benchmarks/play.py [--presets balanced paper] [--runs 3] [--minutes 10]

- **first sound**: from starting ``stream-dc play SONG`` (a new Python process, so start-up counts) to the first
  non-silent sample at its output ports, for each preset, the median of ``--runs``;
- **real-time factor**: ``play`` of 60 s of music with ``--key -2``, as the player reports it (separation and key
  change, per second of audio);
- **long play**: ``--minutes`` of music in a folder of one-minute songs, played through; underruns and JACK xruns;
- **web control**: the time from a guide-voice command sent to the web API to the first output sample it changes,
  measured on the JACK clock, the median of five commands.

Needs jackd (jackd2), PortAudio and JACK-Client. Writes ``results/play.txt``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import jack_server, machine, music, write_report  # noqa: E402

RATE, PERIOD = 44100, 1024


class Recorder:
    """A JACK client that records stream-dc's output ports as soon as they appear, with each cycle's wall-clock
    time and JACK frame time."""

    def __init__(self, server: str, seconds: float):
        import jack

        self.client = jack.Client(f"recorder{os.getpid()}", servername=server, no_start_server=True)
        self.ins = [self.client.inports.register(f"in_{c}") for c in range(2)]
        self.recording = np.zeros((int(seconds * RATE), 2), np.float32)
        self.frames = np.zeros(len(self.recording) // PERIOD + 1, np.int64)
        self.clock = np.zeros(len(self.recording) // PERIOD + 1)
        self.position = 0
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames):
        start = self.position
        if start + frames > len(self.recording):
            return
        self.frames[start // PERIOD] = self.client.last_frame_time
        self.clock[start // PERIOD] = time.monotonic()
        for c, port in enumerate(self.ins):
            self.recording[start:start + frames, c] = port.get_array()
        self.position += frames

    def connect(self, process) -> None:
        while not (ports := self.client.get_ports("PortAudio:out", is_audio=True)):
            if process.poll() is not None:
                raise RuntimeError("stream-dc play ended before opening its ports")
            time.sleep(0.002)
        for c, port in enumerate(ports[:2]):
            self.client.connect(port.name, f"{self.client.name}:in_{c}")

    def first_sound(self) -> float | None:
        """The wall-clock time of the first non-silent sample recorded."""
        loud = np.flatnonzero(np.abs(self.recording[:self.position]).max(axis=1) > 1e-4)
        if not len(loud):
            return None
        return self.clock[loud[0] // PERIOD] + (loud[0] % PERIOD) / RATE

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def play(server: str, args: list[str], web: bool = False):
    env = dict(os.environ, JACK_DEFAULT_SERVER=server, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "stream_dc", "play", *args, "--output", "system"]
                            + (["--web", "127.0.0.1:0"] if web else []), env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def first_sound(server: str, song: Path, preset: str, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        recorder = Recorder(server, 20.0)
        started = time.monotonic()
        process = play(server, [str(song), "--latency", preset])
        try:
            recorder.connect(process)
            time.sleep(4.0)
            heard = recorder.first_sound()
        finally:
            process.terminate()
            process.communicate(timeout=30)
            recorder.close()
        times.append(float("nan") if heard is None else heard - started)
    return times


def summary_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "stopped at" in line]
    return lines[-1] if lines else stderr.strip().splitlines()[-1]


def rtf_with_key(server: str, folder: Path) -> str:
    song = folder / "sixty.wav"
    sf.write(song, music(60.0, RATE, 2), RATE)
    process = play(server, [str(song), "--key", "-2"])
    _, stderr = process.communicate(timeout=300)
    return summary_line(stderr)


def long_play(server: str, folder: Path, minutes: float) -> str:
    songs = folder / "songs"
    songs.mkdir()
    whole = music(60.0 * minutes, RATE, 2)
    for k in range(int(np.ceil(minutes))):
        sf.write(songs / f"{k:02d}.wav", whole[k * 60 * RATE:(k + 1) * 60 * RATE], RATE)
    process = play(server, [str(songs)])
    _, stderr = process.communicate(timeout=int(minutes * 60 * 2 + 120))
    return summary_line(stderr)


def web_control(server: str, folder: Path) -> list[float]:
    """Milliseconds from each guide-voice command to the first output sample it changes."""
    song = folder / "sixty.wav"
    recorder = Recorder(server, 70.0)
    process = play(server, [str(song)], web=True)
    delays = []
    try:
        recorder.connect(process)
        url = None
        while url is None:
            line = process.stderr.readline()
            found = re.search(r"web remote: (http://\S+)", line)
            url = found.group(1) if found else None
            if not line and process.poll() is not None:
                raise RuntimeError("stream-dc play ended before printing its web address")
        base, _, query = url.partition("/?")
        time.sleep(3.0)
        for level in (6.0, -60.0, 6.0, -60.0, 6.0):
            before = recorder.position
            sent = recorder.client.frame_time
            request = urllib.request.Request(f"{base}/api/command?{query}",
                                             data=json.dumps({"command": "set_voice", "value": level}).encode())
            urllib.request.urlopen(request, timeout=10).read()
            time.sleep(1.5)
            delays.append(_heard_after(recorder, before, sent))
        process.terminate()
        process.communicate(timeout=30)
    finally:
        recorder.close()
    return delays


def _heard_after(recorder: Recorder, start: int, sent: int) -> float:
    """Milliseconds from the JACK frame time ``sent`` to the first recorded block after ``start`` whose level
    differs from the blocks before the command by more than 3 dB (the guide voice at +6 dB or off)."""
    x = recorder.recording
    block = 256
    level = lambda a, b: 10 * np.log10(np.mean(x[a:b] ** 2) + 1e-12)  # noqa: E731
    reference = level(start - RATE // 2, start)
    for k in range(start, recorder.position - block, block):
        if abs(level(k, k + block) - reference) > 3.0:
            frame = recorder.frames[k // PERIOD] + k % PERIOD
            return 1000.0 * (frame - sent) / RATE
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["balanced", "paper"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    lines = [f"machine: {machine()}; JACK dummy driver, {RATE} Hz, period {PERIOD}"]
    with jack_server(f"streamdc-play{os.getpid()}", RATE, PERIOD) as server, \
            tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary)
        song = folder / "song.wav"
        sf.write(song, music(20.0, RATE, 2), RATE)
        for preset in args.presets:
            times = first_sound(server, song, preset, args.runs)
            lines.append(f"first sound, {preset}: median {np.nanmedian(times):.2f} s "
                         f"(runs: {', '.join(f'{t:.2f}' for t in times)})")
            print(lines[-1], flush=True)
        lines.append(f"60 s with --key -2: {rtf_with_key(server, folder)}")
        print(lines[-1], flush=True)
        delays = web_control(server, folder)
        lines.append(f"web control heard after: median {np.nanmedian(delays):.0f} ms "
                     f"({', '.join(f'{d:.0f}' for d in delays)})")
        print(lines[-1], flush=True)
        if args.minutes > 0:
            lines.append(f"{args.minutes:g} minutes, a folder of one-minute songs: "
                         f"{long_play(server, folder, args.minutes)}")
    write_report("play.txt", "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
