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

from .datasets import DATASETS, DatasetError, Track, list_tracks, select, split_names
from .features import (
    ANALYSIS_RATE,
    FeatureConfig,
    LogMel,
    ideal_binary_mask,
    mono_downmix,
    stft,
)
from .files import replaced_on_success
from .masks import MelMaskTrack
from .resample import resample
from .stft import (
    HOP_MS,
    OFFLINE_WINDOW_HOPS,
    STREAM_WINDOW_HOPS,
    FrameAnalyzer,
    OverlapAdd,
    StftGeometry,
)
from .synthesis import ProjectionSynthesis

SYSTEMS = ("stream-dc", "ibm-mel", "ibm-stft", "repet", "mixture")
DEFAULT_SYSTEMS = ("stream-dc", "ibm-mel", "mixture")
SOURCES = ("voice", "accompaniment")
METRICS = ("sdr", "sir", "sar")


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder")
    parser.add_argument("--dataset", choices=DATASETS, default="mir1k")
    parser.add_argument("--groups", help="comma-separated singers (mir1k), artists (musdb) or tracks to evaluate "
                        "(default: all)")
    parser.add_argument("--systems", default=",".join(DEFAULT_SYSTEMS),
                        help=f"comma-separated systems from {', '.join(SYSTEMS)} (mixture is always scored)")
    parser.add_argument("--mode", choices=("offline", "stream"), default="offline", help="how stream-dc runs")
    parser.add_argument("--latency", default="balanced", help="streaming preset for --mode stream")
    parser.add_argument("--reconstruction", choices=("projection", "inverse-mel"), default="projection")
    parser.add_argument("--bss", choices=("v3", "v4", "none"), default="v3",
                        help="v3: mir_eval over whole clips; v4: museval framewise medians; none: uSDR only")

    parser.add_argument("--limit", type=int, default=0, help="evaluate only the first N clips (0: all)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (0: one per core)")
    parser.add_argument("--json", metavar="PATH", help="write per-clip and aggregate scores as JSON")
    parser.add_argument("--per-clip", action="store_true", help="print every clip's scores")


# -- oracle masks and baselines -------------------------------------------------------------------------------
def mel_ibm(track: Track, features: FeatureConfig) -> np.ndarray:
    """Oracle voice mask ``(frames, n_mels)`` on the 16 kHz mel power spectrogram of the track's stems."""
    def analysis(x):
        return stft(resample(mono_downmix(x), track.sample_rate, ANALYSIS_RATE))

    return ideal_binary_mask(analysis(track.voice), analysis(track.accompaniment), LogMel(features)).astype(np.float32)


def synthesise(mixture: np.ndarray, sample_rate: int, mel_masks: np.ndarray, features: FeatureConfig,
               window_hops: int = OFFLINE_WINDOW_HOPS):
    """Mel masks applied to the mixture with stream-dc's (offline) projection synthesis -> ``(voice,
    accompaniment)``."""
    synthesis = ProjectionSynthesis(features, sample_rate, mixture.shape[1], window_hops=window_hops)
    track = MelMaskTrack.from_array(mel_masks)
    synthesis.push(mixture)
    first = synthesis.synthesise(track)
    synthesis.finish(len(mixture))
    rest = synthesis.synthesise(track)
    return np.concatenate([first[0], rest[0]]), np.concatenate([first[1], rest[1]])


def whole_stft(audio: np.ndarray, sample_rate: int,
               window_hops: int = OFFLINE_WINDOW_HOPS) -> tuple[StftGeometry, np.ndarray]:
    """STFT of a whole ``(samples, channels)`` signal at its own rate, framed as offline synthesis frames it
    (unless ``window_hops`` says otherwise): ``(frames, bins, channels)``."""
    geometry = StftGeometry.for_rate(sample_rate, window_hops)
    analyzer = FrameAnalyzer(geometry, audio.shape[1], geometry.first_frame)
    spectra = np.concatenate([analyzer.process(audio)[1], analyzer.flush(geometry.frames_covering(len(audio)))[1]])
    return geometry, spectra


def masked_stems(spectra: np.ndarray, voice_mask: np.ndarray, geometry: StftGeometry, length: int):
    """Voice and accompaniment from ``spectra`` and a voice mask of the same shape (or ``(frames, bins, 1)``)."""
    stems = []
    for mask in (voice_mask, 1.0 - voice_mask):
        stems.append(OverlapAdd(geometry, spectra.shape[2]).add(spectra * mask)[:length])
    return stems[0], stems[1]


def stft_ibm(track: Track, window_hops: int = OFFLINE_WINDOW_HOPS):
    """Oracle binary mask on the STFT at the track's rate (per channel; by default the offline synthesis STFT) ->
    ``(voice, accompaniment)``."""
    geometry, voice = whole_stft(track.voice, track.sample_rate, window_hops)
    _, accompaniment = whole_stft(track.accompaniment, track.sample_rate, window_hops)
    mask = (np.abs(voice) > np.abs(accompaniment)).astype(np.float32)
    return masked_stems(voice + accompaniment, mask, geometry, len(track.voice))


