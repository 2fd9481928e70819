"""Fitting a bundle's mask refiner (``stream_dc.refine``) on its own training songs.

``python -m training.refine BUNDLE @RECIPE`` separates the recipe's training clips (``--validation`` and
``--holdout`` left out) offline with the bundle as it is, gate included (the masks of each clip's downmix), and
records every ``--frame-step``-th frame of the native-rate STFT that offline synthesis uses (64 ms windows;
streaming's 32 ms ones serve as well): the projected voice masks, the mixture's spectra and the voice's. Songs
from ``musdb`` (original pairings) and accompaniment alone from ``instrumental`` (up to ``--alone-seconds`` of each)
train both refiners, the stereo one on the two channels and the mono one on their downmix; ``mir1k`` clips (mono
karaoke at 16 kHz, ``--mir1k-clips`` of them) train the mono refiner only. ``--nets mono`` (or ``stereo``) refits
one of the two and keeps the bundle's other one.

Both refiners minimise what the runtime is judged by, each clip's error energy ``sum |refined * X - V|^2`` over its
accompaniment's energy (its own energy times ``1 / ALONE_WEIGHT`` for accompaniment alone), summed over clips, by
full-batch Adam from the identity (the last layer starts at zero).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from stream_dc.evaluation.datasets import Track, TrackRef
from stream_dc.evaluation.oracles import whole_stft
from stream_dc.masks import MaskProjector, MelMaskTrack
from stream_dc.refine import (
    MONO_FEATURES,
    STEREO_FEATURES,
    MaskRefiner,
    RefinerNet,
    bin_frequencies,
    refiner_features,
)
from stream_dc.stft import OFFLINE_WINDOW_HOPS

ALONE_WEIGHT = 0.2  # a clip of accompaniment alone counts this much beside a song
STEREO_SOURCES = ("musdb", "instrumental")


@dataclass
class Example:
    """Sampled frames of one clip: features ``(frames, bins, k)``, mixture and voice spectra
    ``(frames, bins, channels)``, and the clip's normaliser (its accompaniment's energy on these frames)."""

    features: torch.Tensor
    mixture: torch.Tensor
    voice: torch.Tensor
    norm: float


def clip_examples(track: Track, mel_masks: np.ndarray, features_config, frame_step: int,
                  stereo: bool, mono: bool) -> dict[str, Example]:
    """``{"stereo": Example, "mono": Example}`` (those asked for) of one separated clip."""
    rate = track.sample_rate
    geometry, mixture = whole_stft(track.mixture, rate)  # framed as the synthesis frames it
    _, voice = whole_stft(track.voice, rate)
    projector = MaskProjector(features_config, rate, geometry.n_fft, geometry.hop)
    positions = projector.analysis_positions(geometry.first_frame, len(mixture))
    masks = projector.project(MelMaskTrack.from_array(mel_masks).at(positions))
    keep = np.arange(0, len(mixture), frame_step)
    masks, mixture, voice = masks[keep], mixture[keep], voice[keep]
    frequencies = bin_frequencies(rate, geometry.n_fft)
    has_voice = bool(np.any(track.voice))
    out = {}
    for name, wanted in (("stereo", stereo), ("mono", mono)):
        if not wanted:
            continue
        x, v = (mixture, voice) if name == "stereo" else (mixture.mean(2, keepdims=True), voice.mean(2, keepdims=True))
        energy = float(np.sum(np.abs(x - v) ** 2)) if has_voice else float(np.sum(np.abs(x) ** 2)) / ALONE_WEIGHT
        if energy <= 0:
            continue
        out[name] = Example(torch.from_numpy(refiner_features(masks, x, frequencies, name == "stereo")),
                            torch.from_numpy(x), torch.from_numpy(v), energy)
    return out


class TorchRefiner(torch.nn.Module):
    """``RefinerNet`` in torch: ``refined = sigmoid(4 * features[..., 0] + net(features))``."""

    def __init__(self, inputs: int, hidden: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(inputs, hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
        torch.nn.init.zeros_(self.net[-1].weight)
        torch.nn.init.zeros_(self.net[-1].bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(4.0 * features[..., 0] + self.net(features)[..., 0])

    def export(self) -> RefinerNet:
        linears = [m for m in self.net if isinstance(m, torch.nn.Linear)]
        return RefinerNet([(m.weight.detach().numpy().T.astype(np.float32).copy(),
                            m.bias.detach().numpy().astype(np.float32).copy()) for m in linears])


def clip_error(mask: torch.Tensor, example: Example) -> torch.Tensor:
    """One clip's error energy ``sum |mask x mixture - voice|^2`` over its normaliser, for ``(frames, bins)``
    masks."""
    return torch.sum(torch.abs(mask[..., None] * example.mixture - example.voice) ** 2) / example.norm


def relative_error(model: TorchRefiner | None, examples: list[Example]) -> float:
    """Sum over clips of ``clip_error`` (``model=None``: the masks as they are)."""
    return sum(float(clip_error(torch.sigmoid(4.0 * e.features[..., 0]) if model is None else model(e.features), e))
               for e in examples)


def fit_refiner_net(examples: list[Example], inputs: int, hidden: int = 16, steps: int = 150, lr: float = 0.01,
                    seed: int = 0, progress: Callable[[str], None] | None = None) -> tuple[RefinerNet, dict]:
    """A fitted ``RefinerNet`` and its relative training error before and after."""
    torch.manual_seed(seed)
    model = TorchRefiner(inputs, hidden)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.no_grad():
        before = relative_error(None, examples)
    for step in range(steps):
        optimiser.zero_grad()
        for e in examples:  # one clip at a time keeps the graph small; gradients add up
            clip_error(model(e.features), e).backward()
        optimiser.step()
        if progress is not None and (step + 1) % 25 == 0:
            progress(f"mask refiner ({inputs} features): step {step + 1} of {steps}")
    with torch.no_grad():
        after = relative_error(model, examples)
    return model.export(), {"clips": len(examples), "error_before": round(before, 4), "error_after": round(after, 4)}


def fit_mask_refiner(separator, refs: list[TrackRef], frame_step: int = 6, alone_seconds: float = 15.0,
                     mir1k_clips: int = 100, hidden: int = 16, steps: int = 150, seed: int = 0,
                     nets: tuple[str, ...] = ("stereo", "mono"), keep: MaskRefiner | None = None,
                     progress: Callable[[str], None] | None = None) -> tuple[MaskRefiner, dict]:
    """A refiner for ``separator``'s bundle (run with its refiner off) from the training clips ``refs``: the
    ``nets`` named are fitted, the others taken from ``keep``."""
    if set(nets) != {"stereo", "mono"} and keep is None:
        raise ValueError("fitting only one of the refiner's nets needs a bundle that has a refiner already")
    from stream_dc.audio import AudioSource

    rng = np.random.default_rng([seed, 11])
    karaoke = [r for r in refs if r.dataset == "mir1k"]
    chosen = [r for r in refs if r.dataset in STEREO_SOURCES]
    chosen += [karaoke[i] for i in sorted(rng.permutation(len(karaoke))[:mir1k_clips])]
    examples: dict[str, list[Example]] = {"stereo": [], "mono": []}
    features = separator.bundle.config.features
    for n, ref in enumerate(chosen):
        track = ref.load()
        limit = int(alone_seconds * track.sample_rate)
        if not np.any(track.voice) and len(track.voice) > limit:
            start = (len(track.voice) - limit) // 2
            track = Track(track.name, track.group, track.sample_rate, track.voice[start:start + limit],
                          track.accompaniment[start:start + limit])
        source = AudioSource.from_array(track.mixture.astype(np.float32), track.sample_rate)
        log_mel, _ = separator.analyse(source)
        stereo = "stereo" in nets and ref.dataset in STEREO_SOURCES and track.mixture.shape[1] == 2
        for name, example in clip_examples(track, separator.voice_masks(log_mel), features, frame_step,
                                           stereo=stereo, mono="mono" in nets).items():
            examples[name].append(example)
        if progress is not None and (n + 1) % 50 == 0:
            progress(f"mask refiner: {n + 1} of {len(chosen)} clips separated")
    if any(not examples[name] for name in nets):
        raise ValueError("fitting the mask refiner needs stereo songs (musdb or instrumental) in the recipe")
    fitted, statistics = {}, {"frame_step": frame_step, "window_hops": OFFLINE_WINDOW_HOPS}
    for name in nets:
        inputs = STEREO_FEATURES if name == "stereo" else MONO_FEATURES
        fitted[name], statistics[name] = fit_refiner_net(examples[name], inputs, hidden, steps, seed=seed,
                                                         progress=progress)
    return MaskRefiner(mono=fitted.get("mono", keep and keep.mono),
                       stereo=fitted.get("stereo", keep and keep.stereo)), statistics


def main(argv: list[str] | None = None) -> int:
    from stream_dc.apps.helptext import DefaultsFormatter
    from stream_dc.apps.report import Reporter
    from stream_dc.apps.signals import exit_status, handle_stop_signals
    from stream_dc.bundle import BundleError, load_bundle, write_config
    from stream_dc.evaluation.datasets import DatasetError
    from stream_dc.separator import Separator

    from .recipe import add_arguments, find_clips

    parser = argparse.ArgumentParser(
        formatter_class=DefaultsFormatter, prog="python -m training.refine", fromfile_prefix_chars="@",
                                     description="Fit a bundle's per-bin mask refiner on a recipe's training clips "
                                                 "and write it into the bundle.")
    parser.add_argument("bundle", help="model bundle folder")
    parser.add_argument("--frame-step", type=int, default=6, help="use every N-th STFT frame of each clip")
    parser.add_argument("--alone-seconds", type=float, default=15.0, help="seconds of each accompaniment-only piece")
    parser.add_argument("--mir1k-clips", type=int, default=100, help="MIR-1K clips for the mono refiner")
    parser.add_argument("--refiner-hidden", type=int, default=16, help="units in each hidden layer")
    parser.add_argument("--refiner-steps", type=int, default=150, help="full-batch Adam steps")
    parser.add_argument("--nets", default="stereo,mono",
                        help="which of the refiner's nets to fit (comma-separated: stereo, mono); the bundle keeps "
                             "its other one")
    add_arguments(parser)  # a training recipe reads as is; only its data options count here
    args = parser.parse_args(argv)
    handle_stop_signals()
    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)
    try:
        bundle = load_bundle(args.bundle)
        nets = tuple(n for n in args.nets.split(",") if n)
        if not nets or set(nets) - {"stereo", "mono"}:
            raise ValueError(f"--nets {args.nets!r}: name stereo, mono or both")
        if set(nets) != {"stereo", "mono"} and bundle.config.mask_refiner is None:
            raise ValueError(f"--nets {args.nets}: {args.bundle} has no refiner to keep the other net from")
        training_refs, _ = find_clips(args)
        separator = Separator(bundle, device="cpu", refine=False)
        refiner, statistics = fit_mask_refiner(separator, training_refs, args.frame_step, args.alone_seconds,
                                               args.mir1k_clips, args.refiner_hidden, args.refiner_steps, args.seed,
                                               nets, bundle.config.mask_refiner, log)
    except (DatasetError, BundleError, ValueError) as error:
        return Reporter("training.refine").error(str(error))
    except KeyboardInterrupt as interrupt:  # nothing written yet: the bundle is as it was
        Reporter("training.refine").error("interrupted; the bundle is unchanged")
        return exit_status(interrupt)
    config = bundle.config
    config.mask_refiner = refiner
    config.provenance["mask_refiner"] = {**config.provenance.get("mask_refiner", {}), **statistics}
    write_config(bundle.directory, config)
    log(f"mask refiner written to {bundle.directory}: {statistics}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
