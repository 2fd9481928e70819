"""The user's knobs of a separation, apart from the model file: one ``SeparationOptions``, resolved against a model
bundle once (``resolve``) and taken by ``Separator``, ``StreamProcessor`` and every command.

A knob left at ``None`` takes the bundle's own setting (mask softness) or the runtime's default (threads). Options
that a mode cannot apply are listed by ``unused`` so that a command can say so instead of ignoring them silently.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

from .activity import VoiceActivity
from .bundle import Bundle, load_bundle
from .masks import HEAD_USES
from .presets import KEEP, LatencyPreset, get_preset
from .refine import MaskRefiner
from .stft import HOP_MS, OFFLINE_WINDOW_HOPS

MODES = ("offline", "stream")
RECONSTRUCTIONS = ("projection", "inverse-mel")
DEVICES = ("auto", "cpu", "cuda")
SYNTHESIS_WINDOWS_MS = (32, 64, 128)
KEY_RANGE = 12.0  # semitones either way
VOCAL_GAIN_RANGE = (-120.0, 24.0)  # dB


@dataclass(frozen=True)
class SeparationOptions:
    """Every user knob of a separation.

    - ``model``: bundle folder (None: the shipped model); ``device`` auto, cpu or cuda; ``threads`` onnxruntime's
      CPU threads (None: ``STREAM_DC_THREADS``, else one per core).
    - ``mask_softness`` (None: the bundle's), ``voice_gate``, ``refine``: how clusters become masks; ``mask_head``
      (None: the bundle's setting) how a Chimera network's second head joins them (``masks.HEAD_USES``).
    - Offline only: ``reconstruction``, ``wiener``, ``channel_masks``, ``synthesis_window_ms``.
    - ``mode``: what ``Separator`` runs, offline or the streaming processor with ``latency``.
    - Streaming output: ``keep`` (which stem), ``vocal_gain_db`` (the other stem mixed back in, None: not at all).
    - ``key``: semitones, both stems shifted alike, streaming and offline (0: no key stage).
    """

    model: str | Path | None = None
    device: str = "auto"
    threads: int | None = None
    mask_softness: float | None = None
    voice_gate: bool = True
    refine: bool = True
    mask_head: str | None = None
    mode: str = "offline"
    reconstruction: str = "projection"
    wiener: bool = True
    channel_masks: bool = True
    synthesis_window_ms: int = OFFLINE_WINDOW_HOPS * HOP_MS
    latency: str | LatencyPreset = "balanced"
    keep: str = "accompaniment"
    vocal_gain_db: float | None = None
    key: float = 0.0

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise ValueError naming the first option whose value cannot work."""
        choices = (("device", DEVICES), ("mode", MODES), ("reconstruction", RECONSTRUCTIONS), ("keep", KEEP))
        for name, allowed in choices:
            if getattr(self, name) not in allowed:
                raise ValueError(f"unknown {name} {getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads {self.threads!r}: use 1 thread or more")
        if self.mask_head is not None and self.mask_head not in HEAD_USES:
            raise ValueError(f"unknown mask head use {self.mask_head!r}: choose one of {', '.join(HEAD_USES)}")
        if self.mask_softness is not None and not (math.isfinite(self.mask_softness) and self.mask_softness >= 0):
            raise ValueError(f"mask softness {self.mask_softness!r}: use a finite number >= 0")
        if self.synthesis_window_ms not in SYNTHESIS_WINDOWS_MS:
            raise ValueError(f"synthesis window {self.synthesis_window_ms} ms: choose one of "
                             f"{', '.join(map(str, SYNTHESIS_WINDOWS_MS))}")
        if self.vocal_gain_db is not None and not (VOCAL_GAIN_RANGE[0] <= self.vocal_gain_db <= VOCAL_GAIN_RANGE[1]):
            raise ValueError(f"vocal gain {self.vocal_gain_db!r} dB: use {VOCAL_GAIN_RANGE[0]:g} to "
                             f"{VOCAL_GAIN_RANGE[1]:g} dB")
        if not (math.isfinite(self.key) and abs(self.key) <= KEY_RANGE):
            raise ValueError(f"key {self.key!r}: use -{KEY_RANGE:g} to +{KEY_RANGE:g} semitones")
        if self.mode == "stream" and self.reconstruction != "projection":
            raise ValueError("stream mode uses projection reconstruction only")
        get_preset(self.latency)  # raises ValueError for a bad schedule

    def changed(self, **changes) -> SeparationOptions:
        """A copy with ``changes`` applied (field names of this class)."""
        unknown = sorted(set(changes) - {f.name for f in fields(self)})
        if unknown:
            raise TypeError(f"unknown separation options: {', '.join(unknown)}")
        return replace(self, **changes)

    @property
    def window_hops(self) -> int:
        """The offline synthesis window in analysis hops (8 ms each)."""
        return self.synthesis_window_ms // HOP_MS

    @property
    def preset(self) -> LatencyPreset:
        return get_preset(self.latency)

    def unused(self, streaming: bool) -> list[str]:
        """Options set away from their defaults that a run of this kind cannot apply (``streaming``: the streaming
        processor, else offline separation), as the command-line names them."""
        default = SeparationOptions()
        offline_only = (("reconstruction", "--reconstruction"), ("wiener", "--no-wiener"),
                        ("channel_masks", "--no-channel-masks"), ("synthesis_window_ms", "--synthesis-window"))
        stream_only = (("latency", "--latency"),)
        names = offline_only if streaming else stream_only
        return [flag for name, flag in names if getattr(self, name) != getattr(default, name)]

    def resolve(self, bundle: Bundle | None = None) -> ResolvedOptions:
        """These options with the bundle's settings filled in (the bundle loaded from ``model`` when not given)."""
        bundle = bundle if bundle is not None else load_bundle(self.model)
        config = bundle.config
        head_use = config.mask_head_use if self.mask_head is None else self.mask_head
        if head_use != "off" and not config.architecture.get("mask_head"):
            raise ValueError(f"--mask-head {head_use}: the model {bundle.directory} has no mask head")
        return ResolvedOptions(
            options=self, bundle=bundle, preset=self.preset,
            mask_softness=config.mask_softness if self.mask_softness is None else float(self.mask_softness),
            voice_activity=config.voice_activity if self.voice_gate else None,
            refiner=config.mask_refiner if self.refine else None, head_use=head_use)


@dataclass(frozen=True)
class ResolvedOptions:
    """``SeparationOptions`` against one bundle: the softness to use, the gate and refiner to apply (None: off), and
    how the mask head joins the cluster masks."""

    options: SeparationOptions
    bundle: Bundle
    preset: LatencyPreset
    mask_softness: float
    voice_activity: VoiceActivity | None
    refiner: MaskRefiner | None
    head_use: str = "off"

    @property
    def other_gain(self) -> float:
        """Linear gain of the stem mixed back into the kept one (0: none)."""
        gain = self.options.vocal_gain_db
        return 0.0 if gain is None else float(10.0 ** (gain / 20.0))
