"""Latency against quality of streaming schedules, window presets and chunked (latency-controlled BLSTM) ones.

    python benchmarks/latency_quality.py --data ../shared/data/mir1k --groups abjones,annar \
        [--pro ../shared/data/musdb18-7 --pro-groups ARTIST,...] [--jobs 2]

Each schedule (hop or chunk, and look-ahead, in 8 ms frames) is scored with ``stream-dc evaluate --mode stream``:
GNSDR (voice) on the MIR-1K singers and, with ``--pro``, median uSDR of vocals and accompaniment on MUSDB songs.
Offline separation and the oracle mel-IBM are drawn as reference lines. Latency is the processor's at 44.1 kHz.
Writes benchmarks/results/latency_quality.csv, .txt and .png.
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
from benchmarks.common import RESULTS, machine, table, write_csv, write_report  # noqa: E402
from stream_dc.stream import PRESETS, StreamProcessor, get_preset  # noqa: E402

SCHEDULES = ["paper", "balanced", "low", "hop=100,lookahead=0", "hop=25,lookahead=25", "live", "chunk=8,lookahead=16",
             "chunk=16,lookahead=8", "chunk=8,lookahead=4", "chunk=8,lookahead=8", "chunk=8,lookahead=32",
             "chunk=4,lookahead=16", "chunk=16,lookahead=16"]


def evaluate(data: str, groups: str, jobs: int, extra: list[str], model: str | None) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        command = [sys.executable, "-m", "stream_dc", "evaluate", "--data", data, "--groups", groups, "--jobs",
                   str(jobs), "--json", str(report), "--device", "cpu"] + extra + (["--model", model] if model else [])
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
                     f"{r['hop']}/{r['lookahead']}" + ("" if r["schedule"] == "custom" else f" {r['schedule']}"),
                     r["engine"]) for r in rows if r["latency_ms"] != "-")
    figure, axes = plt.subplots(figsize=(7.5, 4.2))
    for engine, marker, colour, label in (("windows", "o", "tab:blue", "500-frame windows (hop/look-ahead)"),
                                          ("chunked", "s", "tab:red", "chunked BLSTM (chunk/look-ahead)")):
        mine = [p for p in points if p[3] == engine]
        if mine:
            axes.plot([p[0] for p in mine], [p[1] for p in mine], marker, color=colour, label=label)
    for index, (latency, gnsdr, label, _) in enumerate(points):
        axes.annotate(label, (latency, gnsdr), textcoords="offset points", xytext=(5, 7 if index % 2 else -13),
                      fontsize=7)
    axes.axhline(offline, color="tab:green", ls="--", label=f"offline, whole file ({offline:.2f} dB)")
    values = [p[1] for p in points] + [offline]
    axes.set_ylim(min(values) - 0.15, max(values) + 0.12)
    axes.set_xlim(0, max(p[0] for p in points) * 1.12)
    axes.set_xlabel("latency at 44.1 kHz (ms)")
    axes.set_ylabel("GNSDR voice (dB)")
    axes.set_title(f"Latency vs quality on held-out singers (oracle mel-IBM: {oracle:.2f} dB)\n"
                   "labels: hop or chunk / look-ahead in 8 ms frames", fontsize=9)
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
    parser.add_argument("--pro", metavar="MUSDB", help="also score median uSDR on these MUSDB18 songs")
    parser.add_argument("--pro-groups", help="comma-separated artists of --pro")
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

    def scores(extra: list[str], systems: str = "stream-dc") -> dict:
        mir1k = evaluate(args.data, args.groups, args.jobs, ["--systems", systems] + extra, args.model)
        row = {"gnsdr_voice": f"{mir1k['stream-dc']['voice']['gnsdr']:.2f}", "usdr_voice_pro": "-",
               "usdr_accompaniment_pro": "-"}
        if args.pro:
            pro = evaluate(args.pro, args.pro_groups or "", args.jobs,
                           ["--dataset", "musdb", "--systems", "stream-dc", "--bss", "none"] + extra, args.model)
            row["usdr_voice_pro"] = f"{pro['stream-dc']['voice']['median_usdr']:.2f}"
            row["usdr_accompaniment_pro"] = f"{pro['stream-dc']['accompaniment']['median_usdr']:.2f}"
        return row, mir1k

    offline, reference = scores([], "stream-dc,ibm-mel")
    rows = [{"schedule": "offline", "engine": "-", "hop": "-", "lookahead": "-", "latency_ms": "-", **offline}]
    for schedule in args.schedules:
        preset = get_preset(schedule)
        latency = StreamProcessor(args.model, 44100, 2, latency=preset).latency_ms
        row, _ = scores(["--mode", "stream", "--latency", schedule])
        rows.append({"schedule": schedule if schedule in PRESETS else "custom",
                     "engine": "chunked" if preset.chunked else "windows", "hop": preset.hop,
                     "lookahead": preset.lookahead, "latency_ms": f"{latency:.0f}", **row})
        print(rows[-1], file=sys.stderr, flush=True)
    rows.append({"schedule": "oracle mel-IBM", "engine": "-", "hop": "-", "lookahead": "-", "latency_ms": "-",
                 "gnsdr_voice": f"{reference['ibm-mel']['voice']['gnsdr']:.2f}", "usdr_voice_pro": "-",
                 "usdr_accompaniment_pro": "-"})
    report = write_report("latency_quality.txt", f"machine: {machine()}; {args.groups} of {args.data}"
                          + (f"; {args.pro_groups} of {args.pro}" if args.pro else "") + "\n"
                          + table(rows, list(rows[0])))
    print(f"wrote {write_csv('latency_quality.csv', rows)}, {report} and {draw(rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
