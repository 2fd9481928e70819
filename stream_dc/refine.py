"""Mask refinement: a per-bin correction of the voice masks on the STFT that synthesis applies them to.

The clustering decides each mel band's voice mask from the network's embeddings alone; it never sees how loud a bin
is against the rest of its frame, where the bin lies between two mel band centres, or, on a stereo mix, whether the
bin sits in the centre of the stereo image, where producers put the lead vocal. A bundle may carry a small refiner,
fitted by the training package on its own training songs: a two-layer tanh network that reads a few features of one
bin in one frame and adds a correction to the logit of that bin's mask,

    refined = sigmoid(logit(mask) + net(features))

Features of bin ``f`` in frame ``t`` (``refiner_features``): the mask's logit / 4, ``log2(frequency / 1 kHz) / 3``,
the bin's level in dB against the frame's loudest bin / 20, and for two-channel input the mid/side balance
``(|L+R|^2 - |L-R|^2) / (|L+R|^2 + |L-R|^2)`` of the bin and of the five bins around it. A stereo refiner serves
two-channel input, a mono one (without the balance) every other channel count. Each frame is refined on its own,
so the refiner adds no latency and streaming and offline runs apply it alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .parallel import SERIAL, SlicePool

MASK_FLOOR = 1e-4  # masks are clipped to [floor, 1 - floor] before their logit
LOWEST_FREQUENCY = 50.0  # Hz: bins below read as this frequency
BALANCE_BINS = 5  # bins averaged for the smoothed mid/side balance
MONO_FEATURES = 3
STEREO_FEATURES = 5
FRAME_SLICE = 16  # frames refined at a time: their (frames x bins, hidden) layers stay in the CPU's caches


def bin_frequencies(sample_rate: int, n_fft: int) -> np.ndarray:
    """``(n_fft // 2 + 1,)`` float32: the frequency in Hz of each bin of an ``n_fft``-point STFT."""
    return np.arange(n_fft // 2 + 1, dtype=np.float32) * np.float32(sample_rate / n_fft)


def _moving_average(values: np.ndarray, width: int) -> np.ndarray:
    """Mean over ``width`` (odd) neighbouring bins along the last axis, edges repeated: ``(frames, bins)``."""
    half = width // 2
    padded = np.concatenate([np.repeat(values[:, :1], half, 1), values, np.repeat(values[:, -1:], half, 1)], 1)
    total = np.cumsum(padded, axis=1, dtype=np.float64)
    total = np.concatenate([np.zeros((len(values), 1)), total], axis=1)
    return ((total[:, width:] - total[:, :-width]) / width).astype(np.float32)


def _balance(mid: np.ndarray, side: np.ndarray) -> np.ndarray:
    return ((mid - side) / (mid + side + 1e-12)).astype(np.float32)


def refiner_features(masks: np.ndarray, spectra: np.ndarray, frequencies: np.ndarray, stereo: bool) -> np.ndarray:
    """``(frames, bins)`` masks, ``(frames, bins, channels)`` spectra and ``(bins,)`` bin frequencies in Hz ->
    ``(frames, bins, MONO_FEATURES or STEREO_FEATURES)`` float32 (see the module docstring)."""
    return np.stack(_feature_columns(masks, spectra, frequencies, stereo), axis=-1).astype(np.float32)


def _feature_columns(masks: np.ndarray, spectra: np.ndarray, frequencies: np.ndarray, stereo: bool) -> list:
    """The features of ``refiner_features``, each ``(frames, bins)``."""
    clipped = np.clip(masks, MASK_FLOOR, 1.0 - MASK_FLOOR)
    logit = np.log(clipped / (1.0 - clipped))
    power = np.sum(np.abs(spectra) ** 2, axis=2)
    level = 10.0 * np.log10(power + 1e-10)
    relative = (level - level.max(axis=1, keepdims=True)) / 20.0
    octave = np.log2(np.maximum(frequencies, LOWEST_FREQUENCY) / 1000.0) / 3.0
    columns = [logit / 4.0, np.broadcast_to(octave[None], masks.shape), relative]
    if stereo:
        left, right = spectra[..., 0], spectra[..., 1]
        mid, side = np.abs(left + right) ** 2, np.abs(left - right) ** 2
        columns += [_balance(mid, side),
                    _balance(_moving_average(mid, BALANCE_BINS), _moving_average(side, BALANCE_BINS))]
    return columns


@dataclass
class RefinerNet:
    """``features -> tanh(hidden) -> tanh(hidden) -> 1``: weights ``(in, hidden)``, ``(hidden, hidden)``,
    ``(hidden, 1)`` and their biases, all float32."""

    layers: list[tuple[np.ndarray, np.ndarray]]

    def correction(self, features: np.ndarray) -> np.ndarray:
        """``(..., in)`` -> ``(...)`` float32 logit correction."""
        shape = features.shape[:-1]
        rows = np.ascontiguousarray(features.reshape(-1, features.shape[-1]).T, dtype=np.float32)
        return self.correction_of_rows(rows).reshape(shape)

    def correction_of_rows(self, rows: np.ndarray) -> np.ndarray:
        """``correction`` of features laid out one per row, ``(in, n)`` float32 -> ``(n,)``. Transposed, every
        product and bias runs along the ``n`` points, which is 1.5x faster than along 16 hidden units."""
        x = rows
        for i, (weight, bias) in enumerate(self.layers):
            x = weight.T @ x
            x += bias[:, None]
            if i < len(self.layers) - 1:
                np.tanh(x, out=x)
        return x[0]

    @property
    def inputs(self) -> int:
        return self.layers[0][0].shape[0]

    def to_dict(self) -> dict:
        return {"weights": [w.tolist() for w, _ in self.layers], "biases": [b.tolist() for _, b in self.layers]}

    @classmethod
    def from_dict(cls, values: dict) -> RefinerNet:
        return cls([(np.asarray(w, np.float32), np.asarray(b, np.float32))
                    for w, b in zip(values["weights"], values["biases"], strict=True)])

    def problems(self, inputs: int, name: str) -> list[str]:
        found = []
        width = inputs
        for weight, bias in self.layers:
            if weight.ndim != 2 or weight.shape[0] != width or bias.shape != (weight.shape[1],):
                return [f"mask_refiner {name}: layer shapes do not chain from {inputs} inputs"]
            width = weight.shape[1]
        if not self.layers or width != 1:
            found.append(f"mask_refiner {name}: the last layer must have one output")
        if not all(np.all(np.isfinite(w)) and np.all(np.isfinite(b)) for w, b in self.layers):
            found.append(f"mask_refiner {name}: non-finite numbers")
        return found


@dataclass
class MaskRefiner:
    """A fitted refiner: ``mono`` for one channel (or more than two), ``stereo`` for two; see the module docstring."""

    mono: RefinerNet
    stereo: RefinerNet

    def refine(self, masks: np.ndarray, spectra: np.ndarray, frequencies: np.ndarray,
               pool: SlicePool = SERIAL) -> np.ndarray:
        """``(frames, bins)`` voice masks of ``(frames, bins, channels)`` spectra -> refined ``(frames, bins)``
        float32 in (0, 1). Every frame is refined on its own, so ``pool`` shares the frames among its threads."""
        if len(masks) == 0:
            return masks.astype(np.float32)
        out = np.empty(masks.shape, np.float32)

        def refine_frames(part: slice) -> None:
            out[part] = self._refine(masks[part], spectra[part], frequencies)

        pool.run(refine_frames, len(masks), FRAME_SLICE)
        return out

    def _refine(self, masks: np.ndarray, spectra: np.ndarray, frequencies: np.ndarray) -> np.ndarray:
        stereo = spectra.shape[2] == 2
        columns = _feature_columns(masks, spectra, frequencies, stereo)
        rows = np.stack(columns).reshape(len(columns), -1).astype(np.float32, copy=False)  # (features, points)
        net = self.stereo if stereo else self.mono
        z = (columns[0] * 4.0 + net.correction_of_rows(rows).reshape(masks.shape)).astype(np.float32)
        return (1.0 / (1.0 + np.exp(-np.clip(z, -60.0, 60.0)))).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mono": self.mono.to_dict(), "stereo": self.stereo.to_dict()}

    @classmethod
    def from_dict(cls, values: dict) -> MaskRefiner:
        return cls(RefinerNet.from_dict(values["mono"]), RefinerNet.from_dict(values["stereo"]))

    def problems(self) -> list[str]:
        return self.mono.problems(MONO_FEATURES, "mono") + self.stereo.problems(STEREO_FEATURES, "stereo")
