"""Offline separation: a whole signal in, vocals and accompaniment out.

The paper's test-time procedure: the log-mel features are cut into 500-frame windows, the network embeds every
time-frequency bin, k-means++ fits two centroids, every bin joins its nearest centroid, and each cluster becomes voice
or accompaniment by the bundle's reference centroids. When the bundle has a voice-activity gate (``activity.py``),
each frame's voice mask is scaled by it. Where the paper pads the last window with silence, the last window here
ends on the last frame and decides the frames the one before it left (a signal shorter than a window is one shorter
window): a window that closes on seconds of silence gives the network a context it never trained on, and the graph
takes any length.

A two-channel input is analysed three times, as its downmix and as each channel alone, each with its own k-means
fit, labels and gate, and its voice masks are the mean of the three: a voice the mix places off centre, or a
channel where the accompaniment hides it less, still counts. The masks then apply on a 64 ms STFT
(``stft.OFFLINE_WINDOW_HOPS``), whose finer frequency resolution separates harmonics better than streaming's 32 ms.

Memory stays bounded on long inputs: audio is read in blocks once per analysis and once for synthesis; only one
analysis's log-mel features and two masks of every frame are held at a time (about 0.3 GB each for an hour), and
k-means is fitted on a sample of windows whose embeddings are kept for the assignment pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .audio import AudioSource, InputError, check_block, check_source  # noqa: F401 (InputError: API)
from .bundle import Bundle, BundleError, load_bundle
from .cluster import evenly_spread, kmeans, nearest, voice_clusters
from .features import LogMel
from .frontend import AnalysisFrontEnd
from .inference import EmbeddingModel, thread_setting
from .keyshift import AlignedKeyShift
from .masks import MelMaskTrack, gated_voice_mask
from .options import SeparationOptions
from .parallel import SlicePool, cores
from .synthesis import make_synthesis


@dataclass
class Analysis:
    """What an offline run computed, kept for pictures: the downmix's log-mel and the final voice masks ``(frames,
    n_mels)``, the downmix's fitted centroids ``(2, dim)`` with their voice flags, and a sample of the embeddings they
    were fitted on with its cluster labels, ``(n, dim)`` and ``(n,)``."""

    log_mel: np.ndarray
    masks: np.ndarray
    centroids: np.ndarray
    voice_flags: np.ndarray
    sample: np.ndarray
    sample_labels: np.ndarray


class Separator:
    """Owns the whole offline job: features, network, clustering and synthesis.

    ``separate(audio, sample_rate)`` takes ``(samples,)`` or ``(samples, channels)`` float audio at any rate and
    returns ``(vocals, accompaniment)`` of the same shape. The options are a ``SeparationOptions`` (``options``)
    with any of its fields given by name changed (``wiener=False``); ``bundle`` (a loaded bundle or a folder)
    overrides the options' model. ``mode='stream'`` runs the streaming processor instead (with its ``latency``
    preset) and trims its latency, so the result aligns with the input. Offline, the synthesis shares its work among
    ``options.threads`` threads (default one per core); the commands also limit BLAS to one thread, whose own
    threads would compete with them (a program can do the same with ``threadpoolctl.threadpool_limits(1,
    "blas")``). Offline only: ``wiener`` applies the
    multichannel Wiener post-filter (``stream_dc.wiener``), ``channel_masks`` averages a two-channel input's masks
    over its downmix and each channel, and ``synthesis_window_ms`` sets the synthesis STFT's window. ``key``
    shifts both stems by that many semitones, keeping their length.
    """

    def __init__(self, bundle: Bundle | str | None = None, options: SeparationOptions | None = None, *,
                 fit_windows: int = 32, fit_points: int = 40_000, batch_size: int | None = None, seed: int = 0,
                 keep_analysis: bool = False, **changes):
        options = (options or SeparationOptions()).changed(**changes)
        if bundle is not None and not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle)
        self.resolved = options.resolve(bundle)
        self.options, self.bundle = options, self.resolved.bundle
        self.model = EmbeddingModel(self.bundle, options.device, options.threads)
        self.pool = SlicePool(thread_setting(options.threads, cores()))  # offline synthesis's numpy work
        _check_head(self.model, self.resolved.head_use, self.bundle)
        self.chunk_model = None  # ChunkedEmbeddingModel, for --mode stream with a chunked preset
        config = self.bundle.config
        self.log_mel = LogMel(config.features, config.feature_mean, config.feature_std)
        self.mode, self.reconstruction = options.mode, options.reconstruction
        # windows per network run: a GPU takes many at once (more would not fit a laptop GPU's memory at 500 frames).
        # On the CPU the int8 graph quantises its inputs over the whole batch, so the batch size changes the output:
        # 8 ran 8% faster than 4 on 2 cores, but moved one report instrumental from 0% to 2.9% of its energy
        # removed, so the CPU keeps the 4 its figures were measured with
        batch_size = batch_size or (16 if self.model.device_name == "cuda" else 4)
        self.fit_windows, self.fit_points, self.batch_size, self.seed = fit_windows, fit_points, batch_size, seed
        self.keep_analysis = keep_analysis
        self.mask_softness = self.resolved.mask_softness
        self.voice_activity, self.refiner = self.resolved.voice_activity, self.resolved.refiner
        self.head_use = self.resolved.head_use
        self.wiener, self.channel_masks = options.wiener, options.channel_masks
        self.window_hops = options.window_hops
        self.analysis: Analysis | None = None  # the last offline run's, when keep_analysis is set
        self._fit: tuple | None = None

    @property
    def provider(self) -> str:
        return self.model.provider

    # -- public API -------------------------------------------------------------------------------------------
    def separate(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        audio = np.asarray(audio, np.float32)
        source = AudioSource.from_array(audio, sample_rate)
        vocals, accompaniment = [], []
        self.separate_source(source, lambda v, a: (vocals.append(v), accompaniment.append(a)))
        vocals, accompaniment = np.concatenate(vocals), np.concatenate(accompaniment)
        if audio.ndim == 1:
            vocals, accompaniment = vocals[:, 0], accompaniment[:, 0]
        return vocals, accompaniment

    def separate_source(self, source: AudioSource, write: Callable[[np.ndarray, np.ndarray], None]) -> None:
        """Separate ``source``, handing ``(vocals, accompaniment)`` blocks to ``write`` in order."""
        check_source(source)
        if self.mode == "stream":
            self._separate_streaming(source, write)
            return
        masks, n_samples = self.offline_masks(source)
        synthesis = make_synthesis(self.reconstruction, self.bundle.config.features, source.sample_rate,
                                   source.channels, MelMaskTrack.from_array(masks), self.refiner, self.wiener,
                                   self.window_hops, self.pool)
        del masks  # the synthesis discards the frames it has read
        if self.options.key:
            write = _KeyChange(self.options.key, source.sample_rate, source.channels, write)
        for block in source.blocks():
            write(*synthesis.process(block))
        write(*synthesis.flush())
        if self.options.key:
            write.flush()

    # -- offline steps ----------------------------------------------------------------------------------------
    def offline_masks(self, source: AudioSource) -> tuple[np.ndarray, int]:
        """The voice masks ``(frames, n_mels)`` of the whole source, averaged over its downmix and each of two
        channels when ``channel_masks`` is set, and its length in samples."""
        log_mel, n_samples = self.analyse(source)
        masks = self.voice_masks(log_mel)
        kept = (log_mel, self._fit) if self.keep_analysis and self._fit is not None else None  # the downmix's
        del log_mel
        if self.channel_masks and source.channels == 2:
            for channel in range(2):
                self.voice_masks(self.analyse(source, channel)[0], masks)  # added to the downmix's
            masks /= 3.0
        if kept is not None:
            self.analysis = Analysis(kept[0], masks, *kept[1])
        return masks, n_samples

    def analyse(self, source: AudioSource, channel: int | None = None) -> tuple[np.ndarray, int]:
        """Log-mel features ``(frames, n_mels)`` of the whole source's downmix (or of one ``channel``) and its
        length in samples (counted, since compressed formats may report an approximate length)."""
        frontend = AnalysisFrontEnd(self.log_mel, source.sample_rate)
        expected = min(frontend.frames_for(source.frames), MAX_EXPECTED_FRAMES)  # a damaged header may say anything
        log_mel = _GrowingRows(self.log_mel.config.n_mels, expected)
        for block in source.blocks():
            log_mel.add(frontend.process(check_block(block) if channel is None else block[:, channel:channel + 1]))
        if frontend.n_in == 0:
            raise InputError("the audio is empty (no samples)")
        log_mel.add(frontend.flush())
        return log_mel.rows(), frontend.n_in

    def spans(self, frames: int) -> list[tuple[int, int, int]]:
        """``(start, first, end)`` of each window over ``frames`` frames: the network reads ``min(window_frames,
        frames)`` frames from ``start`` and the window decides frames ``[first, end)``."""
        size = self.bundle.config.window_frames
        last_start = max(0, frames - size)
        return [(min(first, last_start), first, min(first + size, frames)) for first in range(0, frames, size)]

    def window(self, log_mel: np.ndarray, start: int) -> np.ndarray:
        """The normalised window ``(min(window_frames, frames - start), n_mels)`` from frame ``start``."""
        return self.log_mel.normalise(log_mel[start:start + self.bundle.config.window_frames])

    def embed(self, windows: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Embeddings ``(frames, n_mels, dim)`` of each window ``(frames, n_mels)`` (all of one length), run in
        batches, each with the mask head's voice mask ``(frames, n_mels)`` when it is used (else None)."""
        out = []
        for i in range(0, len(windows), self.batch_size):
            batch = np.stack(windows[i:i + self.batch_size])
            if self.head_use == "off":
                out.extend((embeddings, None) for embeddings in self.model.embed(batch))
            else:
                embeddings, masks = self.model.run(batch)
                out.extend(zip(embeddings, masks))
        return out

    def voice_masks(self, log_mel: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """Voice masks ``(frames, n_mels)`` float32 for the whole signal's log-mel ``(frames, n_mels)``, added to
        ``masks`` when given (one array for several analyses, not one each: an hour's is 0.27 GB)."""
        config = self.bundle.config
        frames = len(log_mel)
        masks = np.zeros_like(log_mel, dtype=np.float32) if masks is None else masks
        active = self.log_mel.active_bins(log_mel)
        self._fit = None
        if active.sum() < 2:  # silence in, silence out
            return masks
        spans = self.spans(frames)
        # fit on an evenly spread sample of the windows that hold active bins; keep their embeddings
        candidates = [i for i, (_, first, end) in enumerate(spans) if active[first:end].any()]
        fit_index = evenly_spread(candidates, self.fit_windows)
        cached = self._embed_windows(log_mel, spans, fit_index)
        rng = np.random.default_rng(self.seed)
        points = self._fit_sample(cached, [active[spans[i][1]:spans[i][2]] for i in cached], rng)
        centroids = kmeans(points, 2, seed=self.seed)
        voice_flags = voice_clusters(centroids, config.voice_centroid, config.accompaniment_centroid,
                                     *config.voice_thresholds)
        if self.keep_analysis:
            sample = points[rng.choice(len(points), min(len(points), 4000), replace=False)]
            self._fit = (centroids, voice_flags, sample, nearest(sample, centroids))
        self._assign(cached, spans, masks, centroids, voice_flags)
        pending = [i for i in range(len(spans)) if i not in fit_index]
        for group in range(0, len(pending), self.batch_size):
            self._assign(self._embed_windows(log_mel, spans, pending[group:group + self.batch_size]), spans, masks,
                         centroids, voice_flags)
        return masks

    def _fit_sample(self, cached: dict, actives: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
        """The embeddings ``(n, dim)`` that k-means fits: those of the active bins (``actives``, each ``(decided,
        n_mels)`` bool) of the windows in ``cached`` (see ``_embed_windows``), in order, or ``fit_points`` of them
        drawn at random (gathered from each window, not copied whole first)."""
        embeddings = [entry[0].reshape(-1, entry[0].shape[-1]) for entry in cached.values()]
        positions = [np.flatnonzero(active) for active in actives]  # the active bins of each window
        counts = np.array([len(p) for p in positions])
        if counts.sum() <= self.fit_points:
            return np.concatenate([e[p] for e, p in zip(embeddings, positions)])
        chosen = rng.choice(int(counts.sum()), self.fit_points, replace=False)  # indices over all active bins
        offsets = np.concatenate([[0], np.cumsum(counts)])
        window = np.searchsorted(offsets, chosen, side="right") - 1
        points = np.empty((len(chosen), embeddings[0].shape[1]), np.float32)
        for w, (e, p) in enumerate(zip(embeddings, positions)):
            taken = window == w
            points[taken] = e[p[chosen[taken] - offsets[w]]]
        return points

    def _embed_windows(self, log_mel: np.ndarray, spans: list, indices: list[int]) -> dict:
        """Window index -> the embeddings ``(decided, n_mels, dim)``, normalised log-mel ``(decided, n_mels)`` and
        head mask ``(decided, n_mels)`` (or None) of the frames it decides, for the windows ``indices`` of
        ``spans``."""
        windows = [self.window(log_mel, spans[i][0]) for i in indices]
        decided = [slice(spans[i][1] - spans[i][0], spans[i][2] - spans[i][0]) for i in indices]
        return {i: (embeddings[d], window[d], None if head is None else head[d]) for i, (embeddings, head), window, d
                in zip(indices, self.embed(windows), windows, decided)}

    def _assign(self, cached: dict, spans: list, masks: np.ndarray, centroids, voice_flags) -> None:
        """Masks of the frames the windows in ``cached`` decide (see ``_embed_windows``), gated by the frames' voice
        activity."""
        for i in list(cached):
            _, first, end = spans[i]
            embeddings, normalised, head = cached.pop(i)
            masks[first:end] += gated_voice_mask(embeddings, normalised, centroids, voice_flags, self.mask_softness,
                                                self.voice_activity, head, self.head_use)

    # -- streaming mode ---------------------------------------------------------------------------------------
    def _separate_streaming(self, source: AudioSource, write) -> None:
        from .stages import Aligner
        from .stream import StreamProcessor

        chunked = self.resolved.preset.chunked  # the chunked engine runs its own graph, loaded when needed
        processor = StreamProcessor(self.bundle, source.sample_rate, source.channels, self.options,
                                    model=self.chunk_model if chunked else self.model)
        if chunked:
            self.chunk_model = processor.model
        aligner = Aligner(processor.latency_samples)
        for block in source.blocks():
            write(*aligner.trim(*processor.process_stems(block)))
        write(*aligner.trim(*processor.flush_stems()))


MAX_EXPECTED_FRAMES = 2 * 3600 * 125  # two hours of 8 ms frames: what a header's length is trusted with at most


class _GrowingRows:
    """Rows ``(n, width)`` float32 appended in order into one array allocated at the expected count (grown by half
    when more come), so that an hour's features are never held twice, as parts and joined."""

    def __init__(self, width: int, expected: int):
        self.values, self.count = np.empty((max(expected, 1), width), np.float32), 0

    def add(self, rows: np.ndarray) -> None:
        end = self.count + len(rows)
        if end > len(self.values):
            grown = np.empty((max(end, len(self.values) * 3 // 2), self.values.shape[1]), np.float32)
            grown[:self.count] = self.values[:self.count]
            self.values = grown
        self.values[self.count:end] = rows
        self.count = end

    def rows(self) -> np.ndarray:
        return self.values[:self.count]


def _check_head(model, head_use: str, bundle: Bundle) -> None:
    """Refuse (BundleError) a mask head that the network's graph does not output."""
    if head_use != "off" and not model.has_mask:
        raise BundleError(f"{bundle.directory}: its config.json names a mask head that its graph has no output for")


class _KeyChange:
    """A ``write`` that shifts both stems' key first, keeping their length (one ``AlignedKeyShift`` over both, as
    one signal of twice the channels); ``flush()`` hands over its tail."""

    def __init__(self, semitones: float, sample_rate: int, channels: int, write):
        self.shift, self.channels, self.write = AlignedKeyShift(sample_rate, 2 * channels, semitones), channels, write

    def __call__(self, vocals: np.ndarray, accompaniment: np.ndarray) -> None:
        self._hand_on(self.shift.process(np.concatenate([vocals, accompaniment], axis=1)))

    def flush(self) -> None:
        self._hand_on(self.shift.flush())

    def _hand_on(self, stems: np.ndarray) -> None:
        self.write(stems[:, :self.channels], stems[:, self.channels:])
