"""Offline multichannel Wiener post-filter: the voice's spectra from the mixture's and the final voice masks.

The masks give both sources' power spectrograms, ``mask * |X|^2`` and ``(1 - mask) * |X|^2`` on each channel.
One expectation-maximisation step of the multichannel Wiener filter (Nugraha, Liutkus & Vincent 2016, in the
simplified form of norbert's ``wiener`` that open-unmix applies, with magnitudes ``mask**0.5 * |X|``) fits each
source's spatial covariance per frequency over a segment of frames and filters the mixture with it: on a stereo
mix this tells a centred voice from accompaniment panned beside it, which no per-bin mask can. On one channel there
is no spatial covariance to fit and the step gives back the masks exactly, so mono input skips it; other channel
counts than two keep their masks too. It reads frames from either side of a frame, so only offline separation
applies it, on segments of ``segment_frames(bins)`` frames to bound memory; the accompaniment stays the mixture
minus the voice.

Why not norbert itself: it has not been released since 2019, imports a SciPy namespace that SciPy 2.0 removes (and
with it all of SciPy, which nothing else here needs), and loops over frames in Python. This is the same step,
vectorised over frames, written per element for stereo (3x faster than batched 2x2 matrices) and run on slices of
bins that several threads share (``parallel``); ``tests/test_wiener.py`` checks it against norbert.
"""
from __future__ import annotations

import numpy as np

from .parallel import SERIAL, SlicePool

SEGMENT_FRAMES = 1000  # about 8 s of 8 ms frames: one segment holds a 6.8-s MUSDB excerpt whole
SEGMENT_BINS = SEGMENT_FRAMES * 1537  # frames x bins of a segment at most (1537 bins: 48 kHz), which bounds its
# memory at any rate: rates up to 48 kHz keep 1000 frames, 96 kHz gets 500, 768 kHz 62


def segment_frames(bins: int) -> int:
    """Frames of a Wiener segment for an STFT of ``bins`` bins."""
    return max(16, min(SEGMENT_FRAMES, SEGMENT_BINS // bins))
EPS = float(np.finfo(np.float64).eps)
BIN_SLICE = 64  # bins per slice: a slice's float64 arrays stay in the CPU's caches


def _two_channel_voice(x: np.ndarray, voice_share: np.ndarray) -> np.ndarray:
    """The filter's voice for two channels: ``x`` ``(frames, bins, 2)`` complex128 (the mixture scaled) and
    ``voice_share`` ``(frames, bins)`` float64, the share of the mixture that the first estimate of the voice takes
    (the accompaniment's estimate is the rest) -> ``(frames, bins, 2)`` complex128.

    norbert's first estimates are ``|v_c| / (|v_c| + |a_c|) * x_c`` with magnitudes ``mask**0.5 * |x_c|`` on
    each channel ``c``, so both channels' estimates are the same share of the mixture and their powers and
    cross-power follow from the mixture's. Each source's spatial covariance is Hermitian ``[[a, b], [conj(b),
    d]]`` per bin, so the mixture's model and its closed-form inverse need only a few ``(frames, bins)`` arrays
    instead of batched 2x2 matrix products. Float64 throughout: on a mix whose channels are equal the model is
    singular but for its ``sqrt(EPS)`` diagonal, which float32 could not resolve.
    """
    x0, x1 = x[..., 0], x[..., 1]
    power0, power1 = x0.real ** 2 + x0.imag ** 2, x1.real ** 2 + x1.imag ** 2
    cross = x0 * x1.conj()
    mean_power = 0.5 * (power0 + power1)  # (frames, bins)
    m00 = np.full(mean_power.shape, np.sqrt(EPS))
    m11, m01 = m00.copy(), np.zeros(mean_power.shape, np.complex128)
    models = []
    for weight in (voice_share ** 2, (1.0 - voice_share) ** 2):  # an estimate's power over the mixture's
        power = weight * mean_power  # the source's power, (frames, bins)
        norm = 1.0 / (EPS + power.sum(0))  # (bins,)
        a, b, d = (weight * power0).sum(0) * norm, (weight * cross).sum(0) * norm, (weight * power1).sum(0) * norm
        models.append((power, a, b, d))
        m00 += power * a
        m11 += power * d
        m01 += power * b
    power, a, b, d = models[0]
    gain = power / (m00 * m11 - (m01.real ** 2 + m01.imag ** 2))  # the voice's power over the model's determinant
    z0 = m11 * x0 - m01 * x1  # adjugate of the mixture's model times x
    z1 = m00 * x1 - m01.conj() * x0
    return np.stack([gain * (a * z0 + b * z1), gain * (b.conj() * z0 + d * z1)], axis=-1)


def wiener_voice(spectra: np.ndarray, masks: np.ndarray, pool: SlicePool = SERIAL) -> np.ndarray:
    """The voice's spectra ``(frames, bins, channels)`` complex64 from the mixture's ``(frames, bins, channels)``
    and the voice masks ``(frames, bins)`` in [0, 1], for one or two channels (synthesis applies the masks
    themselves to other channel counts: the filter's general form costs channels^3 per bin and was never measured
    beyond stereo). Every bin is filtered on its own, so ``pool`` shares the bins among its threads."""
    if len(spectra) == 0 or spectra.shape[2] == 1:  # one channel: the filter is the masks themselves
        return (spectra * masks[:, :, None]).astype(np.complex64)
    if spectra.shape[2] != 2:
        raise ValueError(f"the Wiener step is written for one or two channels, not {spectra.shape[2]}")
    scale = max(1.0, float(np.sqrt(np.max(spectra.real ** 2 + spectra.imag ** 2))) / 10.0)
    out = np.empty(spectra.shape, np.complex64)

    def filter_bins(part: slice) -> None:
        voice = np.clip(masks[:, part], 0.0, 1.0).astype(np.float64)
        root_voice = np.sqrt(voice)
        share = root_voice / (root_voice + np.sqrt(1.0 - voice))  # |v| / (|v| + |a|): the |x_c| cancel
        out[:, part] = _two_channel_voice(spectra[:, part].astype(np.complex128) / scale, share) * scale

    pool.run(filter_bins, spectra.shape[1], BIN_SLICE)
    return out
