"""Oracle masks and a training-free baseline, through stream-dc's own synthesis where a mask is on the mel scale:

- ``mel_ibm``: the ideal binary mask on the 16 kHz mel power spectrogram, the ceiling of any binary mel mask (the
  model's included);
- ``stft_ibm``: the ideal binary mask on the STFT at the track's rate (the offline synthesis STFT unless told
  otherwise), the ceiling of binary masks;
- ``repet_sim``: REPET-SIM (Rafii & Pardo), nearest-neighbour filtering from librosa.
"""
from __future__ import annotations

import numpy as np

from ..features import ANALYSIS_RATE, FeatureConfig, LogMel, ideal_binary_mask, mono_downmix, stft
from ..masks import MelMaskTrack
from ..resample import resample
from ..stft import OFFLINE_WINDOW_HOPS, FrameAnalyzer, OverlapAdd, StftGeometry
from ..synthesis import ProjectionSynthesis
from .datasets import Track


def mel_ibm(track: Track, features: FeatureConfig) -> np.ndarray:
    """Oracle voice mask ``(frames, n_mels)`` on the 16 kHz mel power spectrogram of the track's stems."""
    def analysis(x):
        return stft(resample(mono_downmix(x), track.sample_rate, ANALYSIS_RATE))

    return ideal_binary_mask(analysis(track.voice), analysis(track.accompaniment), LogMel(features)).astype(np.float32)


def synthesise(mixture: np.ndarray, sample_rate: int, mel_masks: np.ndarray, features: FeatureConfig,
               window_hops: int = OFFLINE_WINDOW_HOPS):
    """Mel masks applied to the mixture with stream-dc's (offline) projection synthesis -> ``(voice,
    accompaniment)``."""
    synthesis = ProjectionSynthesis(features, sample_rate, mixture.shape[1], MelMaskTrack.from_array(mel_masks),
                                    window_hops=window_hops)
    first = synthesis.process(mixture)
    rest = synthesis.flush()
    return np.concatenate([first[0], rest[0]]), np.concatenate([first[1], rest[1]])


def whole_stft(audio: np.ndarray, sample_rate: int,
               window_hops: int = OFFLINE_WINDOW_HOPS) -> tuple[StftGeometry, np.ndarray]:
    """STFT of a whole ``(samples, channels)`` signal at its own rate, framed as offline synthesis frames it
    (unless ``window_hops`` says otherwise): ``(frames, bins, channels)``."""
    geometry = StftGeometry.for_rate(sample_rate, window_hops)
    analyzer = FrameAnalyzer(geometry, audio.shape[1], geometry.first_frame)
    spectra = np.concatenate([analyzer.process(audio)[1], analyzer.flush(geometry.frames_covering(len(audio)))[1]])
    return geometry, spectra


def masked_stems(spectra: np.ndarray, voice_mask: np.ndarray, geometry: StftGeometry, length: int):
    """Voice and accompaniment from ``spectra`` and a voice mask of the same shape (or ``(frames, bins, 1)``)."""
    stems = []
    for mask in (voice_mask, 1.0 - voice_mask):
        stems.append(OverlapAdd(geometry, spectra.shape[2]).add(spectra * mask)[:length])
    return stems[0], stems[1]


def stft_ibm(track: Track, window_hops: int = OFFLINE_WINDOW_HOPS):
    """Oracle binary mask on the STFT at the track's rate (per channel; by default the offline synthesis STFT) ->
    ``(voice, accompaniment)``."""
    geometry, voice = whole_stft(track.voice, track.sample_rate, window_hops)
    _, accompaniment = whole_stft(track.accompaniment, track.sample_rate, window_hops)
    mask = (np.abs(voice) > np.abs(accompaniment)).astype(np.float32)
    return masked_stems(voice + accompaniment, mask, geometry, len(track.voice))


def repet_sim(mixture: np.ndarray, sample_rate: int):
    """REPET-SIM: the repeating background by nearest-neighbour median filtering of the magnitude spectrogram
    (librosa's ``decompose.nn_filter``), soft masks on each channel -> ``(voice, accompaniment)``."""
    try:
        import librosa
    except ImportError:
        raise RuntimeError("the repet baseline needs librosa: pip install 'stream-dc[eval]'") from None
    geometry, spectra = whole_stft(mixture, sample_rate)
    magnitude = np.abs(spectra).mean(axis=2)  # (frames, bins), averaged over channels
    # neighbours are at least 2 s apart (less on clips too short for that)
    width = max(1, min(int(round(2 * sample_rate / geometry.hop)), (len(magnitude) - 1) // 2 - 1))
    background = librosa.decompose.nn_filter(magnitude.T, aggregate=np.median, metric="cosine", width=width).T
    background = np.minimum(magnitude, background)
    voice_mask = librosa.util.softmask(magnitude - background, 2 * background, power=2).astype(np.float32)
    return masked_stems(spectra, voice_mask[:, :, None], geometry, len(mixture))