def repet_sim(mixture: np.ndarray, sample_rate: int):
    """REPET-SIM: the repeating background by nearest-neighbour median filtering of the magnitude spectrogram
    (librosa's ``decompose.nn_filter``), soft masks on each channel -> ``(voice, accompaniment)``."""
    try:
        import librosa
    except ImportError:
        raise RuntimeError("the repet baseline needs librosa: pip install 'stream-dc[eval]'") from None
    geometry, spectra = whole_stft(mixture, sample_rate)
    magnitude = np.abs(spectra).mean(axis=2)  # (frames, bins), averaged over channels
    # neighbours are at least 2 s apart (less on clips too short for that)
    width = max(1, min(int(round(2 * sample_rate / geometry.hop)), (len(magnitude) - 1) // 2 - 1))
    background = librosa.decompose.nn_filter(magnitude.T, aggregate=np.median, metric="cosine", width=width).T
    background = np.minimum(magnitude, background)
    voice_mask = librosa.util.softmask(magnitude - background, 2 * background, power=2).astype(np.float32)
    return masked_stems(spectra, voice_mask[:, :, None], geometry, len(mixture))


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
        from .separator import Separator

        threads = options.get("threads")
        if threads:
            os.environ["STREAM_DC_THREADS"] = str(threads)
        _WORKER["separator"] = Separator(options["model"], device=options["device"], mode=options["mode"],
                                         mask_softness=options["mask_softness"], voice_gate=options["voice_gate"],
                                         refine=options["refine"], wiener=options["wiener"],
                                         channel_masks=options["channel_masks"], window_hops=options["window_hops"],
                                         latency=options["latency"], reconstruction=options["reconstruction"])


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


def run_evaluate(args) -> int:
    from tqdm import tqdm

    from .bundle import BundleError
    from .inference import DeviceError

    systems = [s for s in args.systems.split(",") if s]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        print(f"stream-dc evaluate: error: unknown systems {', '.join(unknown)} (choose from {', '.join(SYSTEMS)})",
              file=sys.stderr)
        return 1
    systems = [s for s in systems if s != "mixture"]
    try:
        refs = list_tracks(args.data, args.dataset)
        if args.groups:
            refs = select(refs, split_names(args.groups, refs))
        if args.limit:
            refs = refs[:args.limit]
    except DatasetError as error:
        print(f"stream-dc evaluate: error: {error}", file=sys.stderr)
        return 1
    jobs = args.jobs or os.cpu_count() or 1
    options = {"systems": systems, "model": args.model, "device": args.device, "mode": args.mode,
               "mask_softness": args.mask_softness, "voice_gate": args.voice_gate, "refine": args.refine,
               "wiener": args.wiener, "channel_masks": args.channel_masks,
               "window_hops": args.synthesis_window // HOP_MS,
               "latency": args.latency, "reconstruction": args.reconstruction, "bss": args.bss,
               "threads": args.threads or (1 if jobs > 1 else None)}
    started = time.perf_counter()
    try:
        if jobs > 1:
            with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(options,)) as pool:
                clips = list(tqdm(pool.map(evaluate_clip, refs), total=len(refs), desc="evaluating", unit="clip",
                                  file=sys.stderr, disable=not sys.stderr.isatty()))
        else:
            _init_worker(options)
            clips = [evaluate_clip(r) for r in tqdm(refs, desc="evaluating", unit="clip", file=sys.stderr,
                                                    disable=not sys.stderr.isatty())]
    except (BundleError, DeviceError, DatasetError, RuntimeError, ValueError) as error:
        print(f"stream-dc evaluate: error: {error}", file=sys.stderr)
        return 1
    summary = aggregate(clips)
    total = sum(c["seconds"] for c in clips)
    if args.per_clip:
        for clip in clips:
            if "sdr" in clip["scores"]["mixture"]:
                label, cells = "NSDR voice", "  ".join(
                    f"{s}: {clip['scores'][s]['sdr'][0] - clip['scores']['mixture']['sdr'][0]:6.2f}" for s in systems)
            else:
                label, cells = "uSDR voice/accompaniment", "  ".join(
                    f"{s}: {clip['scores'][s]['usdr'][0]:6.2f} {clip['scores'][s]['usdr'][1]:6.2f}" for s in systems)
            print(f"{clip['name']:<24} {label}  {cells}")
    description = f"stream-dc {args.mode}" + (f" ({args.latency})" if args.mode == "stream" else "")
    print(f"{len(clips)} clips, {total / 60:.1f} min ({args.dataset}{': ' + args.groups if args.groups else ''}); "
          f"BSS Eval {args.bss}; {description}; {time.perf_counter() - started:.0f} s")
    print(format_table(summary, systems + ["mixture"]))
    if args.json:
        report = {"dataset": args.dataset, "data": str(args.data), "groups": args.groups, "mode": args.mode,
                  "latency": args.latency if args.mode == "stream" else None, "bss": args.bss,
                  "reconstruction": args.reconstruction,
                  "wiener": args.wiener and args.mode == "offline" and args.reconstruction == "projection",
                  "channel_masks": args.channel_masks and args.mode == "offline",
                  "synthesis_window_ms": (args.synthesis_window if args.mode == "offline"
                                          else STREAM_WINDOW_HOPS * HOP_MS),
                  "model": args.model or "default", "clips": clips,
                  "summary": summary, "minutes": total / 60}
        with replaced_on_success(args.json) as temporary:
            temporary.write_text(json.dumps(report, indent=1))
    return 0
