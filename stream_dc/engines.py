"""Mask engines of the streaming processor: log-mel frames in, voice masks in a ``MelMaskTrack`` out.

Both are stages (``stages``): ``process(frames)`` takes the next log-mel frames ``(n, n_mels)`` and runs the
network wherever enough of them have arrived; ``flush()`` runs the rest on the frames up to the end of the stream;
``reset()`` starts over; ``lookahead_frames`` is how many analysis frames past a mask frame its mask reads, and
``latency_samples`` the same in samples of the input the frames come from; ``track`` holds the masks, final below
``track.final_end``; ``runs`` counts network runs.

- ``WindowEngine``: 500-frame windows every ``hop`` frames, each deciding ``hop`` frames that lie ``lookahead``
  frames before its end, blended with the next window's masks by complementary raised cosines.
- ``ChunkEngine``: the latency-controlled BLSTM, one chunk of ``hop`` frames at a time with ``lookahead`` frames of
  future context, the forward LSTM states carried from chunk to chunk by the chunked graph.

Centroids are fitted by k-means on the first active bins, seeded with the bundle's reference centroids, and follow
the stream online (``OnlineCentroids``). The bundle's voice-activity gate, when there is one, scales each frame's
voice mask as offline (it reads that frame only, so it adds no look-ahead).
"""
from __future__ import annotations

from collections import deque

import numpy as np

from .activity import VoiceActivity
from .bundle import BundleConfig
from .cluster import OnlineCentroids
from .features import LogMel
from .masks import MelMaskTrack, gated_voice_mask
from .presets import LatencyPreset

CHUNKED_FIT_POINTS = 3000  # active bins gathered before the chunked engine's first k-means (about 20-40 frames)
CHUNKED_PEAK_FRAMES = 500  # the chunked engine's silence threshold follows the loudest bin of the last 4 s


def crossfade_weights(length: int) -> np.ndarray:
    """Rising raised-cosine weights ``(length,)``; ``w + w[::-1] == 1``."""
    return (0.5 - 0.5 * np.cos(np.pi * (np.arange(length) + 0.5) / length)).astype(np.float32)


class _Engine:
    """What both engines share: the buffered features, the mask track, the online centroids."""

    def __init__(self, preset: LatencyPreset, config: BundleConfig, log_mel: LogMel, model, centroids: OnlineCentroids,
                 mask_softness: float, voice_activity: VoiceActivity | None = None, sample_rate: int | None = None,
                 head_use: str = "off"):
        self.preset, self.config, self.log_mel, self.model = preset, config, log_mel, model
        self.head_use = head_use
        self.centroids, self.mask_softness, self.voice_activity = centroids, mask_softness, voice_activity
        self.sample_rate = sample_rate or config.features.sample_rate  # of the input the frames come from
        self.track = MelMaskTrack(self.config.features.n_mels)
        self.reset()

    @property
    def latency_samples(self) -> float:
        features = self.config.features
        return self.lookahead_frames * features.hop_length * self.sample_rate / features.sample_rate

    def reset(self) -> None:
        self.centroids.reset()
        self.track.reset()
        self.features_start = 0  # absolute index of self.features[0]
        self.features = np.zeros((0, self.config.features.n_mels), np.float32)
        self.next_run = 0
        self.runs = 0

    @property
    def available(self) -> int:
        return self.features_start + len(self.features)

    def process(self, frames: np.ndarray) -> None:
        if len(frames):
            self.features = np.concatenate([self.features, frames])
        self._run(total_frames=None)

    def flush(self) -> None:
        total_frames = self.available
        self._run(total_frames)
        self.track.total_frames = total_frames
        self.track.finalise(total_frames)

    def _frames(self, first: int, size: int) -> np.ndarray:
        """Buffered log-mel frames ``[first, first + size)`` ``(size, n_mels)``: both engines read only the stream,
        never before its first frame nor past its last."""
        start = first - self.features_start
        assert start >= 0 and first + size <= self.available, "a window or chunk reached outside the stream"
        return self.features[start:start + size]

    def _discard_before(self, frame: int) -> None:
        drop = min(max(0, frame - self.features_start), len(self.features))
        self.features = self.features[drop:]
        self.features_start += drop

    def _masks(self, embeddings: np.ndarray, normalised_log_mel: np.ndarray, head: np.ndarray | None) -> np.ndarray:
        """Voice masks ``(frames, n_mels)`` of ``(frames, n_mels, dim)`` embeddings (joined with the mask head's
        ``head`` as ``head_use`` says), gated by the frames' voice activity (from the same frames' normalised
        log-mel) when the bundle has a gate."""
        return gated_voice_mask(embeddings, normalised_log_mel, self.centroids.centroids,
                                self.centroids.voice_labels(), self.mask_softness, self.voice_activity, head,
                                self.head_use)

    def _run(self, total_frames: int | None) -> None:
        raise NotImplementedError


