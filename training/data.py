"""Training data: 16 kHz mono stems, remixes (``training.mixing``), features and targets, fixed-length chunks.

Every epoch uses every original voice/accompaniment pairing plus remixes drawn by the mixing engine (a voice over
the accompaniment of another song, from a random offset; by default at 0 dB without effects, as the paper).
Accompaniment-only clips (instrumental music) have an empty voice and serve as accompaniments. Features and
targets come from
``stream_dc.features`` (the runtime's own definition): normalised log-mel input, the ideal binary mask on the mel
power spectrogram as target, and a weight of 0 on bins more than 40 dB below the mixture's loudest bin (1 on the
others, or their mel magnitude with ``--bin-weights magnitude``).
Chunks are ``chunk`` frames long; the last chunk of a mixture is padded with silent, zero-weight frames.
"""
from __future__ import annotations

import os
import signal
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from stream_dc.evaluation.datasets import TrackRef
from stream_dc.features import (
    ANALYSIS_RATE,
    LogMel,
    ideal_binary_mask,
    mono_downmix,
    stft,
)
from stream_dc.resample import resample

from .mixing import MixingConfig, RemixSpec, render


@dataclass
class Stems:
    """Mono 16 kHz stems ``(samples,)`` float32 of one clip; ``voice`` is empty for accompaniment-only clips.
    ``source`` names the dataset it came from."""

    name: str
    group: str
    voice: np.ndarray
    accompaniment: np.ndarray
    source: str = ""

    @property
    def has_voice(self) -> bool:
        return len(self.voice) > 0


@dataclass
class MixFeatures:
    """Per-frame arrays of one mixture, each ``(frames, n_mels)``: log-mel (un-normalised), voice target, weight,
    the voice's share of the mixture's mel magnitude (float16, clipped to [0, ``MAX_VOICE_SHARE``]), the target
    of the clustered-mask loss, and its phase-sensitive share (float16 in [0, 1]), the mask head's target: the mel
    magnitude of the voice's projection on the mixture, ``|S| cos(angle S - angle X)``, over the mixture's, truncated
    to [0, 1] (Chimera++'s truncated phase-sensitive approximation, on the mel scale)."""

    log_mel: np.ndarray
    voice: np.ndarray
    weight: np.ndarray
    voice_share: np.ndarray
    voice_psa: np.ndarray


MAX_VOICE_SHARE = 4.0  # voice and accompaniment in opposite phase can exceed the mixture's magnitude


def load_stems(ref: TrackRef) -> Stems:
    track = ref.load()
    accompaniment = mono_downmix(track.accompaniment)
    voice = mono_downmix(track.voice) if ref.dataset != "instrumental" else np.zeros(0, np.float32)
    if track.sample_rate != ANALYSIS_RATE:
        accompaniment = resample(accompaniment, track.sample_rate, ANALYSIS_RATE)
        if len(voice):
            voice = resample(voice, track.sample_rate, ANALYSIS_RATE)
    return Stems(ref.name, f"{ref.dataset}:{ref.group}", voice, accompaniment, ref.dataset)


def load_all(refs: list[TrackRef], workers: int = 1) -> list[Stems]:
    if workers > 1:
        with quiet_pool(workers) as pool:
            return list(pool.map(load_stems, refs, chunksize=8))
    return [load_stems(r) for r in refs]


