"""Peak memory of long runs: ``stream-dc stream`` after 1 and 60 minutes, ``stream-dc separate`` on an hour.

    python benchmarks/memory.py [--minutes 1 60] [--offline-minutes 60]

Audio is generated on the fly (the song looped) and piped in, so the input never sits in this process's memory;
the peak resident set size of each command comes from the kernel (``wait4``). The offline run goes through
``benchmarks/stages.py``, which also says during which stage the peak grew (decode, features, network,
clustering, refiner, Wiener, synthesis, write). Writes benchmarks/results/memory.csv and memory.txt.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine, music, table, write_csv, write_report  # noqa: E402
from stream_dc.pcm import encode_pcm  # noqa: E402

CLI = [sys.executable, "-m", "stream_dc"]
STAGES = [sys.executable, str(Path(__file__).with_name("stages.py"))]
RATE, CHANNELS = 44100, 2


def peak_of(process: subprocess.Popen) -> tuple[int, float]:
    """Wait for ``process``; return its exit status and peak resident memory in MB."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss / 1024


def stream_peak(minutes: float, preset: str) -> dict:
    chunk = encode_pcm(music(60.0, RATE, CHANNELS), "s16")  # one minute, sent again and again
    started = time.perf_counter()
    process = subprocess.Popen(CLI + ["stream", "--rate", str(RATE), "--channels", str(CHANNELS), "--dtype", "s16",
                                      "--latency", preset, "-q"],
                               stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    whole, part = divmod(minutes, 1.0)
    for _ in range(int(whole)):
        process.stdin.write(chunk)
    process.stdin.write(chunk[: int(len(chunk) * part) // (2 * CHANNELS) * (2 * CHANNELS)])
    process.stdin.close()
    code, peak = peak_of(process)
    assert code == 0
    return {"command": f"stream --latency {preset}", "minutes": minutes, "peak_mb": f"{peak:.0f}",
            "seconds": f"{time.perf_counter() - started:.0f}"}


def separate_peak(minutes: float) -> tuple[dict, list[dict]]:
    """The offline run's row, and its stages' rows (``stages.StageClock.rows``)."""
    with tempfile.TemporaryDirectory() as folder:
        path, stages = Path(folder) / "long.wav", Path(folder) / "stages.json"
        block = music(60.0, RATE, CHANNELS)
        with sf.SoundFile(path, "w", RATE, CHANNELS, subtype="PCM_16") as handle:
            for _ in range(int(minutes)):
                handle.write(block)
        started = time.perf_counter()
        process = subprocess.Popen(STAGES + [str(60 * minutes), str(stages), "--", "separate", str(path), "-o",
                                             folder, "-q"])
        code, peak = peak_of(process)
        assert code == 0
        return ({"command": "separate (offline)", "minutes": minutes, "peak_mb": f"{peak:.0f}",
                 "seconds": f"{time.perf_counter() - started:.0f}"}, json.loads(stages.read_text())["rows"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1.0, 60.0], help="stream input lengths")
    parser.add_argument("--offline-minutes", type=float, default=60.0, help="length of the offline file (0: skip)")
    parser.add_argument("--preset", default="balanced")
    args = parser.parse_args()
    rows = [stream_peak(m, args.preset) for m in args.minutes]
    text = ""
    if args.offline_minutes:
        row, stages = separate_peak(args.offline_minutes)
        rows.append(row)
        text = (f"\nseparate, {args.offline_minutes:g} minutes: where the peak grew (MB) and the time went\n"
                + table(stages, ["stage", "peak_growth_mb", "seconds", "rtf", "share"]))
    report = write_report("memory.txt", f"machine: {machine()}; 44.1 kHz stereo\n"
                          + table(rows, ["command", "minutes", "peak_mb", "seconds"]) + text)
    print(f"wrote {write_csv('memory.csv', rows)} and {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
