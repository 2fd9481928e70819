"""``stream-dc evaluate``: BSS Eval scores of stream-dc, oracle masks and baselines on the same clips.

Systems (each separates the mixture into voice and accompaniment at the track's own rate and channels):
- ``stream-dc``: the model (``--mode offline`` or ``stream`` with ``--latency``);
- ``ibm-mel``: the oracle ideal binary mask on the 16 kHz mel power spectrogram, through stream-dc's own
  synthesis: the ceiling of any binary mel mask, the model's included;
- ``ibm-stft``: the oracle ideal binary mask on the STFT at the track's rate (the synthesis STFT: 64 ms windows
  unless ``--synthesis-window`` says otherwise), the ceiling of binary masks;
- ``repet``: REPET-SIM (Rafii & Pardo), a training-free method (nearest-neighbour filtering from librosa);
- ``mixture``: the mixture itself as both estimates.

Scores are BSS Eval v3 (``mir_eval``: ``bss_eval_sources`` on mono tracks, ``bss_eval_images`` on multichannel
ones) over whole clips, or BSS Eval v4 (``museval``, framewise, median over frames) with ``--bss v4``, or none
(``--bss none``). NSDR = SDR(estimate) - SDR(mixture); GNSDR, GSIR and GSAR are means weighted by clip length.
Every clip also gets the MDX challenge's uSDR, ``10 log10(|s|^2 / |s - est|^2)`` over all samples and channels
(reported as the median over clips), and the share of the mixture's energy each system puts in the vocals.
A track "comes out with empty vocals" when the true voice holds at least 1% of the mixture's energy and the
estimate less than 0.1%; BSS Eval is undefined for a silent estimate, so such a track is left out of the BSS Eval
figures (not of uSDR, which scores it 0 dB for the vocals). On accompaniment alone (``--dataset instrumental``)
only the energy share is scored.
"""
from __future__ import annotations

import json
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from ..features import FeatureConfig
from ..files import inside, replaced_on_success
from ..options import SeparationOptions
from ..stft import HOP_MS, STREAM_WINDOW_HOPS
from .datasets import DATASETS, DatasetError, list_tracks, select, split_names
from .oracles import mel_ibm, repet_sim, stft_ibm, synthesise

SYSTEMS = ("stream-dc", "ibm-mel", "ibm-stft", "repet", "mixture")
DEFAULT_SYSTEMS = ("stream-dc", "ibm-mel", "mixture")
SOURCES = ("voice", "accompaniment")
METRICS = ("sdr", "sir", "sar")


COLUMNS_HELP = """columns: GNSDR / GSIR / GSAR: the length-weighted mean over clips of SDR(estimate) - SDR(mixture), SIR
and SAR (BSS Eval; dB); mdSDR: median SDR over clips; uSDR: median over clips of the MDX challenge's SDR,
10 log10(|s|^2 / |s - estimate|^2) over all samples; vocals %: median share of the mixture's energy put in the
vocals; empty: clips whose vocals come out silent although they have a voice"""


def add_arguments(parser) -> None:
    parser.epilog = COLUMNS_HELP
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--dataset", choices=DATASETS, default="mir1k")
    parser.add_argument("--groups", help="comma-separated singers (mir1k), artists (musdb) or tracks to evaluate "
                        "(default: all)")
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                        help=f"comma-separated systems from {', '.join(SYSTEMS)} (mixture is always scored)")
    parser.add_argument("--mode", choices=("offline", "stream"), default="offline", help="how stream-dc runs")
    parser.add_argument("--latency", default="balanced", help="streaming preset for --mode stream")
    parser.add_argument("--bss", choices=("v3", "v4", "none"), default="v3",
                        help="v3: mir_eval over whole clips; v4: museval framewise medians; none: uSDR only")

    parser.add_argument("--limit", type=int, default=0, help="evaluate only the first N clips (0: all)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (0: one per core)")
    parser.add_argument("--json", metavar="PATH", help="write per-clip and aggregate scores as JSON")
    parser.add_argument("--per-clip", action="store_true", help="print every clip's scores")


