"""Latency against quality: GNSDR (voice) of streaming window schedules on held-out singers, drawn as a curve.

    python benchmarks/latency_quality.py --data ../shared/data/mir1k --groups abjones,annar [--jobs 2]

Each schedule (hop and look-ahead in 8 ms frames) is scored with ``stream-dc evaluate --mode stream``; offline
separation and the oracle mel-IBM are drawn as reference lines. Latency is the processor's at 44.1 kHz. Writes
benchmarks/results/latency_quality.csv and .png.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import RESULTS, machine, table, write_csv  # noqa: E402
from stream_dc.stream import PRESETS, StreamProcessor, get_preset  # noqa: E402

SCHEDULES = ["paper", "hop=250,lookahead=100", "hop=100,lookahead=100", "hop=100,lookahead=50", "hop=100,lookahead=0",
             "hop=60,lookahead=60", "hop=40,lookahead=40", "hop=40,lookahead=20", "hop=25,lookahead=25"]


def evaluate(data: str, groups: str, jobs: int, extra: list[str], model: str | None) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        command = [sys.executable, "-m", "stream_dc", "evaluate", "--data", data, "--groups", groups, "--jobs",
                   str(jobs), "--json", str(report)] + extra + (["--model", model] if model else [])
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return json.loads(report.read_text())["summary"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--groups", default="abjones,annar")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--model")
    parser.add_argument("--schedules", nargs="+", default=SCHEDULES)
    args = parser.parse_args()
    reference = evaluate(args.data, args.groups, args.jobs, ["--systems", "stream-dc,ibm-mel"], args.model)
    rows = [{"schedule": "offline", "hop": "-", "lookahead": "-", "latency_ms": "-",
             "gnsdr_voice": f"{reference['stream-dc']['voice']['gnsdr']:.2f}"}]
    points = []
    for schedule in args.schedules:
        preset = get_preset(schedule)
        latency = StreamProcessor(args.model, 44100, 2, latency=preset).latency_ms
        summary = evaluate(args.data, args.groups, args.jobs, ["--systems", "stream-dc", "--mode", "stream",
                                                               "--latency", schedule], args.model)
        gnsdr = summary["stream-dc"]["voice"]["gnsdr"]
        name = schedule if schedule in PRESETS else "custom"
        rows.append({"schedule": name, "hop": preset.hop, "lookahead": preset.lookahead,
                     "latency_ms": f"{latency:.0f}", "gnsdr_voice": f"{gnsdr:.2f}"})
        points.append((latency, gnsdr, f"{preset.hop}/{preset.lookahead}" + (f" {name}" if name != "custom" else "")))
        print(rows[-1], file=sys.stderr, flush=True)
    rows.append({"schedule": "oracle mel-IBM", "hop": "-", "lookahead": "-", "latency_ms": "-",
                 "gnsdr_voice": f"{reference['ibm-mel']['voice']['gnsdr']:.2f}"})
    print(f"machine: {machine()}; {args.groups} of {args.data}")
    print(table(rows, ["schedule", "hop", "lookahead", "latency_ms", "gnsdr_voice"]))
    write_csv("latency_quality.csv", rows)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    points.sort()
    axes.plot([p[0] for p in points], [p[1] for p in points], "o-", color="tab:blue", label="streaming schedules")
    for latency, gnsdr, label in points:
        axes.annotate(label, (latency, gnsdr), textcoords="offset points", xytext=(4, -11), fontsize=7)
    axes.axhline(reference["stream-dc"]["voice"]["gnsdr"], color="tab:green", ls="--", label="offline (whole file)")
    axes.axhline(reference["ibm-mel"]["voice"]["gnsdr"], color="tab:gray", ls=":", label="oracle mel-IBM")
    axes.set_xlabel("latency at 44.1 kHz (ms)")
    axes.set_ylabel("GNSDR voice (dB)")
    axes.set_title("Latency vs quality (labels: hop/look-ahead in 8 ms frames)", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    figure.savefig(RESULTS / "latency_quality.png", dpi=120)
    print(f"wrote {RESULTS / 'latency_quality.csv'} and {RESULTS / 'latency_quality.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
