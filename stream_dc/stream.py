"""Streaming separation: blocks of any size in, the same number of samples out, delayed by a fixed latency.

``StreamProcessor`` composes the stages of ``stages``: the analysis front end (``frontend``: resampling to 16 kHz,
STFT, log-mel) and a mask engine (``engines``: 500-frame windows, or the chunked latency-controlled BLSTM for the
``live`` preset) make the mask path; the synthesis (``ProjectionSynthesis``: each channel's STFT at the input
rate, full band, masked and overlap-added) reads the input and the masks; the key change (``keyshift``, when
``key`` is not 0) follows. Each stage says how far ahead it reads, and ``latency_samples`` adds these up: the mask
path's stages in series, the synthesis waiting for the later of the mask path and its own window, the key change
after it. Output sample ``n`` depends on input up to ``n + latency_samples``, and ``process`` returns the separated
signal delayed by exactly that many samples.
"""
from __future__ import annotations

import math

import numpy as np

from .audio import check_block, check_format
from .bundle import Bundle, BundleError, load_bundle
from .engines import crossfade_weights, make_engine  # noqa: F401 (crossfade_weights: part of this module's API)
from .features import LogMel
from .frontend import AnalysisFrontEnd
from .inference import ChunkedEmbeddingModel, EmbeddingModel
from .keyshift import KeyShift
from .options import SeparationOptions
from .presets import KEEP, PRESETS, LatencyPreset, get_preset  # noqa: F401 (KEEP, PRESETS, LatencyPreset: API)
from .stages import Aligner, FixedDelay  # noqa: F401 (Aligner: part of this module's API)
from .synthesis import ProjectionSynthesis


class StreamProcessor:
    """Plugin-style separator: ``process(block)`` takes float32 ``(samples, channels)`` of any length and returns
    the same shape, ``flush()`` returns the last ``latency_samples`` samples, ``reset()`` starts over.

    The output is ``accompaniment + vocal_gain * vocals`` (``keep='accompaniment'``, the vocal remover) or
    ``vocals + vocal_gain * accompaniment`` (``keep='vocals'``); ``vocal_gain_db=None`` mixes none of the other
    stem in. ``process_stems``/``flush_stems`` return both stems instead. The options are a ``SeparationOptions``
    (``options``) with any of its fields given by name changed (``latency="live"``); ``bundle`` (a loaded bundle or
    a folder) overrides the options' model. ``model`` runs a network other than the bundle's (tests).
    """

    def __init__(self, bundle: Bundle | str | None = None, sample_rate: int = 44100, channels: int = 2,
                 options: SeparationOptions | None = None, model=None, forgetting: float = 0.7, **changes):
        options = (options or SeparationOptions()).changed(**changes)
        check_format(int(sample_rate), int(channels))
        if bundle is not None and not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle)
        self.resolved = options.resolve(bundle)
        self.options, self.bundle, self.preset = options, self.resolved.bundle, self.resolved.preset
        config = self.bundle.config
        self.preset.validate(config.window_frames)
        # the network runner for the preset's engine: windows (EmbeddingModel) or chunks (ChunkedEmbeddingModel)
        runner = ChunkedEmbeddingModel if self.preset.chunked else EmbeddingModel
        self.model = model or runner(self.bundle, options.device, options.threads)
        if self.resolved.head_use != "off" and not getattr(self.model, "has_mask", False):
            raise BundleError(f"{self.bundle.directory}: its config.json names a mask head that its "
                              f"{'chunked ' if self.preset.chunked else ''}graph has no output for")
        self.sample_rate, self.channels, self.keep = int(sample_rate), int(channels), options.keep
        self.other_gain = self.resolved.other_gain
        self.mask_softness = self.resolved.mask_softness
        self.log_mel = LogMel(config.features, config.feature_mean, config.feature_std)
        self.frontend = AnalysisFrontEnd(self.log_mel, self.sample_rate)
        self.engine = make_engine(self.preset, config, self.log_mel, self.model, forgetting, self.mask_softness,
                                  self.resolved.voice_activity, self.sample_rate, self.resolved.head_use)
        self.synthesis = ProjectionSynthesis(config.features, self.sample_rate, self.channels, self.engine.track,
                                             self.resolved.refiner)
        mask_path = self.frontend.latency_samples + self.engine.latency_samples
        self.separation_latency = int(math.ceil(
            max(self.synthesis.latency_samples, self.synthesis.centre_offset + mask_path) - 1e-9))
        self.key = KeyShift(self.sample_rate, 2 * self.channels, options.key) if options.key else None
        self.latency_samples = self.separation_latency + (self.key.latency_samples if self.key else 0)
        self.delay = FixedDelay(self.separation_latency, 2 * self.channels)
        self.reset()

    @property
    def windows_run(self) -> int:
        """Network runs so far (windows or chunks)."""
        return self.engine.runs

    @property
    def centroids(self):
        return self.engine.centroids

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.sample_rate

    @property
    def provider(self) -> str:
        return self.model.provider

    def reset(self) -> None:
        for stage in (self.frontend, self.engine, self.synthesis, self.delay) + ((self.key,) if self.key else ()):
            stage.reset()
        self.flushed = False

    # -- public API -------------------------------------------------------------------------------------------
    def process(self, block: np.ndarray) -> np.ndarray:
        return self._mix(*self.process_stems(block))

    def flush(self) -> np.ndarray:
        return self._mix(*self.flush_stems())

    def process_stems(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(samples, channels)`` -> ``(vocals, accompaniment)``, each ``(samples, channels)``, delayed."""
        if self.flushed:
            raise RuntimeError("flush() ended this stream: call reset() to start another")
        block = np.asarray(block, np.float32)
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(f"block must be (samples, {self.channels}), got {block.shape}")
        check_block(block)
        self.engine.process(self.frontend.process(block))
        self.delay.put(np.concatenate(self.synthesis.process(block), axis=1))
        stems = self.delay.take(len(block))
        return self._split(self.key.process(stems) if self.key else stems)

    def flush_stems(self) -> tuple[np.ndarray, np.ndarray]:
        """Finish the stream: the last ``latency_samples`` samples of both stems."""
        if self.flushed:
            raise RuntimeError("flush() was already called: call reset() to start another stream")
        self.engine.process(self.frontend.flush())
        self.engine.flush()
        self.delay.put(np.concatenate(self.synthesis.flush(), axis=1))
        self.flushed = True
        stems = self.delay.take(self.separation_latency)
        if self.key:
            stems = np.concatenate([self.key.process(stems), self.key.flush()])
        return self._split(stems)

    # -- internals --------------------------------------------------------------------------------------------
    def _split(self, stems: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return stems[:, :self.channels], stems[:, self.channels:]

    def _mix(self, vocals: np.ndarray, accompaniment: np.ndarray) -> np.ndarray:
        main, other = (accompaniment, vocals) if self.keep == "accompaniment" else (vocals, accompaniment)
        return main + self.other_gain * other if self.other_gain else np.ascontiguousarray(main)
