"""Real-time factor of offline separation and of every streaming preset, through the real commands.

    python benchmarks/speed.py [--seconds 60] [--model DIR] [--device cpu|cuda]

Each preset runs, and ``balanced`` once more with a key change (``--key -2``).

``stream-dc separate`` runs on a WAV file; ``stream-dc stream`` reads raw PCM from a pipe. For each, the real-time
factor is processing time / audio duration as the command reports it (``stream``: time spent in the processor;
``separate``: the whole file job), and "wall" includes start-up (Python, onnxruntime session). Writes
benchmarks/results/speed.csv and speed.txt.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine, music, table, write_csv, write_report  # noqa: E402
from stream_dc.pcm import encode_pcm  # noqa: E402
from stream_dc.stream import PRESETS, StreamProcessor  # noqa: E402

CLI = [sys.executable, "-m", "stream_dc"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio length per run")
    parser.add_argument("--model", help="bundle folder (default: the shipped model)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="onnxruntime execution provider")
    args = parser.parse_args()
    model = ["--model", args.model] if args.model else []
    device = ["--device", args.device]
    rows = []
    for rate, channels in ((16000, 1), (44100, 2)):
        audio = music(args.seconds, rate, channels)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "input.wav"
            sf.write(path, audio, rate, subtype="PCM_16")
            started = time.perf_counter()
            result = subprocess.run(CLI + ["separate", str(path), "-o", folder] + device + model,
                                    capture_output=True, text=True, check=True)
            wall = time.perf_counter() - started
            factor = float(re.search(r"real-time factor ([0-9.]+)", result.stderr).group(1))
            rows.append({"mode": "offline", "rate_hz": rate, "channels": channels, "latency_ms": "-",
                         "rtf": f"{factor:.3f}", "wall_rtf": f"{wall / args.seconds:.3f}"})
        pcm = encode_pcm(audio, "s16")
        for preset, key in [(preset, 0.0) for preset in PRESETS] + [("balanced", -2.0)]:
            latency = StreamProcessor(args.model, rate, channels, latency=preset, key=key).latency_ms
            started = time.perf_counter()
            result = subprocess.run(CLI + ["stream", "--rate", str(rate), "--channels", str(channels), "--dtype",
                                           "s16", "--latency", preset, "--key", str(key)] + device + model,
                                    input=pcm, capture_output=True, check=True)
            wall = time.perf_counter() - started
            factor = float(re.search(rb"real-time factor ([0-9.]+)", result.stderr).group(1))
            rows.append({"mode": f"stream {preset}" + (f" --key {key:g}" if key else ""), "rate_hz": rate,
                         "channels": channels,
                         "latency_ms": f"{latency:.0f}", "rtf": f"{factor:.3f}",
                         "wall_rtf": f"{wall / args.seconds:.3f}"})
            print(rows[-1], file=sys.stderr)
    name = "speed" if args.device == "cpu" else f"speed_{args.device}"
    report = write_report(f"{name}.txt", f"machine: {machine(args.device == 'cuda')}; onnxruntime on {args.device}; "
                          f"{args.seconds:.0f} s of audio per run\n"
                          + table(rows, ["mode", "rate_hz", "channels", "latency_ms", "rtf", "wall_rtf"]))
    print(f"wrote {write_csv(f'{name}.csv', rows)} and {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