# -- scoring --------------------------------------------------------------------------------------------------
def museval_metrics():
    """museval's BSS Eval v4 module (numpy + scipy only), loaded by itself: importing the museval package loads
    musdb, which refuses to import without ffmpeg."""
    import importlib.util

    spec = importlib.util.find_spec("museval")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("--bss v4 needs museval: pip install museval")
    location = Path(list(spec.submodule_search_locations)[0]) / "metrics.py"
    module_spec = importlib.util.spec_from_file_location("stream_dc_museval_metrics", location)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def bss_scores(references: list[np.ndarray], estimates: list[np.ndarray], sample_rate: int, version: str) -> dict:
    """``{metric: [voice, accompaniment]}`` for ``(samples, channels)`` references and estimates."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if version == "v4":
            sdr, _, sir, sar, _ = museval_metrics().bss_eval(
                np.stack(references), np.stack(estimates), window=sample_rate, hop=sample_rate,
                compute_permutation=False)
            return {m: [float(np.nanmedian(v)) for v in values] for m, values in zip(METRICS, (sdr, sir, sar))}
        try:
            from mir_eval import separation
        except ImportError:
            raise RuntimeError("evaluate needs mir_eval: pip install 'stream-dc[eval]'") from None
        if references[0].shape[1] == 1:
            sdr, sir, sar, _ = separation.bss_eval_sources(np.stack([r[:, 0] for r in references]),
                                                           np.stack([e[:, 0] for e in estimates]))
        else:
            sdr, _, sir, sar, _ = separation.bss_eval_images(np.stack(references), np.stack(estimates))
    return {m: [float(x) for x in values] for m, values in zip(METRICS, (sdr, sir, sar))}


_WORKER: dict = {}


def _init_worker(options: dict) -> None:
    _WORKER.update(options)
    if "stream-dc" in options["systems"]:
        from ..separator import Separator

        _WORKER["separator"] = Separator(options=options["separation"])


def evaluate_clip(ref) -> dict:
    """Scores of every system on one track: ``{"name", "group", "seconds", "scores": {system: {metric: [v, a]}}}``."""
    track = ref.load()
    options = _WORKER
    features = (options["separator"].bundle.config.features if "separator" in options else FeatureConfig())
    mixture = track.mixture
    references = [track.voice, track.accompaniment]
    estimates = {"mixture": (mixture, mixture)}
    timings = {}
    for system in options["systems"]:
        started = time.perf_counter()
        if system == "stream-dc":
            estimates[system] = options["separator"].separate(mixture, track.sample_rate)
        elif system == "ibm-mel":
            estimates[system] = synthesise(mixture, track.sample_rate, mel_ibm(track, features), features,
                                           options["window_hops"])
        elif system == "ibm-stft":
            estimates[system] = stft_ibm(track, options["window_hops"])
        elif system == "repet":
            estimates[system] = repet_sim(mixture, track.sample_rate)
        timings[system] = time.perf_counter() - started
    voiced = energy(track.voice) > 0
    scores = {}
    for system, (vocals, accompaniment) in estimates.items():
        entry = {}
        if voiced and options["bss"] != "none":
            if energy(vocals) > 0 and energy(accompaniment) > 0:
                entry = bss_scores(references, [vocals, accompaniment], track.sample_rate, options["bss"])
            else:  # BSS Eval is undefined for a silent estimate (the clip counts among the empty vocals)
                entry = {metric: [float("nan"), float("nan")] for metric in METRICS}
        entry["usdr"] = ([usdr(track.voice, vocals), usdr(track.accompaniment, accompaniment)] if voiced
                         else [float("nan"), float("nan")])
        entry["vocal_share"] = energy(vocals) / max(energy(mixture), 1e-20)
        scores[system] = entry
    return {"name": track.name, "group": track.group, "seconds": track.duration, "scores": scores,
            "true_vocal_share": energy(track.voice) / max(energy(mixture), 1e-20),
            "separation_seconds": timings}


def energy(audio: np.ndarray) -> float:
    return float(np.sum(np.square(audio, dtype=np.float64)))


def usdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """The MDX challenge's SDR: ``10 log10(|s|^2 / |s - est|^2)`` over all samples and channels (with a tiny
    floor on both, as the challenge)."""
    return float(10 * np.log10((energy(reference) + 1e-7) / (energy(reference - estimate) + 1e-7)))


EMPTY_VOCALS = (0.01, 0.001)  # true voice share of the mixture's energy at least, estimate's share below


def aggregate(clips: list[dict]) -> dict:
    """Per system and source: length-weighted GNSDR, GSIR, GSAR and mean SDR (when BSS Eval ran), median uSDR;
    per system: the vocals' median and mean share of the mixture's energy and the tracks with empty vocals."""
    weights = np.array([c["seconds"] for c in clips])
    result = {}
    for system in clips[0]["scores"]:
        entry = {}
        for s, source in enumerate(SOURCES):
            values = {}
            scored = [c for c in clips if np.isfinite(c["scores"][system].get("sdr", [np.nan] * 2)[s])
                      and np.isfinite(c["scores"]["mixture"].get("sdr", [np.nan] * 2)[s])]
            if scored:
                w = np.array([c["seconds"] for c in scored])
                nsdr = [c["scores"][system]["sdr"][s] - c["scores"]["mixture"]["sdr"][s] for c in scored]
                values = {
                    "gnsdr": float(np.average(nsdr, weights=w)),
                    "gsir": float(np.average([c["scores"][system]["sir"][s] for c in scored], weights=w)),
                    "gsar": float(np.average([c["scores"][system]["sar"][s] for c in scored], weights=w)),
                    "mean_sdr": float(np.mean([c["scores"][system]["sdr"][s] for c in scored])),
                    "median_sdr": float(np.median([c["scores"][system]["sdr"][s] for c in scored])),
                }
            usdrs = [c["scores"][system]["usdr"][s] for c in clips if np.isfinite(c["scores"][system]["usdr"][s])]
            values["median_usdr"] = float(np.median(usdrs)) if usdrs else float("nan")
            entry[source] = values
        shares = np.array([c["scores"][system]["vocal_share"] for c in clips])
        entry["vocal_share"] = {"median": float(np.median(shares)), "mean": float(np.average(shares, weights=weights))}
        entry["empty_vocals"] = [c["name"] for c in clips
                                 if c["true_vocal_share"] >= EMPTY_VOCALS[0]
                                 and c["scores"][system]["vocal_share"] < EMPTY_VOCALS[1]]
        result[system] = entry
    return result


def format_table(summary: dict, systems: list[str]) -> str:
    """One row per system: GNSDR/GSIR/GSAR (when BSS Eval ran), median uSDR, vocals' energy share, empty vocals."""
    bss = any("gnsdr" in summary[s]["voice"] for s in systems)
    columns = [(f"{source[:5]} {label}", source, key) for source in SOURCES
               for label, key in ((("GNSDR", "gnsdr"), ("GSIR", "gsir"), ("GSAR", "gsar"), ("mdSDR", "median_sdr"))
                                  if bss else ()) + (("uSDR", "median_usdr"),)]
    header = f"{'system':<12}" + "".join(f"{name:>13}" for name, _, _ in columns) + f"{'vocals %':>10}{'empty':>7}"
    lines = [header, "-" * len(header)]
    for system in systems:
        row = f"{system:<12}" + "".join(
            f"{'-':>13}" if system == "mixture" and key == "gsar"  # no artefacts: SAR is unbounded (about 150 dB)
            else f"{summary[system][source].get(key, float('nan')):>13.2f}" for _, source, key in columns)
        row += f"{100 * summary[system]['vocal_share']['median']:>10.1f}{len(summary[system]['empty_vocals']):>7d}"
        lines.append(row)
    return "\n".join(lines)


