"""Two evaluations of the same clips, compared song by song.

    stream-dc evaluate ... --json before.json
    stream-dc evaluate ... --model my-bundle --json after.json
    python benchmarks/paired.py before.json after.json [--system stream-dc] [--tie 0.05]

Medians over a dozen songs jump with whichever song sits in the middle: a change whose mean effect per song is a
few hundredths of a dB can move the median by a few tenths. This prints, for each file, the median and mean uSDR of
vocals and accompaniment, and for each file after the first, the mean per-song change against the first with its
standard error and how many songs went up or down by more than ``--tie`` dB. When the accompaniment is the mixture
minus the vocals (projection synthesis, offline or streaming: the default), a song's vocals and accompaniment uSDR
move by exactly the same amount, so one change column serves both.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def clip_scores(report: dict, system: str) -> dict[str, np.ndarray]:
    """Clip name -> ``(2,)`` uSDR of vocals and accompaniment for ``system`` in an ``evaluate --json`` report
    (clips of accompaniment alone, which have no uSDR, are left out)."""
    scores = {}
    for clip in report["clips"]:
        if system not in clip["scores"]:
            raise ValueError(f"clip {clip['name']!r} has no scores for system {system!r}")
        if "usdr" in clip["scores"][system]:
            scores[clip["name"]] = np.asarray(clip["scores"][system]["usdr"], np.float64)
    if not scores:
        raise ValueError(f"no clip with a voice scored for system {system!r}")
    return scores


def paired_change(before: dict[str, np.ndarray], after: dict[str, np.ndarray], tie: float) -> dict:
    """Per-song change ``after - before`` over the clips both hold: mean ``(2,)``, its standard error ``(2,)``,
    and the counts of songs whose accompaniment uSDR rose or fell by more than ``tie`` dB."""
    names = sorted(set(before) & set(after))
    if not names:
        raise ValueError("the two reports share no clip")
    change = np.stack([after[n] - before[n] for n in names])
    error = change.std(axis=0, ddof=1) / np.sqrt(len(names)) if len(names) > 1 else np.full(2, np.nan)
    return {"clips": len(names), "mean": change.mean(axis=0), "standard_error": error,
            "up": int(np.sum(change[:, 1] > tie)), "down": int(np.sum(change[:, 1] < -tie))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", help="stream-dc evaluate --json files of the same clips; the first is "
                                                   "the reference")
    parser.add_argument("--system", default="stream-dc", help="which system's scores to compare")
    parser.add_argument("--tie", type=float, default=0.05, help="dB within which a song counts as unchanged")
    args = parser.parse_args(argv)
    scores = []
    for path in args.reports:
        try:
            with open(path) as handle:
                scores.append(clip_scores(json.load(handle), args.system))
        except (OSError, ValueError) as error:
            print(f"paired: error: {path}: {error}", file=sys.stderr)
            return 1
        except KeyError as error:
            print(f"paired: error: {path}: not a stream-dc evaluate --json report (no {error} field)", file=sys.stderr)
            return 1
    print(f"{'report':40s} {'median voc/acc':15s} {'mean voc/acc':13s} {'acc. change, mean +- s.e.':26s} up/down")
    for index, (path, current) in enumerate(zip(args.reports, scores)):
        values = np.stack(list(current.values()))
        median, mean = np.median(values, axis=0), values.mean(axis=0)
        line = f"{path[-40:]:40s} {median[0]:7.2f}/{median[1]:<7.2f} {mean[0]:6.2f}/{mean[1]:<6.2f}"
        if index > 0:
            change = paired_change(scores[0], current, args.tie)
            line += (f" {change['mean'][1]:+8.3f} +- {change['standard_error'][1]:.3f} dB"
                     f"  {change['up']}/{change['down']} of {change['clips']}")
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
