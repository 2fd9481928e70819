"""Training loop: RMSprop, 100-frame then 500-frame chunks (curriculum), best epoch on validation, resumable.

Run as ``stream-dc train ...`` or ``python -m training.train ...``; under ``torchrun`` every process trains on its
share of the mixtures with DistributedDataParallel (NCCL on GPUs, gloo on CPUs). The run folder holds
``last.pt`` (resume point), ``best.pt`` (best validation loss, with the reference centroids added at the end),
``log.jsonl`` (one line per epoch) and ``run.json`` (the arguments).

Every epoch's remixes and chunking depend only on ``--seed`` and the epoch number, so a resumed run sees the same
data as an uninterrupted one.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import distributed as dist

from stream_dc.bundle import BundleError, load_bundle
from stream_dc.cluster import evenly_spread
from stream_dc.evaluation.datasets import (
    DATASETS,
    DatasetError,
    list_tracks,
    split_groups,
    split_names,
)
from stream_dc.features import FeatureConfig, LogMel
from stream_dc.files import replaced_on_success
from stream_dc.apps.signals import exit_status, handle_stop_signals

from .calibrate import calibrate
from .data import (
    BIN_WEIGHTS,
    Chunks,
    _worker_remix_features,
    compute_mixes,
    load_all,
    make_chunks,
    mix_features,
    normalisation,
    remix_features,
    worker_pool,
)
from .embedders import torch_window_embedder
from .loss import clustered_mask_loss, deep_clustering_loss, mask_inference_loss
from .mixing import MixingConfig, draw_remixes, render
from .model import PRESETS, DeepClusteringNet, ModelConfig
from .voice_activity import fit_voice_activity

VALIDATION_STREAM = 1 << 30  # random stream of the validation remixes, apart from every epoch's


def add_arguments(parser: argparse.ArgumentParser, data_required: bool = True) -> None:
    """The training options; ``data_required=False`` leaves ``--data`` and ``--validation`` to the caller's
    checks (a command with a mode that reads no data)."""
    parser.add_argument("--data", required=data_required, action="append", metavar="[KIND:]PATH",
                        help=f"dataset folder, repeatable; KIND is one of {', '.join(DATASETS)} (default: --dataset)")
    parser.add_argument("--dataset", choices=DATASETS, default="mir1k", help="KIND of a --data without one")
    parser.add_argument("--validation", required=data_required,
                        help="comma-separated singers, artists, tracks or files held out for validation")
    parser.add_argument("--holdout", action="append", default=[],
                        help="comma-separated groups or tracks left out entirely (kept for reporting); repeatable, "
                             "each adds to the list")
    parser.add_argument("--out", help="run folder for checkpoints and logs (required)")
    parser.add_argument("--init", nargs="?", const="default", metavar="BUNDLE",
                        help="start from a model bundle's network and normalisation (default bundle without a value)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="compact", help="network size")
    parser.add_argument("--hidden", type=int, help="override the preset's BLSTM units")
    parser.add_argument("--layers", type=int, help="override the preset's BLSTM layers")
    parser.add_argument("--epochs-short", type=int, default=40, help="epochs on short chunks")
    parser.add_argument("--epochs-long", type=int, default=20, help="epochs on long chunks (curriculum)")
    parser.add_argument("--chunk-short", type=int, default=100, help="frames per chunk in the first stage")
    parser.add_argument("--chunk-long", type=int, default=500, help="frames per chunk in the second stage")
    parser.add_argument("--batch-frames", type=int, default=3200, help="frames per batch (chunks x chunk length)")
    parser.add_argument("--remixes", type=float, default=1.0,
                        help="remixes per epoch, as a multiple of the training clips that have a voice")
    parser.add_argument("--validation-remixes", type=float, default=0.0,
                        help="fixed remixes of the validation clips (a multiple of their count), scored as a set")
    parser.add_argument("--snr", type=_range, default=(0.0, 0.0), metavar="LO,HI",
                        help="voice-to-accompaniment ratio of remixes in dB, uniform (default 0,0)")
    parser.add_argument("--level", type=_range, metavar="LO,HI",
                        help="mixture RMS of remixes in dBFS, uniform (default: the voice's own level)")
    parser.add_argument("--augment", action="store_true", help="random effect chains on remixed voices and "
                        "accompaniments (reverb, compression, EQ, doubling, distortion, pitch and tempo)")
    parser.add_argument("--voice-pitch", type=float, default=0.0, metavar="SEMITONES",
                        help="with --augment, shift half the remixed voices' pitch by up to this much, formants kept")
    parser.add_argument("--no-voice", type=float, default=0.0, help="fraction of remixes with the voice silenced")
    parser.add_argument("--voice-mix", type=_shares, default={}, metavar="KIND=SHARE,...",
                        help="share of remix voices from each dataset (default: by clip count)")
    parser.add_argument("--accompaniment-mix", type=_shares, default={}, metavar="KIND=SHARE,...",
                        help="share of remix accompaniments from each dataset (default: by clip count)")
    parser.add_argument("--bin-weights", choices=BIN_WEIGHTS, default="active",
                        help="loss weight of each active bin: 1, or its mel magnitude (loud bins count more)")
    parser.add_argument("--mask-loss", type=float, default=0.0, metavar="WEIGHT",
                        help="add the error of the mask that clustering the embeddings makes (clustered_mask_loss), "
                             "with this weight, to the deep clustering loss, in training and validation "
                             "(0: the paper's loss alone)")
    parser.add_argument("--mask-head", type=float, default=0.0, metavar="WEIGHT",
                        help="train a second, mask-inference head on the same BLSTM (a Chimera network) with this "
                             "weight on its loss beside the deep clustering loss's 1 (0: no mask head)")
    parser.add_argument("--mask-softness", type=float, default=4.0,
                        help="the clustered-mask loss's soft assignment, as the exported bundle's mask softness")
    parser.add_argument("--lr", type=float, default=1e-3, help="RMSprop learning rate")
    parser.add_argument("--clip", type=float, default=5.0, help="gradient norm clip (0: off)")
    parser.add_argument("--patience", type=int, default=3, help="halve the learning rate after this many epochs "
                        "without improvement (0: never)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=max(1, min(8, (os.cpu_count() or 2) - 1)),
                        help="processes computing features")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    parser.add_argument("--short-minutes", type=float, default=0.0,
                        help="switch to long chunks after the epoch that passes this many minutes (0: by epochs only)")
    parser.add_argument("--max-minutes", type=float, default=0.0,
                        help="stop cleanly after the epoch that passes this budget (0: no budget); "
                             "best.pt stays exportable and --resume continues")
    parser.add_argument("--max-steps", type=int, default=0, help="steps per epoch at most (0: all; for smoke runs)")
    parser.add_argument("--reference-clips", type=int, default=300,
                        help="training clips (evenly spread) used to measure the reference centroids")


def _range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO,HI, got {text!r}") from None
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise argparse.ArgumentTypeError(f"expected finite LO <= HI, got {text!r}")
    return low, high


def _shares(text: str) -> dict:
    try:
        shares = {k.strip(): float(v) for k, v in (item.split("=") for item in text.split(",") if item)}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected KIND=SHARE,..., got {text!r}") from None
    if any(k not in DATASETS or not (v >= 0 and math.isfinite(v)) for k, v in shares.items()):
        raise argparse.ArgumentTypeError(f"expected KIND=SHARE with KIND in {', '.join(DATASETS)} and SHARE >= 0")
    return shares


def mixing_config(args) -> MixingConfig:
    return MixingConfig(snr_db=tuple(args.snr), level_dbfs=tuple(args.level) if args.level else None,
                        augment=args.augment, no_voice=args.no_voice, voice_weights=args.voice_mix,
                        accompaniment_weights=args.accompaniment_mix, voice_pitch=args.voice_pitch)


def parse_sources(data: list[str], default_kind: str) -> list[tuple[str, str]]:
    """``--data`` values -> ``(kind, path)``; ``KIND:PATH`` names its kind."""
    sources = []
    for value in data:
        kind, _, path = value.partition(":")
        sources.append((kind, path) if path and kind in DATASETS else (default_kind, value))
    return sources


def find_clips(args) -> tuple[list, list]:
    """Training and validation track references over every ``--data`` source (``--holdout`` removed)."""
    sources = [list_tracks(path, kind) for kind, path in parse_sources(args.data, args.dataset)]
    everything = [r for refs in sources for r in refs]
    validation = split_names(args.validation, everything)
    holdout = [n for text in args.holdout for n in split_names(text, everything)]
    train_refs, val_refs, found = [], [], set()
    for refs in sources:
        known = {r.group for r in refs} | {r.name for r in refs}
        found |= known
        held_out = {r.group for r in refs if r.name in holdout or r.group in holdout}
        refs = [r for r in refs if r.group not in held_out]
        training, held = split_groups(refs, [n for n in validation if n in known])
        train_refs += training
        val_refs += held
    missing = [n for n in validation + holdout if n not in found]
    if missing:
        raise DatasetError(f"not in any --data source: {', '.join(missing)}")
    return train_refs, val_refs


class Distributed:
    """Rank and world size under torchrun (one process otherwise)."""

    def __init__(self, device: torch.device):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, values: list[float]) -> list[float]:
        if self.world == 1:
            return values
        tensor = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def all_min(self, value: int) -> int:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.int64)
        dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return int(tensor.item())

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda but PyTorch sees no CUDA device")
    if choice in ("auto", "cuda") and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def model_config_from(args) -> ModelConfig:
    config = PRESETS[args.preset]
    overrides = {k: v for k, v in (("hidden", args.hidden), ("layers", args.layers)) if v}
    return ModelConfig(**{**config.to_dict(), **overrides, "mask_head": args.mask_head > 0})


def batches(chunks: Chunks, batch: int, rng: np.random.Generator, limit: int):
    order = rng.permutation(len(chunks))
    steps = len(order) // batch
    if limit:
        steps = min(steps, limit)
    for s in range(steps):
        yield chunks_slice(chunks, np.sort(order[s * batch:(s + 1) * batch]))


def chunks_slice(chunks: Chunks, index) -> tuple[np.ndarray, ...]:
    """``(features, voice, weight, voice_share, voice_psa)`` of the chunks at ``index`` (a slice or an index
    array)."""
    return (chunks.features[index], chunks.voice[index], chunks.weight[index], chunks.voice_share[index],
            chunks.voice_psa[index])


def to_tensors(*arrays, device):
    return tuple(torch.from_numpy(array).to(device, non_blocking=True) for array in arrays)


class Objective:
    """The training loss of a batch: the deep clustering loss, plus ``--mask-loss`` times the clustered-mask loss
    and ``--mask-head`` times the mask head's loss (both read the mixture's mel magnitude back from the normalised
    features). ``terms`` gives each part; calling the objective gives their weighted sum."""

    def __init__(self, log_mel: LogMel, args, device):
        self.mask_weight, self.softness = args.mask_loss, args.mask_softness
        self.head_weight = getattr(args, "mask_head", 0.0)
        self.mean = torch.from_numpy(log_mel.mean).to(device)
        self.std = torch.from_numpy(log_mel.std).to(device)
        self.floor = log_mel.config.log_floor

    def terms(self, outputs, features, voice, weight, voice_share, voice_psa) -> dict[str, torch.Tensor]:
        """``outputs``: the network's embeddings, or (embeddings, voice mask) from a Chimera network."""
        embeddings, mask = outputs if isinstance(outputs, tuple) else (outputs, None)
        terms = {"deep_clustering": deep_clustering_loss(embeddings, voice, weight)}
        if self.mask_weight or (self.head_weight and mask is not None):
            magnitude = (torch.exp(features * self.std + self.mean) - self.floor).clamp_min(0.0)
            if self.mask_weight:
                terms["clustered_mask"] = clustered_mask_loss(embeddings, magnitude, voice_share, weight,
                                                              self.softness)
            if self.head_weight and mask is not None:
                terms["mask_head"] = mask_inference_loss(mask, magnitude, voice_psa, weight)
        return terms

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        weights = {"deep_clustering": 1.0, "clustered_mask": self.mask_weight, "mask_head": self.head_weight}
        return sum(weights[name] * value for name, value in terms.items())

    def __call__(self, outputs, features, voice, weight, voice_share, voice_psa) -> torch.Tensor:
        return self.total(self.terms(outputs, features, voice, weight, voice_share, voice_psa))