def mix_features(voice: np.ndarray, accompaniment: np.ndarray, log_mel: LogMel) -> MixFeatures:
    voice_spectrum, accompaniment_spectrum = stft(voice), stft(accompaniment)
    mixture = voice_spectrum + accompaniment_spectrum  # the STFT is linear
    magnitude = log_mel.mel_magnitude(mixture)
    features = log_mel.log_of(magnitude)
    floor = np.maximum(magnitude, log_mel.config.log_floor)
    share = log_mel.mel_magnitude(voice_spectrum) / floor
    # the voice's component along the mixture in each STFT bin, |S| cos(angle S - angle X), on the mel scale
    projection = np.real(voice_spectrum * np.conj(mixture)) / np.maximum(np.abs(mixture), 1e-12)
    phase_sensitive = (projection.astype(np.float64) @ log_mel.filterbank64.T) / floor
    return MixFeatures(
        log_mel=features,
        voice=ideal_binary_mask(voice_spectrum, accompaniment_spectrum, log_mel),
        weight=log_mel.active_bins(features).astype(np.float32),
        voice_share=np.clip(share, 0.0, MAX_VOICE_SHARE).astype(np.float16),
        voice_psa=np.clip(phase_sensitive, 0.0, 1.0).astype(np.float16),
    )


def normalisation(features: list[MixFeatures]) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation of the log-mel features, ``(n_mels,)`` each."""
    stacked = np.concatenate([f.log_mel for f in features]).astype(np.float64)
    return stacked.mean(axis=0).astype(np.float32), np.maximum(stacked.std(axis=0), 1e-3).astype(np.float32)


@dataclass
class Chunks:
    """Stacked training chunks, each ``(n, chunk, n_mels)``: features normalised, voice bool, weight float32,
    voice share and phase-sensitive share float16 (see ``MixFeatures``)."""

    features: np.ndarray
    voice: np.ndarray
    weight: np.ndarray
    voice_share: np.ndarray
    voice_psa: np.ndarray

    def __len__(self) -> int:
        return len(self.features)


BIN_WEIGHTS = ("active", "magnitude")


def bin_weights(mix: MixFeatures, kind: str) -> np.ndarray:
    """Loss weight of every bin ``(frames, n_mels)``: 1 on active bins (``active``), or the bin's mel magnitude
    over the mean of the mixture's active bins (``magnitude``: loud bins, which dominate the stems' errors, count
    more; Wang, Le Roux & Hershey 2018). Inactive bins weigh 0 either way."""
    if kind == "active":
        return mix.weight
    if kind != "magnitude":
        raise ValueError(f"unknown bin weights {kind!r}: choose one of {', '.join(BIN_WEIGHTS)}")
    active = mix.weight > 0
    if not active.any():
        return mix.weight
    magnitude = np.exp(mix.log_mel - mix.log_mel[active].max())
    return (np.where(active, magnitude, 0.0) / magnitude[active].mean()).astype(np.float32)


def make_chunks(mixes: list[MixFeatures], chunk: int, log_mel: LogMel, rng: np.random.Generator | None = None,
                min_fraction: float = 0.25, weighting: str = "active") -> Chunks:
    """Cut every mixture into ``chunk``-frame pieces from a random phase (0 when ``rng`` is None); a last piece of
    at least ``min_fraction * chunk`` frames is padded with silent, zero-weight frames. ``weighting`` picks the
    loss weights (``bin_weights``)."""
    silence = log_mel.silence_log_mel()
    features, voices, weights, shares, psas = [], [], [], [], []
    for mix in mixes:
        weight = bin_weights(mix, weighting)
        frames = len(mix.log_mel)
        phase = int(rng.integers(0, chunk)) if rng is not None and frames > chunk else 0
        starts = list(range(phase, frames, chunk))
        if phase and frames - phase < chunk:  # too short for the random phase to leave a chunk
            starts = [0]
        for start in starts:
            end = min(start + chunk, frames)
            if end - start < min_fraction * chunk and len(starts) > 1:
                continue
            pad = chunk - (end - start)
            f = np.concatenate([mix.log_mel[start:end], np.repeat(silence[None], pad, axis=0)])
            features.append(log_mel.normalise(f))
            voices.append(np.pad(mix.voice[start:end], ((0, pad), (0, 0))))
            weights.append(np.pad(weight[start:end], ((0, pad), (0, 0))))
            shares.append(np.pad(mix.voice_share[start:end], ((0, pad), (0, 0))))
            psas.append(np.pad(mix.voice_psa[start:end], ((0, pad), (0, 0))))
    n_mels = log_mel.config.n_mels
    if not features:
        return Chunks(np.zeros((0, chunk, n_mels), np.float32), np.zeros((0, chunk, n_mels), bool),
                      np.zeros((0, chunk, n_mels), np.float32), np.zeros((0, chunk, n_mels), np.float16),
                      np.zeros((0, chunk, n_mels), np.float16))
    return Chunks(np.stack(features), np.stack(voices), np.stack(weights), np.stack(shares), np.stack(psas))


# -- parallel feature computation (worker processes inherit the stems by fork) ----------------------------------
_WORKER_STATE: dict = {}


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


def single_threaded_worker() -> None:
    """Worker processes run one BLAS thread each (many workers with a thread per core thrash the CPU), at a lower
    priority than the training process, which they only feed. Ctrl-C (and a SIGTERM sent to the process group)
    reaches the workers too: the training process handles it and shuts its pools down, so workers ignore both
    (no traceback from each). They start with both blocked (``quiet_pool``) until they ignore them."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    os.nice(5)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1)


