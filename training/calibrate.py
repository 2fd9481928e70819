"""Voice-labelling thresholds of a trained network, measured on its own training mixtures.

The runtime clusters a mixture's embeddings into two groups and calls a cluster voice by its score, the cosine to
the voice reference minus the cosine to the accompaniment reference (``stream_dc.cluster.voice_clusters``). How
high a voice cluster scores depends on the network, so the thresholds are measured here, the way the runtime will
meet them: for every mixture, k-means on the embeddings of its active bins (as ``Separator``), then

- mixtures with a voice: the score of the cluster holding most of the true voice bins, and of the other one;
- the same accompaniments alone: the score of the more voice-like cluster.

``weak_voice`` is the threshold on the more voice-like cluster: the one that best separates the two kinds
(balanced accuracy), lowered where needed so that the voice is still found in ``VOICE_FOUND`` of the mixtures
with a voice. The two kinds overlap (a lead guitar can look as voice-like as a mixed-down singer), and a vocal
remover that leaves the singer in is worse than one that thins an instrumental, so finding the voice comes first.
``clear_voice``, above which any cluster is voice, is the 99th percentile of the accompaniment clusters' scores in
mixtures with a voice (at least ``weak_voice``).

Training calibrates at its end. ``python -m training.calibrate BUNDLE @RECIPE`` does it again for an existing bundle,
with the network it stores and the recipe's training clips, as training would (the same reference mixtures for the
same ``--seed``), and writes the reference centroids and thresholds into the bundle: for a network trained on other
copies of the clips than the ones it will be measured on (lossy ones, say), or to repeat the calibration.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from stream_dc.cluster import evenly_spread, kmeans, voice_scores
from stream_dc.features import LogMel

from .data import Chunks, MixFeatures, make_chunks, mix_features
from .embedders import Embed, torch_window_embedder
from .mixing import draw_remixes, render
from .recipe import VALIDATION_STREAM, mixing_config

FIT_POINTS = 40_000  # as the runtime's offline separator
CALIBRATION_MIXTURES = 200  # of each kind, evenly spread over what the caller gives
VOICE_FOUND = 0.95  # share of the mixtures with a voice whose voice cluster must pass the weak threshold


def cluster_scores(embed: Embed, mix: MixFeatures, log_mel: LogMel, references: tuple[np.ndarray, np.ndarray],
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """Voice scores of the two k-means clusters of one mixture ``(2,)`` and each cluster's share of the true voice
    bins ``(2,)``; None when the mixture has too few active bins."""
    active = mix.weight > 0
    if active.sum() < 64:
        return None
    embeddings = embed(log_mel.normalise(mix.log_mel))
    points, voice = embeddings[active], mix.voice[active]
    rng = np.random.default_rng(seed)
    fit = points if len(points) <= FIT_POINTS else points[rng.choice(len(points), FIT_POINTS, replace=False)]
    centroids = kmeans(fit, 2, seed=seed)
    labels = np.argmin(((points[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    voice_share = np.array([voice[labels == k].sum() for k in range(2)], np.float64) / max(voice.sum(), 1)
    return voice_scores(centroids, *references), voice_share


def best_threshold(positives: np.ndarray, negatives: np.ndarray) -> float:
    """The threshold ``t`` (scores above it are positive) with the best balanced accuracy. Cuts lie halfway
    between neighbouring observed scores; of the best ones, the one nearest the middle of their range is taken."""
    candidates = np.unique(np.concatenate([positives, negatives]))
    cuts = np.concatenate([[candidates[0] - 1e-3], (candidates[:-1] + candidates[1:]) / 2, [candidates[-1] + 1e-3]])
    accuracy = np.array([(np.mean(positives > t) + np.mean(negatives <= t)) / 2 for t in cuts])
    best = cuts[accuracy >= accuracy.max() - 1e-12]
    middle = (best[0] + best[-1]) / 2
    return float(best[np.argmin(np.abs(best - middle))])


def calibrate(model, voiced: list[MixFeatures], accompaniment_only: list[MixFeatures], log_mel: LogMel,
              references: tuple[np.ndarray, np.ndarray], window: int, device) -> dict:
    """``{"voice_thresholds": [clear, weak], "statistics": {...}}`` from mixtures with and without a voice."""
    embed = torch_window_embedder(model, window, log_mel, device)
    voiced = evenly_spread(voiced, CALIBRATION_MIXTURES)
    accompaniment_only = evenly_spread(accompaniment_only, CALIBRATION_MIXTURES)
    voice_best, accompaniment_scores = [], []
    for mix in voiced:
        result = cluster_scores(embed, mix, log_mel, references)
        if result is None or mix.voice[mix.weight > 0].mean() < 0.05:  # too little voice to form a cluster
            continue
        scores, share = result
        voice_cluster = int(np.argmax(share))
        voice_best.append(scores[voice_cluster])
        accompaniment_scores.append(scores[1 - voice_cluster])
    alone_best = [result[0].max() for result in (cluster_scores(embed, mix, log_mel, references)
                                                  for mix in accompaniment_only) if result is not None]
    if not voice_best or not alone_best:
        raise ValueError("calibrating the voice labels needs mixtures with a voice and accompaniments alone")
    voice_best, alone_best = np.array(voice_best), np.array(alone_best)
    weak = min(best_threshold(voice_best, alone_best), float(np.quantile(voice_best, 1 - VOICE_FOUND)) - 1e-6)
    clear = max(weak, float(np.quantile(accompaniment_scores, 0.99)))
    statistics = {
        "voiced_mixtures": len(voice_best), "accompaniment_alone": len(alone_best),
        "voice_cluster_score_percentiles_5_50_95": np.percentile(voice_best, [5, 50, 95]).round(4).tolist(),
        "accompaniment_cluster_score_percentiles_50_99":
            np.percentile(accompaniment_scores, [50, 99]).round(4).tolist(),
        "alone_best_score_percentiles_50_95": np.percentile(alone_best, [50, 95]).round(4).tolist(),
        "voice_found": float(np.mean(voice_best > weak)), "alone_untouched": float(np.mean(alone_best <= weak)),
    }
    return {"voice_thresholds": [clear, weak], "statistics": statistics}


# -- the reference centroids and the labels of a trained network ------------------------------------------------
@torch.no_grad()
def reference_centroids(model, chunks: Chunks, batch: int, device) -> tuple[np.ndarray, np.ndarray]:
    """Mean embedding of the active voice bins and of the active accompaniment bins, ``(dim,)`` each."""
    model.eval()
    sums = None
    counts = torch.zeros(2, dtype=torch.float64)
    for start in range(0, len(chunks), batch):
        part = slice(start, start + batch)
        features, voice, weight = (torch.from_numpy(array[part]).to(device)
                                   for array in (chunks.features, chunks.voice, chunks.weight))
        embeddings = model(features).double()
        active = weight > 0
        voice_bins, accompaniment_bins = embeddings[active & voice], embeddings[active & ~voice]
        batch_sums = torch.stack([voice_bins.sum(0), accompaniment_bins.sum(0)]).cpu()
        sums = batch_sums if sums is None else sums + batch_sums
        counts += torch.tensor([len(voice_bins), len(accompaniment_bins)], dtype=torch.float64)
    means = (sums / counts.clamp_min(1.0)[:, None]).float().numpy()
    return means[0], means[1]


def reference_mixes(stems: list, originals: dict, raw: LogMel, args) -> tuple[list, list]:
    """Mixtures that define the reference centroids and calibrate the voice labels: up to ``--reference-clips``
    originals, evenly spread, and as many remixes drawn as in training (when the epochs have remixes); and the
    accompaniments of all of them alone. Returns ``(mixtures, accompaniments alone)``."""
    keys = sorted(originals)
    spread = evenly_spread(keys, args.reference_clips)
    mixes = [originals[k] for k in spread]
    alone = [mix_features(np.zeros_like(stems[k].accompaniment), stems[k].accompaniment, raw) for k in spread]
    if args.remixes > 0:
        config = mixing_config(args)
        specs = draw_remixes(stems, len(mixes), config, np.random.default_rng([args.seed, VALIDATION_STREAM + 1]))
        for spec in specs:
            voice, accompaniment = render(spec, stems, config)
            mixes.append(mix_features(voice, accompaniment, raw))
            alone.append(mix_features(np.zeros_like(accompaniment), accompaniment, raw))
    return mixes, alone


def voice_labels(model, stems: list, originals: dict, raw: LogMel, log_mel: LogMel, args, device) -> tuple[dict, dict]:
    """The reference centroids of ``model`` on the mixtures of ``reference_mixes`` (``{"voice", "accompaniment"}``,
    lists of ``dim`` floats, and ``"chunks"``, how many 500-frame chunks gave them) and the voice labels calibrated
    on the same mixtures (``training.calibrate.calibrate``)."""
    mixes, alone = reference_mixes(stems, originals, raw, args)
    reference_set = make_chunks(mixes, args.chunk_long, log_mel)
    voice, accompaniment = reference_centroids(model, reference_set, max(1, args.batch_frames // args.chunk_long),
                                               device)
    references = {"voice": voice.tolist(), "accompaniment": accompaniment.tolist(), "chunks": len(reference_set)}
    return references, calibrate(model, mixes, alone, log_mel, (voice, accompaniment), args.chunk_long, device)


def main(argv: list[str] | None = None) -> int:
    from stream_dc.apps.helptext import DefaultsFormatter
    from stream_dc.apps.report import Reporter
    from stream_dc.apps.signals import exit_status, handle_stop_signals
    from stream_dc.bundle import BundleError, load_bundle, write_config
    from stream_dc.evaluation.datasets import DatasetError

    from .bundle_weights import model_from_bundle
    from .data import compute_mixes, load_all
    from .recipe import add_arguments, find_clips

    parser = argparse.ArgumentParser(
        formatter_class=DefaultsFormatter, prog="python -m training.calibrate", fromfile_prefix_chars="@",
                                     description="Measure a bundle's reference centroids and voice-label thresholds "
                                                 "on a recipe's training clips and write them into the bundle.")
    parser.add_argument("bundle", help="model bundle folder")
    add_arguments(parser)  # a training recipe reads as is; its data, mixing options and seed count here
    args = parser.parse_args(argv)
    handle_stop_signals()
    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)
    try:
        bundle = load_bundle(args.bundle)
        config = bundle.config
        training_refs, _ = find_clips(args)
        stems = load_all(training_refs, args.workers)
        voiced = [i for i, clip in enumerate(stems) if clip.has_voice]
        if not voiced:
            raise DatasetError("no training clip has a voice")
        raw = LogMel(config.features)
        log_mel = LogMel(config.features, config.feature_mean, config.feature_std)
        originals = dict(zip(voiced, compute_mixes(stems, voiced, raw, args.workers)))
        model = model_from_bundle(bundle).eval()
        references, labelling = voice_labels(model, stems, originals, raw, log_mel, args, torch.device("cpu"))
    except (DatasetError, BundleError, ValueError) as error:
        return Reporter("training.calibrate").error(str(error))
    except KeyboardInterrupt as interrupt:  # nothing written yet: the bundle is as it was
        Reporter("training.calibrate").error("interrupted; the bundle is unchanged")
        return exit_status(interrupt)
    config.voice_centroid = np.asarray(references["voice"], np.float32)
    config.accompaniment_centroid = np.asarray(references["accompaniment"], np.float32)
    config.voice_thresholds = tuple(float(v) for v in labelling["voice_thresholds"])
    config.provenance["labelling"] = {**labelling["statistics"], "recalibrated_with": "python -m training.calibrate",
                                      "reference_chunks": references["chunks"]}
    write_config(bundle.directory, config)
    log(f"voice labels written to {bundle.directory}: thresholds {list(config.voice_thresholds)}, "
        f"{labelling['statistics']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
