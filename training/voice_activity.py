"""Fitting a network's frame voice-activity gate (``stream_dc.activity``) on its own training clips.

Examples come from the mixtures the runtime will meet: every voiced clip's original pairing, one remix per voiced
clip drawn by the recipe's mixing engine (effects included), and the accompaniment alone of every clip from a
source of produced music (``instrumental``, ``musdb``). A share of each mixture's frames that hold at least a few
active bins is kept; a frame is voiced when its voice energy is within ``VOICED_WITHIN_DB`` of the mixture's
(16 kHz STFT, the analysis grid). A logistic regression with balanced class weights and a small L2 penalty is fitted
on ``frame_features`` by L-BFGS. Each example frame is embedded by every given embedder (one gate serves them all).

Training fits the gate on the network's 500-frame windows at its end. ``python -m training.voice_activity BUNDLE
@RECIPE`` fits it for an existing bundle on a recipe's training clips (``--validation`` and ``--holdout`` clips
left out) with the bundle's own graphs, the int8 windows and, when the bundle has one, the chunked graph run as the
``live`` preset runs it (its embeddings differ: the backward LSTMs see only the preset's look-ahead), and writes it
into the bundle.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import numpy as np
import torch

from stream_dc.activity import DEFAULT_OFFSET, VOICED_WITHIN_DB, VoiceActivity, frame_features
from stream_dc.features import LogMel, stft

from .data import Stems
from .embedders import Embed, chunk_embedder, window_embedder
from .mixing import MixingConfig, draw_remixes, render

FRAME_SHARE = 0.12  # of each mixture's frames with active bins, taken as examples
MIN_ACTIVE_BINS = 3
ALONE_SOURCES = ("instrumental", "musdb")
L2 = 1e-4

def mixture_frames(voice: np.ndarray, accompaniment: np.ndarray, log_mel: LogMel, embedders: list[Embed],
                   take: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Frame features ``(m * len(embedders), n_mels * (dim + 1))`` and voiced labels of a share of one mixture's
    frames, each frame once per embedder; ``voice`` may be empty (accompaniment alone)."""
    accompaniment_spectrum = stft(accompaniment)
    voice_spectrum = stft(voice) if len(voice) else np.zeros_like(accompaniment_spectrum)
    mixture = voice_spectrum + accompaniment_spectrum
    raw = log_mel.log_mel(mixture)
    frames = len(raw)
    active = log_mel.active_bins(raw).sum(axis=1) >= MIN_ACTIVE_BINS
    chosen = np.flatnonzero(active & (take.random(frames) < FRAME_SHARE))
    if len(chosen) == 0:
        return np.zeros((0, 0), np.float32), np.zeros(0, bool)
    normalised = log_mel.normalise(raw)
    voice_energy = np.sum(np.abs(voice_spectrum) ** 2, axis=1)
    mixture_energy = np.sum(np.abs(mixture) ** 2, axis=1)
    voiced = voice_energy > mixture_energy * 10 ** (-VOICED_WITHIN_DB / 10)
    features = [frame_features(embed(normalised)[chosen], normalised[chosen]) for embed in embedders]
    return np.concatenate(features), np.tile(voiced[chosen], len(embedders))