class WorkerPool(ProcessPoolExecutor):
    """A pool whose ``with`` block, left by an exception (Ctrl-C, SIGTERM, an error), stops at once: queued work is
    cancelled and the workers are killed, instead of waiting for every submitted task as a plain pool does (its
    workers ignore Ctrl-C and SIGTERM, which the training process handles)."""

    def __exit__(self, kind, value, traceback):
        if kind is None:
            return super().__exit__(kind, value, traceback)
        self.stop()
        return False

    def stop(self) -> None:
        """Cancel what is queued, kill the workers and wait for them."""
        processes = list((getattr(self, "_processes", None) or {}).values())
        self.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            if process.is_alive():
                process.kill()
        for process in processes:
            process.join(10)


def quiet_pool(workers: int, **options) -> WorkerPool:
    """A started pool of ``single_threaded_worker`` processes. They are forked with Ctrl-C and SIGTERM blocked, so
    one arriving before a worker's initializer has run waits for the training process instead of killing the
    worker with a traceback; the training process receives it once its workers are up."""
    pool = WorkerPool(workers, initializer=single_threaded_worker, **options)
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        pool.submit(int).result()  # forks every worker (a forking pool starts them all on the first task)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    return pool


def remix_features(stems: list[Stems], log_mel: LogMel, job: int | RemixSpec,
                   config: MixingConfig = MixingConfig()) -> MixFeatures:
    """Features of clip ``job``'s original mixture, or of the remix ``job`` rendered with ``config``."""
    if isinstance(job, RemixSpec):
        return mix_features(*render(job, stems, config), log_mel)
    return mix_features(stems[job].voice, stems[job].accompaniment, log_mel)


def _worker_remix_features(job: int | RemixSpec) -> MixFeatures:
    return remix_features(_WORKER_STATE["stems"], _WORKER_STATE["log_mel"], job, _WORKER_STATE["config"])


def worker_pool(stems: list[Stems], log_mel: LogMel, workers: int,
                config: MixingConfig = MixingConfig()) -> WorkerPool:
    """Forked workers that compute ``_worker_remix_features`` on these stems."""
    import multiprocessing

    # inherited by fork, never pickled
    _WORKER_STATE["stems"], _WORKER_STATE["log_mel"], _WORKER_STATE["config"] = stems, log_mel, config
    return quiet_pool(workers, mp_context=multiprocessing.get_context("fork"))


def compute_mixes(stems: list[Stems], jobs: list, log_mel: LogMel, workers: int = 1,
                  config: MixingConfig = MixingConfig()) -> list[MixFeatures]:
    """Features of ``jobs``: clip indices (original mixtures) or ``RemixSpec``s."""
    if workers > 1 and len(jobs) > 1:
        with worker_pool(stems, log_mel, workers, config) as pool:
            return list(pool.map(_worker_remix_features, jobs, chunksize=4))
    return [remix_features(stems, log_mel, job, config) for job in jobs]