@torch.no_grad()
def validation_loss(model, objective: Objective, chunks: Chunks, batch: int, device, distributed: Distributed
                    ) -> tuple[float, dict[str, float]]:
    """The objective's mean over ``chunks`` and the mean of each of its terms."""
    model.eval()
    sums: dict[str, float] = {}
    count = 0.0
    for start in range(distributed.rank * batch, len(chunks), batch * distributed.world):
        arrays = to_tensors(*chunks_slice(chunks, slice(start, start + batch)), device=device)
        terms = objective.terms(model(arrays[0], with_mask=True), *arrays)
        terms["total"] = objective.total(terms)
        for name, value in terms.items():
            sums[name] = sums.get(name, 0.0) + float(value) * len(arrays[0])
        count += len(arrays[0])
    names = sorted(sums)
    values = distributed.all_sum([sums[name] for name in names] + [count])
    model.train()
    means = {name: value / max(values[-1], 1.0) for name, value in zip(names, values)}
    return means.pop("total"), means


@torch.no_grad()
def reference_centroids(model, chunks: Chunks, batch: int, device) -> tuple[np.ndarray, np.ndarray]:
    """Mean embedding of the active voice bins and of the active accompaniment bins, ``(dim,)`` each."""
    model.eval()
    sums = None
    counts = torch.zeros(2, dtype=torch.float64)
    for start in range(0, len(chunks), batch):
        features, voice, weight, *_ = to_tensors(*chunks_slice(chunks, slice(start, start + batch)), device=device)
        embeddings = model(features).double()
        active = weight > 0
        voice_bins, accompaniment_bins = embeddings[active & voice], embeddings[active & ~voice]
        batch_sums = torch.stack([voice_bins.sum(0), accompaniment_bins.sum(0)]).cpu()
        sums = batch_sums if sums is None else sums + batch_sums
        counts += torch.tensor([len(voice_bins), len(accompaniment_bins)], dtype=torch.float64)
    means = (sums / counts.clamp_min(1.0)[:, None]).float().numpy()
    return means[0], means[1]


