"""Streaming separation: blocks of any size in, the same number of samples out, delayed by a fixed latency.

``StreamProcessor`` composes three stages: the analysis front end (``frontend``: resampling to 16 kHz, STFT,
log-mel), a mask engine (``engines``: 500-frame windows, or the chunked latency-controlled BLSTM for the ``live``
preset) and the synthesis (``ProjectionSynthesis``: each channel's STFT at the input rate, full band, masked and
overlap-added). Each stage says how far ahead it reads, and ``latency_samples`` adds these up: output sample
``n`` depends on input up to ``n + latency_samples``, and ``process`` returns the separated signal delayed by
exactly that many samples.
"""
from __future__ import annotations

import math

import numpy as np

from .bundle import Bundle, load_bundle
from .engines import crossfade_weights, make_engine  # noqa: F401 (crossfade_weights: part of this module's API)
from .features import LogMel
from .frontend import AnalysisFrontEnd
from .inference import ChunkedEmbeddingModel, EmbeddingModel
from .presets import KEEP, PRESETS, LatencyPreset, get_preset  # noqa: F401 (PRESETS, LatencyPreset: API)
from .stft import StftGeometry
from .synthesis import ProjectionSynthesis


class StreamProcessor:
    """Plugin-style separator: ``process(block)`` takes float32 ``(samples, channels)`` of any length and returns
    the same shape, ``flush()`` returns the last ``latency_samples`` samples, ``reset()`` starts over.

    The output is ``accompaniment + vocal_gain * vocals`` (``keep='accompaniment'``, the vocal remover) or
    ``vocals + vocal_gain * accompaniment`` (``keep='vocals'``); ``vocal_gain_db=None`` mixes none of the other
    stem in. ``process_stems``/``flush_stems`` return both stems instead.
    """

    def __init__(self, bundle: Bundle | str | None = None, sample_rate: int = 44100, channels: int = 2,
                 latency: str | LatencyPreset = "balanced", device: str = "auto", keep: str = "accompaniment",
                 vocal_gain_db: float | None = None, model: EmbeddingModel | None = None, forgetting: float = 0.7,
                 mask_softness: float | None = None, threads: int | None = None, voice_gate: bool = True,
                 refine: bool = True):
        if sample_rate < 1000 or channels < 1:
            raise ValueError("sample_rate must be >= 1000 Hz and channels >= 1")
        if keep not in KEEP:
            raise ValueError(f"keep must be one of {', '.join(KEEP)}")
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        config = self.bundle.config
        self.preset = get_preset(latency)
        self.preset.validate(config.window_frames)
        # the network runner for the preset's engine: windows (EmbeddingModel) or chunks (ChunkedEmbeddingModel)
        self.model = model or (ChunkedEmbeddingModel if self.preset.chunked else EmbeddingModel)(self.bundle, device,
                                                                                                threads)
        self.sample_rate, self.channels, self.keep = int(sample_rate), int(channels), keep
        self.other_gain = 0.0 if vocal_gain_db is None else float(10.0 ** (vocal_gain_db / 20.0))
        self.log_mel = LogMel(config.features, config.feature_mean, config.feature_std)
        self.mask_softness = config.mask_softness if mask_softness is None else float(mask_softness)
        self.frontend = AnalysisFrontEnd(self.log_mel, self.sample_rate)
        self.voice_activity = config.voice_activity if voice_gate else None
        self.refiner = config.mask_refiner if refine else None
        self.engine = make_engine(self.preset, config, self.log_mel, self.model, forgetting, self.mask_softness,
                                  self.voice_activity)
        self.latency_samples = self._latency()
        self.reset()  # (the front end and the engine start fresh already; this sets up the rest)

    # -- geometry ---------------------------------------------------------------------------------------------
    def _latency(self) -> int:
        """Input samples beyond output sample ``n`` that its computation reads (an upper bound over all ``n``): the
        stages' look-aheads added up, in input samples. Synthesis reads up to the centre of the last native frame
        that covers ``n`` (half a window), whose mask needs the engine's context of analysis frames, each of which
        needs the analysis front end's look-ahead; and the frame itself reaches a whole window beyond ``n``."""
        features = self.bundle.config.features
        native = StftGeometry.for_rate(self.sample_rate)
        engine = self.engine.lookahead_frames * features.hop_length * self.sample_rate / features.sample_rate
        bound = max(native.n_fft - 1, native.n_fft / 2 + engine + self.frontend.lookahead_samples)
        return int(math.ceil(bound - 1e-9))

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
        self.frontend.reset()
        self.engine.reset()
        self.synthesis = ProjectionSynthesis(self.bundle.config.features, self.sample_rate, self.channels, self.refiner)
        self.n_in = 0
        self.delay_left = self.latency_samples  # zeros still to emit before the first separated sample
        self.ready_voice: list[np.ndarray] = []
        self.ready_accompaniment: list[np.ndarray] = []
        self.ready_count = 0
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
        if not np.all(np.isfinite(block)):
            block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
        self.n_in += len(block)
        self.engine.process(self.frontend.push(block))
        self.synthesis.push(block)
        self._collect()
        return self._emit(len(block))

    def flush_stems(self) -> tuple[np.ndarray, np.ndarray]:
        """Finish the stream: the last ``latency_samples`` samples of both stems."""
        if self.flushed:
            raise RuntimeError("flush() was already called: call reset() to start another stream")
        self.engine.process(self.frontend.finish(self.n_in))
        self.engine.flush(self.frontend.total_frames)
        self.synthesis.finish(self.n_in)
        self._collect()
        self.flushed = True
        return self._emit(self.latency_samples)

    # -- internals --------------------------------------------------------------------------------------------
    def _mix(self, vocals: np.ndarray, accompaniment: np.ndarray) -> np.ndarray:
        main, other = (accompaniment, vocals) if self.keep == "accompaniment" else (vocals, accompaniment)
        return main + self.other_gain * other if self.other_gain else main

    def _collect(self) -> None:
        voice, accompaniment = self.synthesis.synthesise(self.engine.track)
        if len(voice):
            self.ready_voice.append(voice)
            self.ready_accompaniment.append(accompaniment)
            self.ready_count += len(voice)
        oldest = self.synthesis.oldest_position()
        if oldest is not None:
            self.engine.track.discard_before(int(np.floor(oldest)))

    def _emit(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        zeros = min(self.delay_left, count)
        self.delay_left -= zeros
        wanted = count - zeros
        if wanted > self.ready_count:
            raise RuntimeError(f"internal latency error: {wanted} samples due, {self.ready_count} ready")
        voice = np.concatenate(self.ready_voice) if self.ready_voice else np.zeros((0, self.channels), np.float32)
        accompaniment = (np.concatenate(self.ready_accompaniment) if self.ready_accompaniment
                         else np.zeros((0, self.channels), np.float32))
        self.ready_voice, self.ready_accompaniment = [voice[wanted:]], [accompaniment[wanted:]]
        self.ready_count -= wanted
        pad = np.zeros((zeros, self.channels), np.float32)
        return np.concatenate([pad, voice[:wanted]]), np.concatenate([pad, accompaniment[:wanted]])


class Aligner:
    """Drops the first ``latency`` samples of a delayed stream, so that what remains (with the processor's
    flushed tail) lines up with the input sample for sample: ``trim(*blocks)`` trims one or more parallel
    ``(samples, channels)`` blocks alike."""

    def __init__(self, latency: int):
        self.to_skip = latency

    def trim(self, *blocks: np.ndarray):
        skip = min(self.to_skip, len(blocks[0]))
        self.to_skip -= skip
        trimmed = tuple(block[skip:] for block in blocks)
        return trimmed if len(trimmed) > 1 else trimmed[0]
