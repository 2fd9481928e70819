"""Latency against quality: GNSDR (voice) of streaming window schedules on held-out singers, drawn as a curve.

    python benchmarks/latency_quality.py --data ../shared/data/mir1k --groups abjones,annar [--jobs 2]

Each schedule (hop and look-ahead in 8 ms frames) is scored with ``stream-dc evaluate --mode stream``; offline
separation and the oracle mel-IBM are drawn as reference lines. Latency is the processor's at 44.1 kHz. Writes
benchmarks/results/latency_quality.csv and .png.
"""
from __future__ import annotations

import argparse
import csv
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


def draw(rows: list[dict]) -> Path:
    """The latency/quality curve from the table rows (as written to latency_quality.csv)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    offline = float(next(r["gnsdr_voice"] for r in rows if r["schedule"] == "offline"))
    oracle = float(next(r["gnsdr_voice"] for r in rows if r["schedule"] == "oracle mel-IBM"))
    points = sorted((float(r["latency_ms"]), float(r["gnsdr_voice"]),
                     f"{r['hop']}/{r['lookahead']}" + ("" if r["schedule"] == "custom" else f" {r['schedule']}"))
                    for r in rows if r["latency_ms"] != "-")
    figure, axes = plt.subplots(figsize=(7.5, 4.2))
    axes.plot([p[0] for p in points], [p[1] for p in points], "o", color="tab:blue", label="streaming schedules (hop/look-ahead)")
    for index, (latency, gnsdr, label) in enumerate(points):
        axes.annotate(label, (latency, gnsdr), textcoords="offset points", xytext=(5, 7 if index % 2 else -13),
                      fontsize=7)
    axes.axhline(offline, color="tab:green", ls="--", label=f"offline, whole file ({offline:.2f} dB)")
    values = [p[1] for p in points] + [offline]
    axes.set_ylim(min(values) - 0.15, max(values) + 0.12)
    axes.set_xlim(0, max(p[0] for p in points) * 1.12)
    axes.set_xlabel("latency at 44.1 kHz (ms)")
    axes.set_ylabel("GNSDR voice (dB)")
    axes.set_title(f"Latency vs quality on held-out singers (oracle mel-IBM: {oracle:.2f} dB)\n"
                   "labels: hop/look-ahead in 8 ms frames", fontsize=9)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "latency_quality.png"
    figure.savefig(path, dpi=120)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="dataset folder (required unless --from-csv)")
    parser.add_argument("--groups", default="abjones,annar")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--model")
    parser.add_argument("--schedules", nargs="+", default=SCHEDULES)
    parser.add_argument("--from-csv", action="store_true", help="redraw the curve from results/latency_quality.csv")
    args = parser.parse_args()
    if args.from_csv:
        with open(RESULTS / "latency_quality.csv") as handle:
            print(f"wrote {draw(list(csv.DictReader(handle)))}")
        return 0
    if not args.data:
        parser.error("--data is required")
    reference = evaluate(args.data, args.groups, args.jobs, ["--systems", "stream-dc,ibm-mel"], args.model)
    rows = [{"schedule": "offline", "hop": "-", "lookahead": "-", "latency_ms": "-",
             "gnsdr_voice": f"{reference['stream-dc']['voice']['gnsdr']:.2f}"}]
    for schedule in args.schedules:
        preset = get_preset(schedule)
        latency = StreamProcessor(args.model, 44100, 2, latency=preset).latency_ms
        summary = evaluate(args.data, args.groups, args.jobs, ["--systems", "stream-dc", "--mode", "stream",
                                                               "--latency", schedule], args.model)
        rows.append({"schedule": schedule if schedule in PRESETS else "custom", "hop": preset.hop,
                     "lookahead": preset.lookahead, "latency_ms": f"{latency:.0f}",
                     "gnsdr_voice": f"{summary['stream-dc']['voice']['gnsdr']:.2f}"})
        print(rows[-1], file=sys.stderr, flush=True)
    rows.append({"schedule": "oracle mel-IBM", "hop": "-", "lookahead": "-", "latency_ms": "-",
                 "gnsdr_voice": f"{reference['ibm-mel']['voice']['gnsdr']:.2f}"})
    print(f"machine: {machine()}; {args.groups} of {args.data}")
    print(table(rows, ["schedule", "hop", "lookahead", "latency_ms", "gnsdr_voice"]))
    write_csv("latency_quality.csv", rows)
    print(f"wrote {RESULTS / 'latency_quality.csv'} and {draw(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