def validation_sets(stems: list, raw: LogMel, log_mel: LogMel, args) -> dict[str, Chunks]:
    """Fixed validation chunks by set: the original mixtures of each dataset (``mixes:<kind>``) and, with
    ``--validation-remixes``, remixes of the validation clips drawn once (``remixes``)."""
    sets: dict[str, list] = {}
    voiced = [i for i, clip in enumerate(stems) if clip.has_voice]
    for i, mix in zip(voiced, compute_mixes(stems, voiced, raw, args.workers)):
        sets.setdefault(f"mixes:{stems[i].source}", []).append(mix)
    if args.validation_remixes > 0:
        config = mixing_config(args)
        specs = draw_remixes(stems, round(args.validation_remixes * len(voiced)), config,
                             np.random.default_rng([args.seed, VALIDATION_STREAM]))
        if specs:
            sets["remixes"] = compute_mixes(stems, specs, raw, args.workers, config)
    if not sets:
        raise DatasetError("no validation clip has a voice")
    return {name: make_chunks(mixes, args.chunk_long, log_mel, weighting=args.bin_weights)
            for name, mixes in sorted(sets.items())}


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


class EpochData:
    """Computes each epoch's remixed mixtures, in worker processes one epoch ahead of training when there are
    workers. A remix depends only on the seed, the epoch and its index, never on the worker that made it."""

    def __init__(self, stems, originals: dict, log_mel: LogMel, args, distributed: Distributed):
        self.stems, self.originals, self.log_mel, self.args = stems, originals, log_mel, args
        self.rank, self.world = distributed.rank, distributed.world
        self.config = mixing_config(args)
        self.pool = worker_pool(stems, log_mel, args.workers, self.config) if args.workers > 1 else None
        self.pending: dict[int, list] = {}

    def _jobs(self, epoch: int) -> list:
        rng = np.random.default_rng([self.args.seed, epoch])
        count = round(self.args.remixes * sum(s.has_voice for s in self.stems))
        specs = draw_remixes(self.stems, count, self.config, rng)
        return specs[self.rank::self.world]

    def prefetch(self, epoch: int) -> None:
        if self.pool is not None and epoch not in self.pending:
            self.pending[epoch] = [self.pool.submit(_worker_remix_features, job) for job in self._jobs(epoch)]

    def mixes(self, epoch: int):
        if self.pool is None:
            remixed = [remix_features(self.stems, self.log_mel, job, self.config) for job in self._jobs(epoch)]
        else:
            self.prefetch(epoch)
            remixed = [future.result() for future in self.pending.pop(epoch)]
        mine = sorted(self.originals)[self.rank::self.world]
        return [self.originals[i] for i in mine] + remixed

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


