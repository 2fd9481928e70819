"""Real-time factor of offline separation and of every streaming preset, through the real commands, and where
the time goes, stage by stage.

    python benchmarks/speed.py [--seconds 60] [--repeats 3] [--paced-seconds 30] [--paced PRESET...] [--model DIR]
                               [--device cpu|cuda]

Each preset runs, and ``balanced`` once more with a key change (``--key -2``). At 44.1 kHz, ``live`` (or each
preset of ``--paced``) runs once more as ``stream-dc live`` runs it, with one onnxruntime thread and its input
arriving at the pace of real time in 1024-frame blocks: work that comes in bursts finds the CPU's caches cold, and
costs more than the same work done back to back.

``stream-dc separate`` runs on a WAV file; ``stream-dc stream`` reads raw PCM from a pipe. For each, the real-time
factor is processing time / audio duration as the command reports it (``stream``: time spent in the processor;
``separate``: the whole file job), and "wall" includes start-up (Python, onnxruntime session); each is the median
of ``--repeats`` runs (a shared machine's speed drifts by 10-20% from run to run). Then every command runs once
more under ``benchmarks/stages.py``'s clock (44.1 kHz stereo only), which gives each stage's share: decode,
features, network, clustering, refiner, Wiener, synthesis, key change, write. Writes benchmarks/results/speed.csv,
speed.txt and speed_stages.txt.
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import machine, music, table, write_csv, write_report  # noqa: E402
from benchmarks.stages import STAGES as STAGE_NAMES  # noqa: E402
from stream_dc.pcm import encode_pcm  # noqa: E402
from stream_dc.stream import PRESETS, StreamProcessor  # noqa: E402

CLI = [sys.executable, "-m", "stream_dc"]
STAGES = [sys.executable, str(Path(__file__).with_name("stages.py"))]


def timed_runs(command: list[str], repeats: int, stdin: bytes | None = None) -> tuple[float, float]:
    """Median real-time factor the command reports and median wall time in seconds over ``repeats`` runs."""
    factors, walls = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        result = subprocess.run(command, input=stdin, capture_output=True, check=True)
        walls.append(time.perf_counter() - started)
        factors.append(float(re.search(rb"real-time factor ([0-9.]+)", result.stderr).group(1)))
    return statistics.median(factors), statistics.median(walls)


def paced_run(command: list[str], pcm: bytes, bytes_per_second: float, block_bytes: int) -> float:
    """Real-time factor the command reports when its input arrives at the pace of real time, a block at a time, as
    a sound card delivers it (``timed_runs`` feeds it as fast as it reads). One run."""
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def feed() -> None:
        started = time.monotonic()
        try:
            for offset in range(0, len(pcm), block_bytes):
                process.stdin.write(pcm[offset:offset + block_bytes])
                process.stdin.flush()
                time.sleep(max(0.0, started + (offset + block_bytes) / bytes_per_second - time.monotonic()))
            process.stdin.close()
        except (BrokenPipeError, ValueError):  # the command ended early: its status says why
            pass

    feeder = threading.Thread(target=feed, daemon=True)
    try:
        feeder.start()
        stderr = process.stderr.read()
        if process.wait() != 0:
            raise subprocess.CalledProcessError(process.returncode, command, stderr=stderr)
        return float(re.search(rb"real-time factor ([0-9.]+)", stderr).group(1))
    finally:
        process.kill()
        process.wait()


def stage_rtfs(command: list[str], seconds: float, stdin: bytes | None = None) -> dict[str, str]:
    """Stage -> real-time factor of one run of the ``stream-dc`` command (its arguments after ``stream-dc``)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "stages.json"
        subprocess.run(STAGES + [str(seconds), str(out), "--"] + command, input=stdin, capture_output=True,
                       check=True)
        return {row["stage"]: row["rtf"] for row in json.loads(out.read_text())["rows"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="audio length per run")
    parser.add_argument("--model", help="bundle folder (default: the shipped model)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="onnxruntime execution provider")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each command (the median counts)")
    parser.add_argument("--paced-seconds", type=float, default=30.0,
                        help="audio fed at the pace of real time to `stream --threads 1` (0: skip)")
    parser.add_argument("--paced", nargs="+", default=["live"], metavar="PRESET",
                        help="the presets run at the pace of real time")
    args = parser.parse_args()
    model = ["--model", args.model] if args.model else []
    device = ["--device", args.device]
    rows, stages = [], []
    for rate, channels in ((16000, 1), (44100, 2)):
        audio = music(args.seconds, rate, channels)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "input.wav"
            sf.write(path, audio, rate, subtype="PCM_16")
            separate = ["separate", str(path), "-o", folder] + device + model
            factor, wall = timed_runs(CLI + separate, args.repeats)
            rows.append({"mode": "offline", "rate_hz": rate, "channels": channels, "latency_ms": "-",
                         "rtf": f"{factor:.3f}", "wall_rtf": f"{wall / args.seconds:.3f}"})
            if channels == 2:
                stages.append({"mode": "offline", **stage_rtfs(separate + ["-q"], args.seconds)})
        pcm = encode_pcm(audio, "s16")

        def stream_command(preset: str, *options: str) -> list[str]:
            return ["stream", "--rate", str(rate), "--channels", str(channels), "--dtype", "s16", "--latency",
                    preset, *options] + device + model

        for preset, key in [(preset, 0.0) for preset in PRESETS] + [("balanced", -2.0)]:
            latency = StreamProcessor(args.model, rate, channels, latency=preset, key=key).latency_ms
            stream = stream_command(preset, "--key", str(key))
            factor, wall = timed_runs(CLI + stream, args.repeats, pcm)
            mode = f"stream {preset}" + (f" --key {key:g}" if key else "")
            rows.append({"mode": mode, "rate_hz": rate, "channels": channels, "latency_ms": f"{latency:.0f}",
                         "rtf": f"{factor:.3f}", "wall_rtf": f"{wall / args.seconds:.3f}"})
            print(rows[-1], file=sys.stderr)
            if channels == 2:
                stages.append({"mode": mode, **stage_rtfs(stream + ["-q"], args.seconds, pcm)})
        if channels != 2 or args.paced_seconds <= 0:
            continue
        paced = pcm[:int(args.paced_seconds * rate) * channels * 2]
        for preset in args.paced:  # as live runs it: one onnxruntime thread, 1024-frame blocks
            command = CLI + stream_command(preset, "--threads", "1", "--block", "1024")
            factor = paced_run(command, paced, rate * channels * 2, 1024 * channels * 2)
            latency = StreamProcessor(args.model, rate, channels, latency=preset).latency_ms
            rows.append({"mode": f"stream {preset}, real-time pace, 1 thread (one run)", "rate_hz": rate,
                         "channels": channels, "latency_ms": f"{latency:.0f}", "rtf": f"{factor:.3f}", "wall_rtf": "-"})
            print(rows[-1], file=sys.stderr)
    name = "speed" if args.device == "cpu" else f"speed_{args.device}"
    report = write_report(f"{name}.txt", f"machine: {machine(args.device == 'cuda')}; onnxruntime on {args.device}; "
                          f"{args.seconds:.0f} s of audio per run\n"
                          + table(rows, ["mode", "rate_hz", "channels", "latency_ms", "rtf", "wall_rtf"]))
    columns = ["mode"] + [stage for stage in STAGE_NAMES if any(stage in row for row in stages)]
    breakdown = write_report(f"{name}_stages.txt", f"machine: {machine(args.device == 'cuda')}; onnxruntime on "
                             f"{args.device}; real-time factor of each stage, one run of {args.seconds:.0f} s of "
                             "44.1 kHz stereo\n" + table([{c: row.get(c, "-") for c in columns} for row in stages],
                                                          columns))
    print(f"wrote {write_csv(f'{name}.csv', rows)}, {report} and {breakdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
