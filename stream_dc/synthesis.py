"""Synthesis: the mixture and its mel masks in, the two stems out, block by block.

``ProjectionSynthesis`` (the default) masks every channel's STFT at the input's own rate, full band, and
resynthesises by overlap-add: the stems keep the mixture's fine structure and sum back to the mixture. Its window
is 32 ms when streaming (half a window is latency) and 64 ms offline (``stft.OFFLINE_WINDOW_HOPS``), where the finer
frequency resolution lets a bin hold more of one source. When the
bundle carries a mask refiner (``refine``), it corrects the projected masks bin by bin before they apply; with
``wiener`` (offline only: it reads whole segments) the multichannel Wiener filter of ``stream_dc.wiener`` turns the
final masks into the voice's spectra.
``InverseMelSynthesis`` is the paper's path: 16 kHz, pseudo-inverse mel magnitudes with the mixture's phase,
resampled back to the input rate (nothing above 8 kHz survives).

Both are stages (``stages``) reading the masks from a ``MelMaskTrack`` that the mask engine fills (or that offline
separation fills whole): ``process(block)`` takes the mixture ``(samples, channels)`` and returns the stem samples
that became complete as ``(vocals, accompaniment)``, each ``(samples, channels)``, in order from sample 0;
``flush()`` announces the end and returns the rest, so that the stems have exactly as many samples as the mixture.
A frame is only synthesised once its masks are final in the track; the track's frames that no frame still waiting
needs are discarded. ``latency_samples`` is how far past an output sample the mixture is read, and
``centre_offset`` how far past it the masks are read (the centre of the last frame that covers it).
"""
from __future__ import annotations

from collections import deque

import numpy as np

from .features import FeatureConfig
from .masks import InverseMel, MaskProjector, MelMaskTrack
from .parallel import SERIAL, SlicePool
from .refine import MaskRefiner, bin_frequencies
from .resample import Resampler
from .stft import STREAM_WINDOW_HOPS, FrameAnalyzer, OverlapAdd, StftGeometry
from .wiener import segment_frames, wiener_voice

RECONSTRUCTIONS = ("projection", "inverse-mel")


class _MaskedStft:
    """Frames of a signal waiting for their masks, and the overlap-adders that turn them into stems.

    ``apply(spectra, masks)`` gives both stems' spectra, or with ``complementary`` only the voice's: the
    accompaniment is then the mixture minus the voice in the time domain, which equals overlap-adding the
    complementary mask (overlap-add reconstructs the mixture) at half the inverse FFTs.
    """

    def __init__(self, geometry: StftGeometry, channels: int, positions, complementary: bool = False,
                 pool: SlicePool = SERIAL):
        self.geometry = geometry
        self.analyzer = FrameAnalyzer(geometry, channels, geometry.first_frame, pool)
        self.voice = OverlapAdd(geometry, channels, pool)
        self.accompaniment = None if complementary else OverlapAdd(geometry, channels, pool)
        self.mixture = np.zeros((0, channels), np.float32)  # input samples not yet synthesised (complementary)
        self.positions = positions  # native frame indices -> analysis positions
        self.pending: deque[tuple[int, np.ndarray]] = deque()
        self.channels = channels

    def push(self, block: np.ndarray) -> None:
        first, spectra = self.analyzer.process(block)
        if self.accompaniment is None:
            self.mixture = np.concatenate([self.mixture, np.asarray(block, np.float32).reshape(-1, self.channels)])
        if len(spectra):
            self.pending.append((first, spectra))

    def finish(self, n_samples: int) -> None:
        first, spectra = self.analyzer.flush(self.geometry.frames_covering(n_samples))
        if len(spectra):
            self.pending.append((first, spectra))

    def oldest_position(self) -> float | None:
        """Analysis position of the oldest frame still waiting, or None."""
        return float(self.positions(self.pending[0][0], 1)[0]) if self.pending else None

    @property
    def pending_frames(self) -> int:
        return sum(len(spectra) for _, spectra in self.pending)

    def join_pending(self) -> None:
        """Make the frames waiting one run, so that ``synthesise`` hands them to ``apply`` together."""
        if len(self.pending) > 1:
            first = self.pending[0][0]
            self.pending = deque([(first, np.concatenate([spectra for _, spectra in self.pending]))])

    def _mixture_minus(self, voice: np.ndarray) -> np.ndarray:
        """The next ``len(voice)`` mixture samples (zeros past the input's end) minus ``voice``."""
        mixture, self.mixture = self.mixture[:len(voice)], self.mixture[len(voice):]
        if len(mixture) < len(voice):
            mixture = np.concatenate([mixture, np.zeros((len(voice) - len(mixture), self.channels), np.float32)])
        return mixture - voice

    def synthesise(self, track: MelMaskTrack, apply) -> tuple[np.ndarray, np.ndarray]:
        voice_parts, accompaniment_parts = [], []
        oldest = self.oldest_position()
        if oldest is not None and track.readable(np.array([oldest]))[0]:
            self.join_pending()  # the frames of every block since the masks last moved, in one call of ``apply``
        while self.pending:
            first, spectra = self.pending[0]
            positions = self.positions(first, len(spectra))
            ready = int(np.count_nonzero(track.readable(positions)))
            if ready == 0:
                break
            masks = track.at(positions[:ready])
            if self.accompaniment is None:
                voice_parts.append(self.voice.add(apply(spectra[:ready], masks)))
                accompaniment_parts.append(self._mixture_minus(voice_parts[-1]))
            else:
                voice_spectra, accompaniment_spectra = apply(spectra[:ready], masks)
                voice_parts.append(self.voice.add(voice_spectra))
                accompaniment_parts.append(self.accompaniment.add(accompaniment_spectra))
            if ready < len(spectra):
                self.pending[0] = (first + ready, spectra[ready:])
                break
            self.pending.popleft()
        empty = np.zeros((0, self.channels), np.float32)
        return (np.concatenate(voice_parts) if voice_parts else empty,
                np.concatenate(accompaniment_parts) if accompaniment_parts else empty)


