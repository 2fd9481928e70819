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

from stream_dc.apps.helptext import DefaultsFormatter
from stream_dc.apps.report import Reporter
from stream_dc.apps.signals import exit_status, handle_stop_signals
from stream_dc.bundle import BundleError, load_bundle
from stream_dc.evaluation.datasets import DatasetError
from stream_dc.features import FeatureConfig, LogMel
from stream_dc.files import replaced_on_success

from .calibrate import voice_labels
from .data import (
    Chunks,
    _worker_remix_features,
    compute_mixes,
    load_all,
    make_chunks,
    normalisation,
    remix_features,
    worker_pool,
)
from .embedders import torch_window_embedder
from .loss import clustered_mask_loss, deep_clustering_loss, mask_inference_loss
from .mixing import draw_remixes
from .model import DeepClusteringNet, ModelConfig
from .recipe import VALIDATION_STREAM, add_arguments, find_clips, mixing_config, model_config_from, parse_sources
from .voice_activity import fit_voice_activity


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


def batches(chunks: Chunks, batch: int, rng: np.random.Generator, steps: int):
    """``steps`` batches of ``batch`` chunks drawn in a random order (every process of a distributed run takes the
    same number: the smallest any of them has)."""
    order = rng.permutation(len(chunks))
    steps = min(steps, len(order) // batch)
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

    def close(self, abort: bool = False) -> None:
        """Shut the workers down; ``abort`` (an interrupted run) kills them at once, with their queued work."""
        if self.pool is not None:
            if abort:
                self.pool.stop()
            else:
                self.pool.shutdown(cancel_futures=True)


def save(path: Path, state: dict) -> None:
    with replaced_on_success(path) as temporary:
        torch.save(state, temporary)


class Trainer:
    """One training run, as ``args`` (a recipe) say: ``run()`` trains epoch by epoch (``_run_epoch``, then
    ``_validate`` and ``_checkpoint``), through the two chunk lengths of the curriculum, until the epochs or the time
    budget are spent, then ``_finish`` measures the best network's voice labels and gate; it returns ``best.pt``.
    ``--resume`` continues from ``last.pt`` exactly where an interrupted run stopped."""

    def __init__(self, args):
        self.args, self.started = args, time.monotonic()
        self.device = pick_device(args.device)
        self.distributed = Distributed(self.device)
        self.out = Path(args.out)
        main = self.distributed.main
        self.log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if main else (lambda *a: None)
        if main:
            self.out.mkdir(parents=True, exist_ok=True)
        self.distributed.barrier()
        torch.manual_seed(args.seed)
        self.resume_state = self._resume_state()
        self._load_data()
        self._build_model()
        self.stages = [(args.chunk_short, args.epochs_short), (args.chunk_long, args.epochs_long)]
        if main:
            (self.out / "run.json").write_text(json.dumps({"arguments": vars(args),
                                                           "model": self.model_config.to_dict()}, indent=1))

    # -- set-up ---------------------------------------------------------------------------------------------
    def _resume_state(self) -> dict | None:
        if not self.args.resume:
            return None
        last = self.out / "last.pt"
        if not last.exists():
            raise SystemExit(f"error: --resume but {last} does not exist")
        try:  # weights_only: a checkpoint holds tensors and plain values; unpickling anything else could run code
            state = torch.load(last, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ValueError(f"{last} cannot be read as a training checkpoint ({type(error).__name__})") from None
        self.log(f"resuming {last} after epoch {state['train_state']['epoch']}")
        return state

    def _load_data(self) -> None:
        """The clips, their original mixtures, the feature normalisation, the validation sets, the epochs' data."""
        args, resumed = self.args, self.resume_state
        train_refs, val_refs = find_clips(args)
        self.log(f"{len(train_refs)} training clips ({len({r.group for r in train_refs})} groups), "
                 f"{len(val_refs)} validation clips ({len({r.group for r in val_refs})} groups) on {self.device}")
        self.train_stems, val_stems = load_all(train_refs, args.workers), load_all(val_refs, args.workers)
        voiced = [i for i, stems in enumerate(self.train_stems) if stems.has_voice]
        if not voiced:
            raise DatasetError("no training clip has a voice")
        self.bundle = None
        if args.init and resumed is None:
            self.bundle = load_bundle(None if args.init == "default" else args.init)
            self.feature_config = self.bundle.config.features
            mean, std = self.bundle.config.feature_mean, self.bundle.config.feature_std
        elif resumed is not None:
            self.feature_config = FeatureConfig.from_dict(resumed["feature_config"])
            mean = np.asarray(resumed["feature_mean"], np.float32)
            std = np.asarray(resumed["feature_std"], np.float32)
        else:
            self.feature_config = FeatureConfig()
        self.raw = LogMel(self.feature_config)
        self.originals = dict(zip(voiced, compute_mixes(self.train_stems, voiced, self.raw, args.workers)))
        if self.bundle is None and resumed is None:
            mean, std = normalisation(list(self.originals.values()))
        self.mean, self.std = mean, std
        self.log_mel = LogMel(self.feature_config, mean, std)
        self.val_chunks = validation_sets(val_stems, self.raw, self.log_mel, args)
        self.log("validation sets: " + ", ".join(f"{name} ({len(chunks)} chunks)"
                                                 for name, chunks in self.val_chunks.items()))
        self.epoch_data = EpochData(self.train_stems, self.originals, self.log_mel, args, self.distributed)
        self.provenance = {
            "data": [f"{kind}:{path}" for kind, path in parse_sources(args.data, args.dataset)],
            "training_groups": sorted({s.group for s in self.train_stems}),
            "validation_groups": sorted({s.group for s in val_stems}),
            "training_clips": len(train_refs), "validation_clips": len(val_refs),
            "initialised_from": str(self.bundle.directory) if self.bundle is not None else (
                resumed["provenance"].get("initialised_from") if resumed is not None else None),
            "device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "world_size": self.distributed.world, "arguments": vars(args),
        }

    def _build_model(self) -> None:
        """The network (fresh, from a bundle, or as the checkpoint left it), its optimizer and the run's state."""
        args, resumed = self.args, self.resume_state
        if resumed is not None:
            self.model_config = ModelConfig.from_dict(resumed["model_config"])
            model = DeepClusteringNet(self.model_config)
            model.load_state_dict(resumed["model_state"])
        elif self.bundle is not None:
            from .bundle_weights import model_from_bundle

            model = model_from_bundle(self.bundle, mask_head=args.mask_head > 0)
            self.model_config = model.config
            calibration = make_chunks(list(self.originals.values()), args.chunk_long, self.log_mel)
            pick = np.random.default_rng(args.seed).permutation(len(calibration))[:64]
            model.calibrate_batch_norm(torch.from_numpy(calibration.features[np.sort(pick)]))
            self.log(f"initialised from {self.bundle.directory} ({self.model_config.layers}x"
                     f"{self.model_config.hidden} BLSTM)")
        else:
            self.model_config = model_config_from(args)
            model = DeepClusteringNet(self.model_config)
        self.model = model.to(self.device)
        self.objective = Objective(self.log_mel, args, self.device)
        self.state = {"epoch": 0, "stage": 0 if args.epochs_short else 1, "stage_epoch": 0, "stage_seconds": 0.0,
                      "best_val": math.inf, "best_epoch": 0, "lr": args.lr, "stale": 0, "history": []}
        if resumed is not None:
            self.state = resumed["train_state"]
        self.wrapped = model
        if self.distributed.world > 1:
            self.wrapped = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = torch.optim.RMSprop(model.parameters(), lr=self.state["lr"])
        if resumed is not None:
            self.optimizer.load_state_dict(resumed["optimizer_state"])

    # -- the loop -------------------------------------------------------------------------------------------
    def run(self) -> Path:
        try:
            stopped_early = self._train()
        except BaseException:
            self.epoch_data.close(abort=True)  # Ctrl-C or SIGTERM: the workers go too, whatever they were doing
            raise
        self.epoch_data.close()
        if self.distributed.main:
            self._finish(stopped_early)
        self.distributed.barrier()
        if self.distributed.world > 1:
            dist.destroy_process_group()
        return self.out / "best.pt"

    def _train(self) -> bool:
        """The epochs; True when the time budget stopped them early."""
        stopped_early = False
        while self.state["stage"] < len(self.stages):
            if self._stage_done():
                self._next_stage()
                continue
            entry = self._validate(*self._run_epoch())
            self._checkpoint(entry)
            if self.args.max_minutes and (time.monotonic() - self.started) / 60 > self.args.max_minutes:
                self.log(f"time budget reached after epoch {self.state['epoch']}: continue with --resume")
                stopped_early = True
                break
        return stopped_early

    def _stage_done(self) -> bool:
        state, chunk_epochs = self.state, self.stages[self.state["stage"]][1]
        if state["stage_epoch"] >= chunk_epochs:
            return True
        budget = self.args.short_minutes
        return state["stage"] == 0 and budget and state["stage_seconds"] / 60 >= budget

    def _next_stage(self) -> None:
        """The curriculum's next chunk length, from the best network so far with a fresh optimizer."""
        state = self.state
        state["stage"] += 1
        state["stage_epoch"], state["stage_seconds"] = 0, 0.0
        if state["stage"] < len(self.stages) and (self.out / "best.pt").exists():
            best = torch.load(self.out / "best.pt", map_location="cpu", weights_only=True)
            self.model.load_state_dict(best["model_state"])
            self.optimizer = torch.optim.RMSprop(self.model.parameters(), lr=self.args.lr)
            state["lr"], state["stale"] = self.args.lr, 0
            self.log(f"stage 2: {self.stages[1][0]}-frame chunks from the best stage-1 epoch {state['best_epoch']}")

    def _run_epoch(self) -> tuple[int, float, float]:
        """One pass over the epoch's mixtures; returns the chunk length, the mean training loss and the seconds."""
        args, distributed, epoch = self.args, self.distributed, self.state["epoch"]
        chunk = self.stages[self.state["stage"]][0]
        epoch_start = time.monotonic()
        mixes = self.epoch_data.mixes(epoch)
        self.epoch_data.prefetch(epoch + 1)
        rng = np.random.default_rng([args.seed, epoch, distributed.rank])
        chunks = make_chunks(mixes, chunk, self.log_mel, rng, weighting=args.bin_weights)
        batch = max(1, args.batch_frames // chunk)
        steps = distributed.all_min(len(chunks) // batch)
        if args.max_steps:
            steps = min(steps, args.max_steps)
        torch.manual_seed(args.seed * 1000 + epoch)
        self.model.train()
        running = 0.0
        progress = _progress(steps, f"epoch {epoch + 1} ({chunk} frames)", distributed.main)
        for step, arrays in enumerate(batches(chunks, batch, rng, steps)):
            arrays = to_tensors(*arrays, device=self.device)
            loss = self.objective(self.wrapped(arrays[0], with_mask=True), *arrays)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if args.clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), args.clip)
            self.optimizer.step()
            running += loss.item()
            progress.update(1)
            progress.set_postfix(loss=f"{running / (step + 1):.4f}")
        progress.close()
        train_loss = distributed.all_sum([running / max(steps, 1)])[0] / distributed.world
        return chunk, train_loss, time.monotonic() - epoch_start

    def _validate(self, chunk: int, train_loss: float, seconds: float) -> dict:
        """Score the validation sets, keep the best epoch, halve the rate after ``--patience`` stale epochs; returns
        the epoch's log entry."""
        args, state, epoch = self.args, self.state, self.state["epoch"]
        batch = max(1, args.batch_frames // args.chunk_long)
        measured = {name: validation_loss(self.model, self.objective, chunks, batch, self.device, self.distributed)
                    for name, chunks in self.val_chunks.items()}
        val_sets = {name: total for name, (total, _) in measured.items()}
        val = float(np.mean(list(val_sets.values())))  # every set counts the same, however many chunks it has
        improved = val < state["best_val"]
        if improved:
            state["best_val"], state["best_epoch"], state["stale"] = val, epoch + 1, 0
        else:
            state["stale"] += 1
            if args.patience and state["stale"] >= args.patience:
                state["lr"] /= 2
                state["stale"] = 0
                for group in self.optimizer.param_groups:
                    group["lr"] = state["lr"]
        state["epoch"], state["stage_epoch"] = epoch + 1, state["stage_epoch"] + 1
        state["stage_seconds"] += seconds
        entry = {"epoch": epoch + 1, "chunk": chunk, "train_loss": train_loss, "val_loss": val, "val_sets": val_sets,
                 "val_terms": {name: terms for name, (_, terms) in measured.items()}, "lr": state["lr"],
                 "seconds": round(seconds, 1), "best": improved,
                 "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        state["history"].append(entry)
        return entry

    def _checkpoint(self, entry: dict) -> None:
        """Save the epoch (``last.pt``, and ``best.pt`` when it is the best) before saying it is done."""
        if self.distributed.main:
            with open(self.out / "log.jsonl", "a") as handle:
                handle.write(json.dumps(entry) + "\n")
            if entry["best"]:
                save(self.out / "best.pt", self._serialize(with_optimizer=False))
            save(self.out / "last.pt", self._serialize(with_optimizer=True))
        self.log(f"epoch {entry['epoch']}: train {entry['train_loss']:.4f} val {entry['val_loss']:.4f}"
                 f"{' (best)' if entry['best'] else ''} lr {entry['lr']:.2e} {entry['seconds']}s")
        self.distributed.barrier()

    def _serialize(self, with_optimizer: bool) -> dict:
        """The checkpoint: tensors and plain values only (read back with ``weights_only``)."""
        saved = {
            "model_config": self.model_config.to_dict(), "model_state": self.model.state_dict(),
            "train_state": self.state, "feature_config": self.feature_config.to_dict(),
            "feature_mean": [float(v) for v in self.mean], "feature_std": [float(v) for v in self.std],
            "provenance": self.provenance,
        }
        if with_optimizer:
            saved["optimizer_state"] = self.optimizer.state_dict()
        return saved

    def _finish(self, stopped_early: bool) -> None:
        """``best.pt`` gains the best network's reference centroids, voice labels and voice-activity gate."""
        args, state, out = self.args, self.state, self.out
        best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
        self.model.load_state_dict(best["model_state"])
        best["references"], best["labelling"] = voice_labels(self.model, self.train_stems, self.originals, self.raw,
                                                             self.log_mel, args, self.device)
        self.log(f"voice labels: thresholds {best['labelling']['voice_thresholds']}, "
                 f"{best['labelling']['statistics']}")
        try:
            embed = torch_window_embedder(self.model, args.chunk_long, self.log_mel, self.device)
            activity, statistics = fit_voice_activity(self.train_stems, mixing_config(args), self.log_mel, [embed],
                                                      args.seed, self.log)
        except ValueError as error:  # e.g. no frame without a voice among the training clips
            self.log(f"no voice-activity gate: {error}")
        else:
            best["labelling"]["voice_activity"] = {**activity.to_dict(), "statistics": statistics}
            self.log(f"voice activity: {statistics}")
        best["provenance"] = {**self.provenance, "best_epoch": state["best_epoch"], "best_val_loss": state["best_val"],
                              "epochs": state["epoch"], "history": state["history"], "complete": not stopped_early,
                              "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        save(out / "best.pt", best)
        self.log(f"{'stopped early' if stopped_early else 'done'}: best epoch {state['best_epoch']} "
                 f"(validation loss {state['best_val']:.4f}); export with: stream-dc export {out / 'best.pt'} -o "
                 "BUNDLE_DIR")


def train(args) -> Path:
    """Run the training ``args`` describe; returns ``best.pt``."""
    return Trainer(args).run()


def _progress(total: int, description: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, disable=not enabled or not sys.stderr.isatty(), leave=False,
                mininterval=1.0, file=sys.stderr, dynamic_ncols=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        formatter_class=DefaultsFormatter, prog="stream-dc train", description=__doc__.splitlines()[0],
                                     fromfile_prefix_chars="@")
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.out is None:
        parser.error("the following arguments are required: --out")
    handle_stop_signals()
    try:
        train(args)
    except (DatasetError, BundleError, ValueError) as error:
        return Reporter("train").error(str(error))
    except KeyboardInterrupt as interrupt:
        Reporter("train").error("interrupted; continue with --resume")
        return exit_status(interrupt)
    return 0


if __name__ == "__main__":
    sys.exit(main())