def examples(stems: list[Stems], config: MixingConfig, log_mel: LogMel, embedders: list[Embed],
             seed: int = 0, progress: Callable[[str], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stacked examples ``(n, features)`` float32 and labels ``(n,)`` bool from the clips; see the module docstring."""
    rng = np.random.default_rng([seed, 7])
    voiced = [i for i, s in enumerate(stems) if s.has_voice]
    jobs: list = [(stems[i].voice, stems[i].accompaniment) for i in voiced]
    jobs += [(np.zeros(0, np.float32), s.accompaniment) for s in stems if s.source in ALONE_SOURCES]
    jobs += draw_remixes(stems, len(voiced), config, rng)
    features, labels = [], []
    for n, job in enumerate(jobs):
        voice, accompaniment = job if isinstance(job, tuple) else render(job, stems, config)
        if len(voice):
            length = min(len(voice), len(accompaniment))
            voice, accompaniment = voice[:length], accompaniment[:length]
        x, y = mixture_frames(voice, accompaniment, log_mel, embedders, rng)
        if len(y):
            features.append(x)
            labels.append(y)
        if progress is not None and (n + 1) % 200 == 0:
            progress(f"voice activity: {n + 1} of {len(jobs)} mixtures")
    if not labels or not np.concatenate(labels).any() or np.concatenate(labels).all():
        raise ValueError("fitting the voice activity needs frames with and without a voice")
    return np.concatenate(features), np.concatenate(labels)


def fit_logistic(features: np.ndarray, labels: np.ndarray, l2: float = L2,
                 iterations: int = 300) -> tuple[np.ndarray, float]:
    """Class-balanced logistic regression ``(n, d)``, ``(n,)`` bool -> weights ``(d,)`` float32 and bias."""
    x = torch.from_numpy(np.ascontiguousarray(features, np.float32))
    y = torch.from_numpy(labels.astype(np.float32))
    positive = float(y.mean())
    sample_weight = torch.where(y > 0, 0.5 / positive, 0.5 / (1.0 - positive))
    weights = torch.zeros(x.shape[1], requires_grad=True)
    bias = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([weights, bias], max_iter=iterations, history_size=20,
                                  line_search_fn="strong_wolfe", tolerance_grad=1e-7, tolerance_change=1e-10)

    def closure():
        optimiser.zero_grad()
        logits = x @ weights + bias
        loss = torch.mean(sample_weight * torch.nn.functional.binary_cross_entropy_with_logits(
            logits, y, reduction="none")) + l2 * torch.sum(weights ** 2)
        loss.backward()
        return loss

    optimiser.step(closure)
    return weights.detach().numpy().astype(np.float32), float(bias.detach())


def fit_voice_activity(stems: list[Stems], config: MixingConfig, log_mel: LogMel, embedders: list[Embed],
                       seed: int = 0, progress: Callable[[str], None] | None = None) -> tuple[VoiceActivity, dict]:
    """The gate and its statistics on the examples it was fitted on (``log_mel`` normalises like the network)."""
    features, labels = examples(stems, config, log_mel, embedders, seed, progress)
    weights, bias = fit_logistic(features, labels)
    activity = VoiceActivity(weights, bias)
    logits = features @ weights + np.float32(bias)
    statistics = {"frames": len(labels) // len(embedders), "embedders": len(embedders),
                  "voiced_share": round(float(labels.mean()), 4),
                  "voiced_frames_found": round(float(np.mean(logits[labels] > 0)), 4),
                  "unvoiced_frames_found": round(float(np.mean(logits[~labels] <= 0)), 4)}
    return activity, statistics


def main(argv: list[str] | None = None) -> int:
    from stream_dc.apps.helptext import DefaultsFormatter
    from stream_dc.apps.report import Reporter
    from stream_dc.apps.signals import exit_status, handle_stop_signals
    from stream_dc.bundle import BundleError, load_bundle, write_config
    from stream_dc.evaluation.datasets import DatasetError
    from stream_dc.inference import ChunkedEmbeddingModel, EmbeddingModel
    from stream_dc.presets import PRESETS

    from .data import load_all
    from .recipe import add_arguments, find_clips, mixing_config

    parser = argparse.ArgumentParser(
        formatter_class=DefaultsFormatter, prog="python -m training.voice_activity", fromfile_prefix_chars="@",
                                     description="Fit a bundle's frame voice-activity gate on a recipe's training "
                                                 "clips and write it into the bundle.")
    parser.add_argument("bundle", help="model bundle folder")
    parser.add_argument("--offset", type=float, default=DEFAULT_OFFSET,
                        help="logit offset stored with the gate (larger: more of the voice stays in the vocals)")
    parser.add_argument("--offset-only", action="store_true",
                        help="keep the bundle's fitted gate and store only the new --offset (no data is read)")
    # a training recipe reads as is; only its data and mixing options count here, and none with --offset-only
    add_arguments(parser, data_required=False)
    args = parser.parse_args(argv)
    if not args.offset_only and (not args.data or args.validation is None):
        parser.error("the following arguments are required to fit the gate: --data, --validation")
    handle_stop_signals()
    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)
    try:
        bundle = load_bundle(args.bundle)
        config = bundle.config
        if args.offset_only:  # the fitted gate and its statistics stay
            if config.voice_activity is None:
                raise ValueError(f"{bundle.directory}: the bundle has no voice-activity gate to set the offset of")
            activity, statistics = config.voice_activity, config.provenance.get("voice_activity")
        else:
            training_refs, _ = find_clips(args)
            stems = load_all(training_refs, args.workers)
            log_mel = LogMel(config.features, config.feature_mean, config.feature_std)
            embedders = [window_embedder(EmbeddingModel(bundle, "cpu").embed, config.window_frames, log_mel)]
            if bundle.chunked_model_bytes is not None:
                live = PRESETS["live"]
                embedders.append(chunk_embedder(ChunkedEmbeddingModel(bundle, "cpu"), live.hop, live.lookahead,
                                                log_mel))
            activity, statistics = fit_voice_activity(stems, mixing_config(args), log_mel, embedders,
                                                      args.seed, log)
            config.provenance["voice_activity"] = statistics
    except (DatasetError, BundleError, ValueError) as error:
        return Reporter("training.voice_activity").error(str(error))
    except KeyboardInterrupt as interrupt:  # nothing written yet: the bundle is as it was
        Reporter("training.voice_activity").error("interrupted; the bundle is unchanged")
        return exit_status(interrupt)
    activity.offset = args.offset
    config.voice_activity = activity
    write_config(bundle.directory, config)
    log(f"voice activity (offset {args.offset:g}) written to {bundle.directory}: {statistics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
