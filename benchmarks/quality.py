"""Separation quality on professionally produced songs and on amateur karaoke, beside oracles and a previous model.

    python benchmarks/quality.py --data ../shared/data [--previous DIR] [--sets report] [--jobs 2]

Every row is ``stream-dc evaluate`` on the same clips:
- ``pro``: MUSDB18 songs held out of training (whole artists): median uSDR of vocals and accompaniment (the MDX
  challenge's SDR over the whole excerpt) and BSS Eval v4 median SDR, how much of the mixture's energy goes to the
  vocals, and how many songs come out with empty vocals;
- ``mir1k``: MIR-1K singers held out of training: GNSDR (BSS Eval v3, length-weighted), as the paper reports;
- ``alone``: instrumental pieces held out of training: the share of their energy wrongly removed as voice.

Two held-out sets exist (see ``training/recipes/pro-music-data.args``): ``validation`` chose the training epoch and the
mask settings; ``report`` chose nothing and gives the figures README quotes. Systems: the shipped model offline and
streaming (``balanced``, ``live``), offline without its voice-activity gate, without its mask refiner or without
the Wiener post-filter (not on MIR-1K: mono, where the filter is the masks themselves), with masks of the downmix
alone (not on MIR-1K either) or with a 32 ms synthesis window, ``--previous`` (another bundle, offline, with the
same runtime and ``--previous-options``), the oracle binary masks on the (64 ms) STFT and on the 16 kHz mel grid,
and the mixture. With ``--previous``, a line per kind also gives the mean change per song from the previous model to the
shipped one offline, with its standard error (as ``benchmarks/paired.py``). Writes
benchmarks/results/quality_<set>.csv and .txt.
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
from benchmarks.paired import clip_scores, paired_change  # noqa: E402

SETS = {
    "report": {
        "pro": ["Port St Willow", "Invisible Familiars", "The Scarlet Brand", "Dark Ride", "Swinging Steaks",
                "James May", "Atlantis Bound", "BigTroubles", "Spike Mullings"],
        "mir1k": ["abjones", "annar"],
        "alone": ["rock__debian-hedgewars-data__Desert", "pop__map-tiles__unwrittenstories_its_simple",
                  "hip-hop__clue-cards__game_60s", "electronic__debian-hedgewars-data__EarthRise",
                  "piano__Tandemonium__Gold_Rush", "funk__debian-supertuxkart-data__hacienda"],
    },
    "validation": {
        "pro": ["The Wrong'Uns", "St Vitus", "Triviul", "Creepoid", "Lushlife", "Celestial Shore",
                "Dreamers Of The Ghetto", "Bill Chudziak", "AvaLuna", "Titanium", "Angela Thomas Wade",
                "Steven Clark", "Aimee Norwich"],
        "mir1k": ["fdps", "titon"],
        "alone": ["rock__debian-hedgewars-data__Castle", "pop__clip-jolt__Newer_Wave",
                  "hip-hop__cc0-beats__boom_Ripper",
                  "funk__debian-lmms-common-demos__Skiessi_Onion", "electronic__clip-jolt__Neon_Laser_Horizon",
                  "acoustic__debian-supertuxkart-data__celtic", "jazz__librosa-data__Kevin_MacLeod_Vibe_Ace_hq",
                  "orchestral__Tandemonium__Krampus_Workshop"],
    },
}
OFFLINE_VARIANTS = {  # mode -> (evaluate's options, row name); other modes are streaming presets
    "offline": ([], "stream-dc offline"),
    "unfiltered": (["--no-wiener"], "stream-dc offline, no Wiener filter"),
    "unrefined": (["--no-mask-refiner"], "stream-dc offline, no mask refiner"),
    "ungated": (["--no-voice-gate"], "stream-dc offline, no voice gate"),
    "downmix": (["--no-channel-masks"], "stream-dc offline, downmix masks only"),
    "short": (["--synthesis-window", "32"], "stream-dc offline, 32 ms synthesis window"),
}
STEREO_ONLY = ("unfiltered", "downmix")  # no row for mono MIR-1K, where they change nothing
DATASETS = {"pro": ("musdb", "musdb18-7", "v4"), "mir1k": ("mir1k", "mir1k", "v3"),
            "alone": ("instrumental", "instrumental", "none")}


def evaluate(data: Path, kind: str, groups: list[str], systems: str, jobs: int, extra: list[str]) -> dict:
    dataset, folder, bss = DATASETS[kind]
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        command = [sys.executable, "-m", "stream_dc", "evaluate", "--data", str(data / folder), "--dataset", dataset,
                   "--groups", ",".join(groups), "--systems", systems, "--bss", bss, "--jobs", str(jobs),
                   "--json", str(report), "--device", "cpu"] + extra
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        return json.loads(report.read_text())


def rows_for(kind: str, name: str, summary: dict, system: str, clips: int) -> dict:
    entry = summary[system]
    row = {"set": kind, "system": name, "clips": clips,
           "vocals_share_median_%": f"{100 * entry['vocal_share']['median']:.1f}",
           "empty_vocals": len(entry["empty_vocals"])}
    for source, short in (("voice", "voc"), ("accompaniment", "acc")):
        values = entry[source]
        row[f"uSDR_{short}"] = f"{values['median_usdr']:.2f}" if values["median_usdr"] == values["median_usdr"] else "-"
        row[f"SDRv4_{short}"] = f"{values['median_sdr']:.2f}" if kind == "pro" and "median_sdr" in values else "-"
        row[f"GNSDR_{short}"] = f"{values['gnsdr']:.2f}" if kind == "mir1k" and "gnsdr" in values else "-"
    if system == "mixture":
        row["vocals_share_median_%"] = "-"
    return row


def change_line(kind: str, previous: dict, shipped: dict) -> str:
    """One line: the mean per-song uSDR change from the previous model to the shipped one (offline), its standard
    error and the songs up / down by more than 0.05 dB; medians alone hide whether a change is more than noise."""
    change = paired_change(clip_scores(previous, "stream-dc"), clip_scores(shipped, "stream-dc"), tie=0.05)
    return (f"  {kind}: {change['mean'][1]:+.3f} +- {change['standard_error'][1]:.3f} dB over {change['clips']} clips, "
            f"{change['up']} up / {change['down']} down")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data", help="the shared data folder")
    parser.add_argument("--sets", default="report", help="comma-separated: report, validation")
    parser.add_argument("--kinds", default="pro,mir1k,alone", help="comma-separated: pro, mir1k, alone")
    parser.add_argument("--previous", metavar="DIR", help="another bundle to compare (offline)")
    parser.add_argument("--previous-options", default="", metavar="OPTIONS",
                        help="evaluate's options for the previous bundle, e.g. --previous-options='--no-channel-masks "
                             "--synthesis-window 32' for the offline pipeline before its channel masks and 64 ms "
                             "window")
    parser.add_argument("--modes", default="offline,unfiltered,unrefined,ungated,downmix,short,balanced,live",
                        help="shipped model: offline, unfiltered (offline without the Wiener post-filter), ungated "
                             "(offline without the voice-activity gate), unrefined (offline without the mask "
                             "refiner), downmix (offline, masks of the downmix alone), short (offline, 32 ms "
                             "synthesis window), presets")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    data = Path(args.data)
    for set_name in [s for s in args.sets.split(",") if s]:
        rows, changes = [], []
        for kind in [k for k in args.kinds.split(",") if k]:
            groups = SETS[set_name][kind]
            oracles = "ibm-stft,ibm-mel" if kind != "alone" else ""
            for mode in [m for m in args.modes.split(",") if m]:
                if mode in STEREO_ONLY and kind == "mir1k":
                    continue
                systems = "stream-dc" + ("," + oracles if mode == "offline" and oracles else "")
                extra, name = OFFLINE_VARIANTS.get(mode, (["--mode", "stream", "--latency", mode],
                                                          f"stream-dc {mode}"))
                result = evaluate(data, kind, groups, systems, args.jobs, extra)
                clips = len(result["clips"])
                rows.append(rows_for(kind, name, result["summary"], "stream-dc", clips))
                if mode == "offline":
                    shipped_offline = result
                    for oracle in [o for o in oracles.split(",") if o] + ["mixture"]:
                        rows.append(rows_for(kind, oracle, result["summary"], oracle, clips))
            if args.previous:
                result = evaluate(data, kind, groups, "stream-dc", args.jobs,
                                  ["--model", args.previous] + args.previous_options.split())
                rows.append(rows_for(kind, "previous model offline", result["summary"], "stream-dc",
                                     len(result["clips"])))
                if kind != "alone" and "offline" in args.modes.split(","):
                    changes.append(change_line(kind, result, shipped_offline))
        columns = ["set", "system", "clips", "uSDR_voc", "uSDR_acc", "SDRv4_voc", "SDRv4_acc", "GNSDR_voc",
                   "GNSDR_acc", "vocals_share_median_%", "empty_vocals"]
        text = f"machine: {machine()}; held-out set: {set_name}\n" + table(rows, columns)
        if changes:
            text += "\nshipped offline against the previous model, per song (uSDR, vocals and accompaniment alike):\n"
            text += "\n".join(changes)
        print(text)
        write_csv(f"quality_{set_name}.csv", rows)
        (RESULTS / f"quality_{set_name}.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
