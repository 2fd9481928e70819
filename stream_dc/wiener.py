"""Offline multichannel Wiener post-filter: the voice's spectra from the mixture's and the final voice masks.

The masks give both sources' power spectrograms, ``mask * |X|^2`` and ``(1 - mask) * |X|^2`` on each channel.
One expectation-maximisation step of the multichannel Wiener filter (Nugraha, Liutkus & Vincent 2016, in the
simplified form of norbert's ``wiener`` that open-unmix applies, with magnitudes ``mask**0.5 * |X|``) fits each
source's spatial covariance per frequency over a segment of frames and filters the mixture with it: on a stereo
mix this tells a centred voice from accompaniment panned beside it, which no per-bin mask can. On one channel there
is no spatial covariance to fit and the step gives back the masks exactly, so mono input skips it. It reads frames
from either side of a frame, so only offline separation applies it, on segments of ``SEGMENT_FRAMES`` frames to bound
memory; the accompaniment stays the mixture minus the voice.

Why not norbert itself: it has not been released since 2019, imports a SciPy namespace that SciPy 2.0 removes (and
with it all of SciPy, which nothing else here needs), and loops over frames in Python. This is the same step,
vectorised over frames; ``tests/test_wiener.py`` checks it against norbert.
"""
from __future__ import annotations

import numpy as np

SEGMENT_FRAMES = 1000  # about 8 s of 8 ms frames: one segment holds a 6.8-s MUSDB excerpt whole
EPS = float(np.finfo(np.float64).eps)


def _inverse(matrices: np.ndarray) -> np.ndarray:
    """Inverses of ``(..., c, c)`` covariance matrices (closed form for two channels, as norbert)."""
    if matrices.shape[-1] != 2:
        return np.linalg.pinv(matrices, rcond=EPS)
    a, b, c, d = matrices[..., 0, 0], matrices[..., 0, 1], matrices[..., 1, 0], matrices[..., 1, 1]
    inverse_det = 1.0 / (a * d - b * c)
    return np.stack([np.stack([d, -b], -1), np.stack([-c, a], -1)], -2) * inverse_det[..., None, None]


def wiener_voice(spectra: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """The voice's spectra ``(frames, bins, channels)`` complex64 from the mixture's ``(frames, bins, channels)``
    and the voice masks ``(frames, bins)`` in [0, 1]."""
    if len(spectra) == 0 or spectra.shape[2] == 1:  # one channel: the filter is the masks themselves
        return (spectra * masks[:, :, None]).astype(np.complex64)
    x = spectra.astype(np.complex128)
    voice = np.clip(masks, 0.0, 1.0).astype(np.float64)[:, :, None]
    magnitudes = [voice ** 0.5 * np.abs(x), (1.0 - voice) ** 0.5 * np.abs(x)]  # (frames, bins, channels) each
    total = magnitudes[0] + magnitudes[1]
    scale = max(1.0, float(np.abs(x).max()) / 10.0)
    x = x / scale
    powers, covariances = [], []
    for magnitude in magnitudes:  # first estimate by soft masks, then each source's local Gaussian model
        estimate = magnitude / (EPS + total) * x
        power = np.mean(np.abs(estimate) ** 2, axis=2)  # (frames, bins)
        spatial = np.einsum("tfi,tfk->fik", estimate, estimate.conj()) / (EPS + power.sum(0))[:, None, None]
        powers.append(power)
        covariances.append(spatial)  # (bins, channels, channels)
    mixture_model = sum(p[..., None, None] * r[None] for p, r in zip(powers, covariances))
    mixture_model = mixture_model + np.sqrt(EPS) * np.eye(x.shape[2])
    gain = powers[0][..., None, None] * (covariances[0][None] @ _inverse(mixture_model))
    return (np.einsum("tfik,tfk->tfi", gain, x) * scale).astype(np.complex64)
