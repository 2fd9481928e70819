"""A training recipe: the arguments of every training command (``train`` and the commands that fit parts of a bundle
read the same recipe files), the data sources they name, the clips each side of the validation split, the mixing
engine's configuration and the network's size.

A recipe file holds arguments, one per line, and is read with ``@FILE`` (``training/recipes/``); a recipe can name
another.
"""
from __future__ import annotations

import argparse
import math
import os

from stream_dc.evaluation.datasets import DATASETS, DatasetError, list_tracks, split_groups, split_names

from .data import BIN_WEIGHTS
from .mixing import MixingConfig
from .model import PRESETS, ModelConfig

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


def model_config_from(args) -> ModelConfig:
    config = PRESETS[args.preset]
    overrides = {k: v for k, v in (("hidden", args.hidden), ("layers", args.layers)) if v}
    return ModelConfig(**{**config.to_dict(), **overrides, "mask_head": args.mask_head > 0})
