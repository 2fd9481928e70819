"""Streaming separation: blocks of any size in, the same number of samples out, delayed by a fixed latency.

The network always sees 500-frame windows. A new window starts every ``hop`` analysis frames and ends
``lookahead`` frames after the frames it decides ("commits"): the commit region of window ``k`` is frames
``[k*hop, (k+1)*hop)``, widened by ``crossfade/2`` on each side, where consecutive windows' masks are blended with
complementary raised-cosine weights (no level dip, no hard switch). Centroids are fitted by k-means on the first
window with enough active bins, seeded with the bundle's reference centroids, and then follow the stream
(``OnlineCentroids``). Synthesis is the offline one (``ProjectionSynthesis``): per channel, input rate, full band.

``latency_samples`` is computed from the geometry: output sample ``n`` depends on input up to
``n + latency_samples``, and ``process`` returns the separated signal delayed by exactly that many samples.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from .bundle import Bundle, load_bundle
from .cluster import OnlineCentroids
from .features import LogMel
from .frontend import AnalysisFrontEnd
from .inference import ChunkedEmbeddingModel, EmbeddingModel
from .masks import MelMaskTrack, cluster_voice_mask
from .resample import Resampler
from .stft import StftGeometry
from .synthesis import ProjectionSynthesis


@dataclass(frozen=True)
class LatencyPreset:
    """Window schedule in analysis frames (8 ms each)."""

    name: str
    hop: int  # frames decided by each window (each chunk, for the chunked engine)
    lookahead: int  # frames of future context after the decided frames
    crossfade: int  # frames blended between consecutive windows (even)
    description: str = ""
    chunked: bool = False  # the latency-controlled BLSTM (the bundle's chunked graph) instead of 500-frame windows

    def validate(self, window_frames: int) -> None:
        if self.chunked:
            if self.hop < 1 or self.lookahead < 1 or self.crossfade:
                raise ValueError("a chunked schedule needs chunk >= 1, lookahead >= 1 and no crossfade")
            return
        if self.hop < 1 or self.lookahead < 0 or self.crossfade < 0 or self.crossfade % 2:
            raise ValueError("hop must be >= 1, lookahead >= 0 and crossfade an even number >= 0")
        if self.crossfade > self.hop:
            raise ValueError("crossfade must not exceed hop")
        if self.crossfade // 2 > self.lookahead and self.crossfade:
            raise ValueError("crossfade/2 must not exceed lookahead")
        if self.hop + self.lookahead + self.crossfade // 2 > window_frames:
            raise ValueError(f"hop + lookahead + crossfade/2 must fit in the {window_frames}-frame window")


PRESETS = {
    "paper": LatencyPreset("paper", hop=500, lookahead=0, crossfade=0,
                           description="non-overlapping 500-frame windows, as the paper's test procedure"),
    "balanced": LatencyPreset("balanced", hop=100, lookahead=100, crossfade=20,
                              description="0.8 s hop, 0.8 s look-ahead"),
    "low": LatencyPreset("low", hop=40, lookahead=40, crossfade=16,
                         description="0.32 s hop, 0.32 s look-ahead"),
    "live": LatencyPreset("live", hop=8, lookahead=16, crossfade=0, chunked=True,
                          description="latency-controlled BLSTM: 64 ms chunks, 128 ms look-ahead"),
}
KEEP = ("accompaniment", "vocals")


def get_preset(latency: str | LatencyPreset) -> LatencyPreset:
    """A named preset, or a custom schedule written ``hop=H,lookahead=L[,crossfade=X]`` in 8 ms frames."""
    if isinstance(latency, LatencyPreset):
        return latency
    if latency in PRESETS:
        return PRESETS[latency]
    if "=" in latency:
        try:
            values = {k.strip(): int(v) for k, v in (item.split("=") for item in latency.split(","))}
            if "chunk" in values:
                chunk, lookahead = values.pop("chunk"), values.pop("lookahead")
                if values:
                    raise KeyError(", ".join(values))
                return LatencyPreset(latency, hop=chunk, lookahead=lookahead, crossfade=0, chunked=True,
                                     description="custom chunked")
            hop, lookahead = values.pop("hop"), values.pop("lookahead")
            crossfade = values.pop("crossfade", min(20, hop, 2 * lookahead) // 2 * 2)
            if values:
                raise KeyError(", ".join(values))
        except (KeyError, ValueError):
            raise ValueError(f"custom latency {latency!r}: write hop=FRAMES,lookahead=FRAMES[,crossfade=FRAMES] or "
                             "chunk=FRAMES,lookahead=FRAMES") from None
        return LatencyPreset(latency, hop=hop, lookahead=lookahead, crossfade=crossfade, description="custom")
    raise ValueError(f"unknown latency preset {latency!r}: choose one of {', '.join(PRESETS)} "
                     "or write hop=FRAMES,lookahead=FRAMES") from None


CHUNKED_FIT_POINTS = 3000  # active bins gathered before the chunked engine's first k-means (about 20-40 frames)
CHUNKED_PEAK_FRAMES = 500  # the chunked engine's silence threshold follows the loudest bin of the last 4 s


class RunningPeak:
    """The largest of the last ``length`` values (a loudness reference that forgets)."""

    def __init__(self, length: int):
        self.values: deque = deque(maxlen=max(1, length))

    def update(self, value: float) -> float:
        self.values.append(value)
        return max(self.values)


def crossfade_weights(length: int) -> np.ndarray:
    """Rising raised-cosine weights ``(length,)``; ``w + w[::-1] == 1``."""
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(length) + 0.5) / length)).astype(np.float32)


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
                 mask_softness: float | None = None):
        if sample_rate < 1000 or channels < 1:
            raise ValueError("sample_rate must be >= 1000 Hz and channels >= 1")
        if keep not in KEEP:
            raise ValueError(f"keep must be one of {', '.join(KEEP)}")
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        config = self.bundle.config
        self.preset = get_preset(latency)
        self.preset.validate(config.window_frames)
        # the network runner for the preset's engine: windows (EmbeddingModel) or chunks (ChunkedEmbeddingModel)
        self.model = model or (ChunkedEmbeddingModel if self.preset.chunked else EmbeddingModel)(self.bundle, device)
        self.sample_rate, self.channels, self.keep = int(sample_rate), int(channels), keep
        self.other_gain = 0.0 if vocal_gain_db is None else float(10.0 ** (vocal_gain_db / 20.0))
        self.log_mel = LogMel(config.features, config.feature_mean, config.feature_std)
        self.forgetting = forgetting
        self.mask_softness = config.mask_softness if mask_softness is None else float(mask_softness)
        self.latency_samples = self._latency()
        self.reset()

    # -- geometry ---------------------------------------------------------------------------------------------
    def _latency(self) -> int:
        """Input samples beyond output sample ``n`` that its computation reads (an upper bound over all ``n``)."""
        features, preset = self.bundle.config.features, self.preset
        native = StftGeometry.for_rate(self.sample_rate)
        rate_ratio = self.sample_rate / features.sample_rate
        context = preset.crossfade / 2 + preset.hop + preset.lookahead  # analysis frames beyond a mask frame
        lookahead_16k = context * features.hop_length + features.n_fft // 2 - 1
        resampler_taps = Resampler(self.sample_rate, features.sample_rate, 1).taps_after
        bound = max(native.n_fft - 1, native.n_fft / 2 + lookahead_16k * rate_ratio + resampler_taps)
        return int(math.ceil(bound - 1e-9))

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency_samples / self.sample_rate

    @property
    def provider(self) -> str:
        return self.model.provider

    def reset(self) -> None:
        config = self.bundle.config
        self.frontend = AnalysisFrontEnd(self.log_mel, self.sample_rate)
        self.synthesis = ProjectionSynthesis(config.features, self.sample_rate, self.channels)
        if self.preset.chunked:  # forgetting is per 100 frames, as the balanced preset's hop
            forgetting, first_fit, per_update = self.forgetting ** (self.preset.hop / 100), CHUNKED_FIT_POINTS, 16
        else:
            forgetting, first_fit, per_update = self.forgetting, 64, 64
        self.centroids = OnlineCentroids(config.voice_centroid, config.accompaniment_centroid, forgetting,
                                         min_points=first_fit, thresholds=config.voice_thresholds,
                                         min_update=per_update)
        if self.preset.chunked:
            self.model.reset()
            self.loudness = RunningPeak(CHUNKED_PEAK_FRAMES // self.preset.hop)
        self.track = MelMaskTrack(config.features.n_mels)
        self.features_start = 0  # absolute index of self.features[0]
        self.features = np.zeros((0, config.features.n_mels), np.float32)
        self.next_window = 0
        self.n_in = 0
        self.delay_left = self.latency_samples  # zeros still to emit before the first separated sample
        self.ready_voice: list[np.ndarray] = []
        self.ready_accompaniment: list[np.ndarray] = []
        self.ready_count = 0
        self.windows_run = 0
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
        self._append_features(self.frontend.push(block))
        self._run_windows(total_frames=None)
        self.synthesis.push(block)
        self._collect()
        return self._emit(len(block))

    def flush_stems(self) -> tuple[np.ndarray, np.ndarray]:
        """Finish the stream: the last ``latency_samples`` samples of both stems."""
        if self.flushed:
            raise RuntimeError("flush() was already called: call reset() to start another stream")
        self._append_features(self.frontend.finish(self.n_in))
        total = self.frontend.total_frames
        self._run_windows(total_frames=total)
        self.track.total_frames = total
        self.track.finalise(total)
        self.synthesis.finish(self.n_in)
        self._collect()
        self.flushed = True
        return self._emit(self.latency_samples)

    # -- internals --------------------------------------------------------------------------------------------
    def _mix(self, vocals: np.ndarray, accompaniment: np.ndarray) -> np.ndarray:
        main, other = (accompaniment, vocals) if self.keep == "accompaniment" else (vocals, accompaniment)
        return main + self.other_gain * other if self.other_gain else main

    def _append_features(self, frames: np.ndarray) -> None:
        if len(frames):
            self.features = np.concatenate([self.features, frames])

    def _frames(self, first: int, size: int, total_frames: int | None) -> np.ndarray:
        """Log-mel frames ``[first, first + size)``; frames before 0 or past the end are silence."""
        out = np.repeat(self.log_mel.silence_log_mel()[None], size, axis=0)
        lo, hi = max(first, self.features_start), first + size
        hi = min(hi, self.features_start + len(self.features))
        if total_frames is not None:
            hi = min(hi, total_frames)
        if hi > lo:
            out[lo - first:hi - first] = self.features[lo - self.features_start:hi - self.features_start]
        return out

    def _run_windows(self, total_frames: int | None) -> None:
        if self.preset.chunked:
            self._run_chunks(total_frames)
            return
        preset, size = self.preset, self.bundle.config.window_frames
        available = self.features_start + len(self.features)
        while True:
            k = self.next_window
            commit = k * preset.hop
            first = commit + preset.hop + preset.lookahead - size
            if total_frames is None:
                if commit + preset.hop + preset.lookahead > available:
                    break
            elif commit >= total_frames:
                break
            self._run_window(k, first, total_frames)
            self.next_window += 1
            self.track.finalise(commit + preset.hop - preset.crossfade // 2)
            # features before the next window's first frame are no longer needed
            drop = min(max(0, first + preset.hop - self.features_start), len(self.features))
            self.features = self.features[drop:]
            self.features_start += drop

    def _run_chunks(self, total_frames: int | None) -> None:
        """The chunked engine: chunk ``k`` decides frames ``[k*chunk, (k+1)*chunk)`` once its look-ahead has
        arrived (at the end of the stream the missing frames are silence)."""
        chunk, lookahead = self.preset.hop, self.preset.lookahead
        available = self.features_start + len(self.features)
        while True:
            first = self.next_window * chunk
            if total_frames is None:
                if first + chunk + lookahead > available:
                    break
            elif first >= total_frames:
                break
            log_mel = self._frames(first, chunk + lookahead, total_frames)
            decided = chunk if total_frames is None else min(chunk, total_frames - first)
            embeddings = self.model.embed(self.log_mel.normalise(log_mel), decided)  # (decided, n_mels, dim)
            self.windows_run += 1
            peak = self.loudness.update(float(log_mel.max()))
            active = self.log_mel.active_bins(log_mel[:decided], reference_log_mel=peak)
            self.centroids.update(embeddings[active])
            masks = cluster_voice_mask(embeddings, self.centroids.centroids, self.centroids.voice_labels(),
                                       self.mask_softness)
            self.track.accumulate(first, masks, np.ones(decided, np.float32))
            self.track.finalise(first + decided)
            self.next_window += 1
            drop = min(max(0, first + chunk - self.features_start), len(self.features))
            self.features = self.features[drop:]
            self.features_start += drop

    def _run_window(self, k: int, first: int, total_frames: int | None) -> None:
        preset = self.preset
        log_mel = self._frames(first, self.bundle.config.window_frames, total_frames)
        embeddings = self.model.embed(self.log_mel.normalise(log_mel)[None])[0]  # (window, n_mels, dim)
        self.windows_run += 1
        commit = k * preset.hop
        half = preset.crossfade // 2
        active = self.log_mel.active_bins(log_mel)
        if not self.centroids.fitted:
            self.centroids.update(embeddings[active])
        else:
            region = slice(commit - first, commit + preset.hop - first)
            self.centroids.update(embeddings[region][active[region]])
        # masks of the commit region widened by half the crossfade on each side
        lo, hi = commit - half, commit + preset.hop + half
        masks = cluster_voice_mask(embeddings[lo - first:hi - first], self.centroids.centroids,
                                   self.centroids.voice_labels(), self.mask_softness)
        weights = np.ones(hi - lo, np.float32)
        if preset.crossfade:
            ramp = crossfade_weights(preset.crossfade)
            if k > 0:
                weights[:preset.crossfade] = ramp
            weights[-preset.crossfade:] = ramp[::-1]
        self.track.accumulate(lo, masks, weights)

    def _collect(self) -> None:
        voice, accompaniment = self.synthesis.synthesise(self.track)
        if len(voice):
            self.ready_voice.append(voice)
            self.ready_accompaniment.append(accompaniment)
            self.ready_count += len(voice)
        oldest = self.synthesis.oldest_position()
        if oldest is not None:
            self.track.discard_before(int(np.floor(oldest)))

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