class Evaluation:
    """Scores ``systems`` (of ``SYSTEMS``) on the ``dataset`` tracks in ``data`` (``groups``: a comma-separated
    selection; ``limit``: the first N), stream-dc running as ``options`` say; ``run()`` prints the table, writes the
    ``json`` report when asked, and returns the exit status. ``jobs`` worker processes (0: one per core) share the
    clips, each running onnxruntime on one thread unless ``options.threads`` says otherwise."""

    def __init__(self, options: SeparationOptions, data: str, dataset: str = "mir1k", groups: str | None = None,
                 systems: str = ",".join(DEFAULT_SYSTEMS), bss: str = "v3", limit: int = 0, jobs: int = 1,
                 json_path: str | None = None, per_clip: bool = False, out=None, err=None):
        self.options, self.data, self.dataset, self.groups = options, data, dataset, groups
        self.systems_text, self.bss, self.limit, self.jobs = systems, bss, limit, jobs
        self.json_path, self.per_clip = json_path, per_clip
        self.out, self.err = out or sys.stdout, err or sys.stderr

    @classmethod
    def from_arguments(cls, args, options: SeparationOptions) -> "Evaluation":
        return cls(options, args.data, args.dataset, args.groups, args.systems, args.bss, args.limit, args.jobs,
                   args.json, args.per_clip)

    def _fail(self, message: str) -> int:
        print(f"stream-dc evaluate: error: {message}", file=self.err)
        return 1

    def run(self) -> int:
        from tqdm import tqdm

        from ..bundle import BundleError
        from ..inference import DeviceError

        systems = [s for s in self.systems_text.split(",") if s]
        unknown = [s for s in systems if s not in SYSTEMS]
        if unknown:
            return self._fail(f"unknown systems {', '.join(unknown)} (choose from {', '.join(SYSTEMS)})")
        systems = [s for s in systems if s != "mixture"]
        try:
            if self.json_path:  # checked before the evaluation, not after it
                _check_writable(Path(self.json_path))
            refs = list_tracks(self.data, self.dataset)
            if self.groups:
                refs = select(refs, split_names(self.groups, refs))
            if self.limit:
                refs = refs[:self.limit]
        except (DatasetError, ValueError) as error:
            return self._fail(str(error))
        jobs = self.jobs or os.cpu_count() or 1
        separation = self.options if self.options.threads or jobs == 1 else self.options.changed(threads=1)
        worker = {"systems": systems, "separation": separation, "bss": self.bss,
                  "window_hops": self.options.window_hops}
        started = time.perf_counter()
        progress = {"desc": "evaluating", "unit": "clip", "file": self.err, "disable": not self.err.isatty()}
        try:
            if jobs > 1:
                with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(worker,)) as pool:
                    clips = list(tqdm(pool.map(evaluate_clip, refs), total=len(refs), **progress))
            else:
                _init_worker(worker)
                clips = [evaluate_clip(r) for r in tqdm(refs, **progress)]
        except (BundleError, DeviceError, DatasetError, RuntimeError, ValueError) as error:
            return self._fail(str(error))
        self._print(clips, systems, time.perf_counter() - started)
        return 0

    def _print(self, clips: list[dict], systems: list[str], seconds: float) -> None:
        summary = aggregate(clips)
        total = sum(c["seconds"] for c in clips)
        if self.per_clip:
            for clip in clips:
                print(clip_line(clip, systems), file=self.out)
        options = self.options
        description = f"stream-dc {options.mode}" + (f" ({options.preset.name})" if options.mode == "stream" else "")
        print(f"{len(clips)} clips, {total / 60:.1f} min ({self.dataset}{': ' + self.groups if self.groups else ''}); "
              f"BSS Eval {self.bss}; {description}; {seconds:.0f} s", file=self.out)
        print(format_table(summary, systems + ["mixture"]), file=self.out)
        if self.json_path:
            offline = options.mode == "offline"
            report = {"dataset": self.dataset, "data": str(self.data), "groups": self.groups, "mode": options.mode,
                      "latency": None if offline else options.preset.name, "bss": self.bss,
                      "reconstruction": options.reconstruction,
                      "wiener": options.wiener and offline and options.reconstruction == "projection",
                      "channel_masks": options.channel_masks and offline,
                      "synthesis_window_ms": options.synthesis_window_ms if offline else STREAM_WINDOW_HOPS * HOP_MS,
                      "model": str(options.model or "default"), "clips": clips, "summary": summary,
                      "minutes": total / 60}
            with replaced_on_success(self.json_path) as temporary:
                temporary.write_text(json.dumps(report, indent=1))


def clip_line(clip: dict, systems: list[str]) -> str:
    """One clip's scores: NSDR of the voice per system when BSS Eval ran, else uSDR of both stems."""
    if "sdr" in clip["scores"]["mixture"]:
        label, cells = "NSDR voice", "  ".join(
            f"{s}: {clip['scores'][s]['sdr'][0] - clip['scores']['mixture']['sdr'][0]:6.2f}" for s in systems)
    else:
        label, cells = "uSDR voice/accompaniment", "  ".join(
            f"{s}: {clip['scores'][s]['usdr'][0]:6.2f} {clip['scores'][s]['usdr'][1]:6.2f}" for s in systems)
    return f"{clip['name']:<24} {label}  {cells}"


def _check_writable(path: Path) -> None:
    """Refuse (ValueError) a report path whose folder is missing or that names a folder."""
    if path.is_dir():
        raise ValueError(f"--json {path}: is a folder; give a file name")
    if not path.parent.is_dir():
        raise ValueError(f"--json {path}: the folder {path.parent} does not exist")
    inside(path.parent, path)