class _Stage:
    """What both syntheses share: the track they read, the samples they were given, the stage protocol."""

    track: MelMaskTrack
    stft: _MaskedStft

    def process(self, block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.n_in += len(block)
        self._push(block)
        return self._ready()

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        self.total = self.n_in
        self._finish(self.n_in)
        return self._ready()

    def _ready(self) -> tuple[np.ndarray, np.ndarray]:
        stems = self.synthesise()
        oldest = self.stft.oldest_position()
        if oldest is not None:
            self.track.discard_before(int(np.floor(oldest)))
        return stems


class ProjectionSynthesis(_Stage):
    """Mel masks projected onto each channel's STFT at the input rate; see the module docstring."""

    def __init__(self, features: FeatureConfig, sample_rate: int, channels: int, track: MelMaskTrack,
                 refiner: MaskRefiner | None = None, wiener: bool = False, window_hops: int = STREAM_WINDOW_HOPS,
                 pool: SlicePool = SERIAL):
        self.geometry = StftGeometry.for_rate(sample_rate, window_hops)
        self.projector = MaskProjector(features, sample_rate, self.geometry.n_fft, self.geometry.hop)
        self.features, self.sample_rate, self.channels, self.track = features, sample_rate, channels, track
        self.refiner, self.pool = refiner, pool
        # stereo only: on one channel the filter is the masks, and beyond two its general form costs channels^3 per bin
        # and its gain was only ever measured on stereo mixes
        self.wiener = wiener and channels == 2
        self.frequencies = bin_frequencies(sample_rate, self.geometry.n_fft)
        self.reset()

    @property
    def latency_samples(self) -> int:
        return self.geometry.n_fft - 1

    @property
    def centre_offset(self) -> float:
        return self.geometry.n_fft / 2

    def reset(self) -> None:
        self.stft = _MaskedStft(self.geometry, self.channels, self.projector.analysis_positions, complementary=True,
                                pool=self.pool)
        self.total: int | None = None
        self.emitted = self.n_in = 0

    def _push(self, block: np.ndarray) -> None:
        self.stft.push(block)

    def _finish(self, n_samples: int) -> None:
        self.stft.finish(n_samples)

    def _apply(self, spectra: np.ndarray, mel_masks: np.ndarray) -> np.ndarray:
        """The voice's spectra ``(frames, bins, channels)``; the accompaniment is the mixture minus the voice."""
        masks = self.voice_masks(spectra, mel_masks)
        return wiener_voice(spectra, masks, self.pool) if self.wiener else spectra * masks[:, :, None]

    def voice_masks(self, spectra: np.ndarray, mel_masks: np.ndarray) -> np.ndarray:
        """Masks ``(frames, bins)`` on the native STFT: the projected mel masks, refined when there is a refiner."""
        masks = self.projector.project(mel_masks)
        return masks if self.refiner is None else self.refiner.refine(masks, spectra, self.frequencies, self.pool)

    def synthesise(self) -> tuple[np.ndarray, np.ndarray]:
        if self.wiener:  # the filter reads a segment at a time: wait for one (or the end), then hand it over whole
            if self.total is None and self.stft.pending_frames < segment_frames(self.geometry.bins):
                empty = np.zeros((0, self.stft.channels), np.float32)
                return empty, empty
            self.stft.join_pending()
        voice, accompaniment = self.stft.synthesise(self.track, self._apply)
        if self.total is not None:  # the last frames reach past the end of the signal
            keep = max(0, min(len(voice), self.total - self.emitted))
            voice, accompaniment = voice[:keep], accompaniment[:keep]
        self.emitted += len(voice)
        return voice, accompaniment


class InverseMelSynthesis(_Stage):
    """The paper's reconstruction; see the module docstring (offline only: it has no latency bound)."""

    def __init__(self, features: FeatureConfig, sample_rate: int, channels: int, track: MelMaskTrack):
        self.features, self.sample_rate, self.channels, self.track = features, sample_rate, channels, track
        self.geometry = StftGeometry(features.n_fft, features.hop_length)
        self.inverse = InverseMel(features)
        self.reset()

    def reset(self) -> None:
        features, channels = self.features, self.channels
        self.down = Resampler(self.sample_rate, features.sample_rate, channels)
        self.stft = _MaskedStft(self.geometry, channels,
                                lambda first, count: np.arange(first, first + count, dtype=np.float64))
        self.up_voice = Resampler(features.sample_rate, self.sample_rate, channels)
        self.up_accompaniment = Resampler(features.sample_rate, self.sample_rate, channels)
        self.total: int | None = None
        self.analysis_total: int | None = None
        self.emitted_16k = self.n_in = 0

    def _push(self, block: np.ndarray) -> None:
        self.stft.push(self.down.process(block))

    def _finish(self, n_samples: int) -> None:
        self.analysis_total = -(-n_samples * self.features.sample_rate // self.sample_rate)
        self.stft.push(self.down.flush(self.analysis_total))
        self.stft.finish(self.analysis_total)

    def _apply(self, spectra: np.ndarray, mel_masks: np.ndarray):
        return self.inverse.apply(spectra, mel_masks), self.inverse.apply(spectra, 1.0 - mel_masks)

    def synthesise(self) -> tuple[np.ndarray, np.ndarray]:
        voice, accompaniment = self.stft.synthesise(self.track, self._apply)
        if self.analysis_total is not None:
            keep = max(0, min(len(voice), self.analysis_total - self.emitted_16k))
            voice, accompaniment = voice[:keep], accompaniment[:keep]
        self.emitted_16k += len(voice)
        voice, accompaniment = self.up_voice.process(voice), self.up_accompaniment.process(accompaniment)
        if self.analysis_total is not None and self.emitted_16k >= self.analysis_total:
            voice = np.concatenate([voice, self.up_voice.flush(self.total)])
            accompaniment = np.concatenate([accompaniment, self.up_accompaniment.flush(self.total)])
        return voice, accompaniment


def make_synthesis(reconstruction: str, features: FeatureConfig, sample_rate: int, channels: int, track: MelMaskTrack,
                   refiner: MaskRefiner | None = None, wiener: bool = False, window_hops: int = STREAM_WINDOW_HOPS,
                   pool: SlicePool = SERIAL):
    """The synthesis for ``reconstruction`` reading ``track``; the mask refiner, the Wiener filter, the window
    length (in hops) and the threads of ``pool`` apply to projection only."""
    if reconstruction == "projection":
        return ProjectionSynthesis(features, sample_rate, channels, track, refiner, wiener, window_hops, pool)
    if reconstruction == "inverse-mel":
        return InverseMelSynthesis(features, sample_rate, channels, track)
    raise ValueError(f"unknown reconstruction {reconstruction!r}: choose one of {', '.join(RECONSTRUCTIONS)}")