def save(path: Path, state: dict) -> None:
    with replaced_on_success(path) as temporary:
        torch.save(state, temporary)


def train(args) -> Path:
    started = time.monotonic()
    device = pick_device(args.device)
    distributed = Distributed(device)
    out = Path(args.out)
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if distributed.main else (lambda *a: None)
    if distributed.main:
        out.mkdir(parents=True, exist_ok=True)
    distributed.barrier()
    torch.manual_seed(args.seed)

    resume_state = None
    if args.resume:
        last = out / "last.pt"
        if not last.exists():
            raise SystemExit(f"error: --resume but {last} does not exist")
        try:  # weights_only: a checkpoint holds tensors and plain values; unpickling anything else could run code
            resume_state = torch.load(last, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"{last} cannot be read as a training checkpoint ({type(error).__name__})") from None
        log(f"resuming {last} after epoch {resume_state['train_state']['epoch']}")

    # data
    train_refs, val_refs = find_clips(args)
    log(f"{len(train_refs)} training clips ({len({r.group for r in train_refs})} groups), "
        f"{len(val_refs)} validation clips ({len({r.group for r in val_refs})} groups) on {device}")
    train_stems = load_all(train_refs, args.workers)
    val_stems = load_all(val_refs, args.workers)
    voiced = [i for i, stems in enumerate(train_stems) if stems.has_voice]
    if not voiced:
        raise DatasetError("no training clip has a voice")
    bundle = None
    if args.init and resume_state is None:
        bundle = load_bundle(None if args.init == "default" else args.init)
        feature_config = bundle.config.features
        mean, std = bundle.config.feature_mean, bundle.config.feature_std
    elif resume_state is not None:
        feature_config = FeatureConfig.from_dict(resume_state["feature_config"])
        mean = np.asarray(resume_state["feature_mean"], np.float32)
        std = np.asarray(resume_state["feature_std"], np.float32)
    else:
        feature_config = FeatureConfig()
    raw = LogMel(feature_config)
    originals = dict(zip(voiced, compute_mixes(train_stems, voiced, raw, args.workers)))
    if bundle is None and resume_state is None:
        mean, std = normalisation(list(originals.values()))
    log_mel = LogMel(feature_config, mean, std)
    val_chunks = validation_sets(val_stems, raw, log_mel, args)
    log("validation sets: " + ", ".join(f"{name} ({len(chunks)} chunks)" for name, chunks in val_chunks.items()))
    epoch_data = EpochData(train_stems, originals, log_mel, args, distributed)

    # model and state
    if resume_state is not None:
        model_config = ModelConfig.from_dict(resume_state["model_config"])
        model = DeepClusteringNet(model_config)
        model.load_state_dict(resume_state["model_state"])
    elif bundle is not None:
        from export.bundle_weights import model_from_bundle

        model = model_from_bundle(bundle, mask_head=args.mask_head > 0)
        model_config = model.config
        calibration = make_chunks(list(originals.values()), args.chunk_long, log_mel)
        pick = np.random.default_rng(args.seed).permutation(len(calibration))[:64]
        model.calibrate_batch_norm(torch.from_numpy(calibration.features[np.sort(pick)]))
        log(f"initialised from {bundle.directory} ({model_config.layers}x{model_config.hidden} BLSTM)")
    else:
        model_config = model_config_from(args)
        model = DeepClusteringNet(model_config)
    model = model.to(device)
    objective = Objective(log_mel, args, device)
    stages = [(args.chunk_short, args.epochs_short), (args.chunk_long, args.epochs_long)]
    state = {"epoch": 0, "stage": 0 if args.epochs_short else 1, "stage_epoch": 0, "stage_seconds": 0.0,
             "best_val": math.inf, "best_epoch": 0, "lr": args.lr, "stale": 0, "history": []}
    optimizer_state = None
    if resume_state is not None:
        optimizer_state = resume_state["optimizer_state"]
        state = resume_state["train_state"]
    wrapped = model
    if distributed.world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=state["lr"])
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    provenance = {
        "data": [f"{kind}:{path}" for kind, path in parse_sources(args.data, args.dataset)],
        "training_groups": sorted({s.group for s in train_stems}), "validation_groups": sorted({s.group for s in val_stems}),
        "training_clips": len(train_refs), "validation_clips": len(val_refs),
        "initialised_from": str(bundle.directory) if bundle is not None else (
            resume_state["provenance"].get("initialised_from") if resume_state is not None else None),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu", "world_size": distributed.world,
        "arguments": vars(args),
    }
    if distributed.main:
        (out / "run.json").write_text(json.dumps({"arguments": vars(args), "model": model_config.to_dict()}, indent=1))

    def checkpoint(with_optimizer: bool) -> dict:
        saved = {
            "model_config": model_config.to_dict(), "model_state": model.state_dict(), "train_state": state,
            "feature_config": feature_config.to_dict(), "feature_mean": [float(v) for v in mean],
            "feature_std": [float(v) for v in std],
            "provenance": provenance,
        }
        if with_optimizer:
            saved["optimizer_state"] = optimizer.state_dict()
        return saved

    def stage_done() -> bool:
        chunk_epochs = stages[state["stage"]][1]
        if state["stage_epoch"] >= chunk_epochs:
            return True
        return state["stage"] == 0 and args.short_minutes and state["stage_seconds"] / 60 >= args.short_minutes

    stopped_early = False
    while state["stage"] < len(stages):
        if stage_done():
            state["stage"] += 1
            state["stage_epoch"], state["stage_seconds"] = 0, 0.0
            if state["stage"] < len(stages) and (out / "best.pt").exists():
                # curriculum: continue from the best short-chunk network with a fresh optimizer
                best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
                model.load_state_dict(best["model_state"])
                optimizer = torch.optim.RMSprop(model.parameters(), lr=args.lr)
                state["lr"], state["stale"] = args.lr, 0
                log(f"stage 2: {stages[1][0]}-frame chunks from the best stage-1 epoch {state['best_epoch']}")
            continue
        epoch, chunk = state["epoch"], stages[state["stage"]][0]
        epoch_start = time.monotonic()
        mixes = epoch_data.mixes(epoch)
        epoch_data.prefetch(epoch + 1)
        rng = np.random.default_rng([args.seed, epoch, distributed.rank])
        chunks = make_chunks(mixes, chunk, log_mel, rng, weighting=args.bin_weights)
        batch = max(1, args.batch_frames // chunk)
        steps = distributed.all_min(len(chunks) // batch)
        if args.max_steps:
            steps = min(steps, args.max_steps)
        torch.manual_seed(args.seed * 1000 + epoch)
        model.train()
        running = 0.0
        progress = _progress(steps, f"epoch {epoch + 1} ({chunk} frames)", distributed.main)
        for step, arrays in enumerate(batches(chunks, batch, rng, steps)):
            arrays = to_tensors(*arrays, device=device)
            loss = objective(wrapped(arrays[0], with_mask=True), *arrays)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            optimizer.step()
            running += loss.item()
            progress.update(1)
            progress.set_postfix(loss=f"{running / (step + 1):.4f}")
        progress.close()
        train_loss = distributed.all_sum([running / max(steps, 1)])[0] / distributed.world
        val_batch = max(1, args.batch_frames // args.chunk_long)
        measured = {name: validation_loss(model, objective, chunks, val_batch, device, distributed)
                    for name, chunks in val_chunks.items()}
        val_sets = {name: total for name, (total, _) in measured.items()}
        val_terms = {name: terms for name, (_, terms) in measured.items()}
        val = float(np.mean(list(val_sets.values())))  # every set counts the same, however many chunks it has
        improved = val < state["best_val"]
        if improved:
            state["best_val"], state["best_epoch"], state["stale"] = val, epoch + 1, 0
        else:
            state["stale"] += 1
            if args.patience and state["stale"] >= args.patience:
                state["lr"] /= 2
                state["stale"] = 0
                for group in optimizer.param_groups:
                    group["lr"] = state["lr"]
        seconds = time.monotonic() - epoch_start
        state["epoch"], state["stage_epoch"] = epoch + 1, state["stage_epoch"] + 1
        state["stage_seconds"] += seconds
        entry = {"epoch": epoch + 1, "chunk": chunk, "train_loss": train_loss, "val_loss": val, "val_sets": val_sets,
                 "val_terms": val_terms, "lr": state["lr"],
                 "steps": steps, "seconds": round(seconds, 1), "best": improved,
                 "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        state["history"].append(entry)
        if distributed.main:
            with open(out / "log.jsonl", "a") as handle:
                handle.write(json.dumps(entry) + "\n")
            if improved:
                save(out / "best.pt", checkpoint(with_optimizer=False))
            save(out / "last.pt", checkpoint(with_optimizer=True))
        log(f"epoch {epoch + 1}: train {train_loss:.4f} val {val:.4f}{' (best)' if improved else ''} "
            f"lr {state['lr']:.2e} {entry['seconds']}s")
        distributed.barrier()
        if args.max_minutes and (time.monotonic() - started) / 60 > args.max_minutes:
            log(f"time budget reached after epoch {state['epoch']}: continue with --resume")
            stopped_early = True
            break

    epoch_data.close()
    if distributed.main:
        best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(best["model_state"])
        best["references"], best["labelling"] = voice_labels(model, train_stems, originals, raw, log_mel, args, device)
        log(f"voice labels: thresholds {best['labelling']['voice_thresholds']}, {best['labelling']['statistics']}")
        try:
            embed = torch_window_embedder(model, args.chunk_long, log_mel, device)
            activity, statistics = fit_voice_activity(train_stems, mixing_config(args), log_mel, [embed], args.seed,
                                                      log)
        except ValueError as error:  # e.g. no frame without a voice among the training clips
            log(f"no voice-activity gate: {error}")
        else:
            best["labelling"]["voice_activity"] = {**activity.to_dict(), "statistics": statistics}
            log(f"voice activity: {statistics}")
        best["provenance"] = {**provenance, "best_epoch": state["best_epoch"], "best_val_loss": state["best_val"],
                              "epochs": state["epoch"], "history": state["history"], "complete": not stopped_early,
                              "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        save(out / "best.pt", best)
        log(f"{'stopped early' if stopped_early else 'done'}: best epoch {state['best_epoch']} "
            f"(validation loss {state['best_val']:.4f}); export with: stream-dc export {out / 'best.pt'} -o BUNDLE_DIR")
    distributed.barrier()
    if distributed.world > 1:
        dist.destroy_process_group()
    return out / "best.pt"


def _progress(total: int, description: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, disable=not enabled or not sys.stderr.isatty(), leave=False,
                mininterval=1.0, file=sys.stderr, dynamic_ncols=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="stream-dc train", description=__doc__.splitlines()[0],
                                     fromfile_prefix_chars="@")
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.out is None:
        parser.error("the following arguments are required: --out")
    handle_stop_signals()
    try:
        train(args)
    except (DatasetError, BundleError, ValueError) as error:
        print(f"stream-dc train: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as interrupt:
        print("stream-dc train: interrupted; continue with --resume", file=sys.stderr)
        return exit_status(interrupt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