class WindowEngine(_Engine):
    """500-frame windows with overlap; see the module docstring. The network is an ``EmbeddingModel``."""

    @property
    def lookahead_frames(self) -> float:
        return self.preset.crossfade / 2 + self.preset.hop + self.preset.lookahead

    def _run(self, total_frames: int | None) -> None:
        preset, size = self.preset, self.config.window_frames
        while True:
            commit = self.next_run * preset.hop
            first = commit + preset.hop + preset.lookahead - size
            if total_frames is None:
                if commit + preset.hop + preset.lookahead > self.available:
                    break
            elif commit >= total_frames:
                break
            self._run_window(self.next_run, first, total_frames)
            self.next_run += 1
            self.track.finalise(commit + preset.hop - preset.crossfade // 2)
            self._discard_before(first + preset.hop)  # the next window's first frame

    def _run_window(self, k: int, first: int, total_frames: int | None) -> None:
        preset = self.preset
        # windows read only the stream: the first ones start at its first frame and, once the stream has ended, the
        # last ones stop at its last, instead of reading silence around it; a window that opens or closes on seconds
        # of silence gives the network a context it never trained on (the graph takes any length)
        end, first = first + self.config.window_frames, max(first, 0)
        if total_frames is not None:
            end = min(end, total_frames)
        log_mel = self._frames(first, end - first)
        normalised = self.log_mel.normalise(log_mel)
        if self.head_use == "off":
            embeddings, head = self.model.embed(normalised[None])[0], None  # (window, n_mels, dim)
        else:
            embeddings, head = (output[0] for output in self.model.run(normalised[None]))
        self.runs += 1
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
        weights = np.ones(hi - lo, np.float32)
        if preset.crossfade:
            ramp = crossfade_weights(preset.crossfade)
            if k > 0:
                weights[:preset.crossfade] = ramp
            weights[-preset.crossfade:] = ramp[::-1]
        if lo < first:  # the first window: no frames before the stream's first
            weights, lo = weights[first - lo:], first
        if hi > end:  # the last windows: no frames past the stream's last
            weights, hi = weights[:end - lo], end
        masks = self._masks(embeddings[lo - first:hi - first], normalised[lo - first:hi - first],
                            None if head is None else head[lo - first:hi - first])
        self.track.accumulate(lo, masks, weights)


class ChunkEngine(_Engine):
    """The latency-controlled BLSTM; see the module docstring. The network is a ``ChunkedEmbeddingModel``."""

    def reset(self) -> None:
        super().reset()
        self.model.reset()
        self.loudness: deque = deque(maxlen=max(1, CHUNKED_PEAK_FRAMES // self.preset.hop))

    @property
    def lookahead_frames(self) -> float:
        return self.preset.hop + self.preset.lookahead

    def _run(self, total_frames: int | None) -> None:
        chunk, lookahead = self.preset.hop, self.preset.lookahead
        while True:
            first = self.next_run * chunk
            if total_frames is None:
                if first + chunk + lookahead > self.available:
                    break
            elif first >= total_frames:
                break
            size, decided = chunk + lookahead, chunk
            if total_frames is not None:  # the stream has ended: the last chunks read up to its last frame only
                size, decided = min(size, total_frames - first), min(chunk, total_frames - first)
            log_mel = self._frames(first, size)
            normalised = self.log_mel.normalise(log_mel)
            if self.head_use == "off":
                embeddings, head = self.model.embed(normalised, decided), None  # (decided, n_mels, dim)
            else:
                embeddings, head = self.model.run(normalised, decided)
            self.runs += 1
            self.loudness.append(float(log_mel.max()))
            active = self.log_mel.active_bins(log_mel[:decided], reference_log_mel=max(self.loudness))
            self.centroids.update(embeddings[active])
            self.track.accumulate(first, self._masks(embeddings, normalised[:decided], head),
                                  np.ones(decided, np.float32))
            self.track.finalise(first + decided)
            self.next_run += 1
            self._discard_before(first + chunk)


def make_engine(preset: LatencyPreset, config: BundleConfig, log_mel: LogMel, model, forgetting: float,
                mask_softness: float, voice_activity: VoiceActivity | None = None,
                sample_rate: int | None = None, head_use: str = "off") -> _Engine:
    """The engine for ``preset`` with its online centroids, for frames of an input at ``sample_rate`` (its latency
    is given in that input's samples). ``forgetting`` is per 100 frames (the balanced hop): the window engine
    applies it per window, the chunked engine per chunk scaled to the chunk's length."""
    if preset.chunked:
        centroids = OnlineCentroids(config.voice_centroid, config.accompaniment_centroid,
                                    forgetting ** (preset.hop / 100), min_points=CHUNKED_FIT_POINTS,
                                    thresholds=config.voice_thresholds, min_update=16)
        return ChunkEngine(preset, config, log_mel, model, centroids, mask_softness, voice_activity, sample_rate,
                           head_use)
    centroids = OnlineCentroids(config.voice_centroid, config.accompaniment_centroid, forgetting,
                                thresholds=config.voice_thresholds)
    return WindowEngine(preset, config, log_mel, model, centroids, mask_softness, voice_activity, sample_rate,
                        head_use)
