"""Sample-rate conversion that gives the same samples however the input is cut into blocks.

Output sample ``m`` is a windowed-sinc interpolation of the input around the exact position
``m * rate_in / rate_out``, with a symmetric (zero-phase) kernel. The offline result therefore has no delay,
and the streaming form only has to wait for ``taps_after`` input samples of look-ahead; both compute identical
values because every output depends on a fixed set of input samples.

The kernel is long (64 zero crossings, 4 ms of look-ahead at 44.1 kHz) and its cut-off sits at the lower Nyquist
frequency, so a 44.1 kHz input reaches the 16 kHz analysis with its full band: every mel band of noise comes out
within 0.5 dB of the same noise given at 16 kHz (the top band, 7.7-8 kHz, included), at the price of a little
aliasing from the 8.0-8.3 kHz sliver into that top band.

The outputs are computed a group at a time: ``group`` consecutive outputs (a multiple of the polyphase period
``up``) read one contiguous input segment, so a group is one matrix-vector product with a fixed banded matrix
(BLAS), about ten times faster than gathering every output's taps. A group whose last outputs still wait for
input is computed with the missing samples set to zero and computed again once they arrive: the outputs already
returned only meet exact zeros of the matrix there, so every output has the same value whichever call made it.

We keep this resampler rather than libsoxr: soxr's
streaming output values are block-invariant, but how many samples it returns after a block depends on how the
input was cut (up to 40 ms held back at 16 kHz), and its pass band ends near 7.4 kHz, leaving the three top bands
1 to 25 dB down.
"""
from __future__ import annotations

from math import gcd

import numpy as np

ZERO_CROSSINGS = 64  # kernel half-length in zero crossings of the narrower band
CUTOFF = 1.01  # the sinc's cut-off (-6 dB) as a fraction of the lower Nyquist frequency
KAISER_BETA = 8.6  # about 80 dB stop-band attenuation beyond the transition band
PIECE_ELEMENTS = 1 << 19  # (outputs x taps) gathered at a time by the gather path: 1024 outputs of a 44.1 kHz kernel
GROUP_OUTPUTS = 128  # about this many outputs per matrix-vector product (rounded up to a multiple of ``up``)
MAX_GROUP_MATRIX = 4_000_000  # elements; rate pairs with a longer polyphase period use the gather path
MAX_KERNEL_TABLE = 2_000_000  # elements of the per-phase kernel table; beyond it, kernels are interpolated
TABLE_STEPS = 512  # kernel values per input sample of offset, when interpolated


class Resampler:
    """Streaming resampler for ``(samples, channels)`` float32 audio from ``rate_in`` to ``rate_out``.

    ``process(block)`` returns every output sample whose input neighbourhood has arrived; ``flush(n_out)``
    pads with zeros and returns the rest, up to ``n_out`` output samples in total (default
    ``ceil(n_in * rate_out / rate_in)``). Samples before the start of the input are zero.
    """

    def __init__(self, rate_in: int, rate_out: int, channels: int):
        if rate_in <= 0 or rate_out <= 0:
            raise ValueError("sample rates must be positive")
        self.rate_in, self.rate_out, self.channels = int(rate_in), int(rate_out), int(channels)
        g = gcd(self.rate_in, self.rate_out)
        self.up, self.down = self.rate_out // g, self.rate_in // g
        self.identity = self.up == self.down
        cutoff = min(1.0, self.up / self.down) * CUTOFF  # in units of the input Nyquist frequency
        self.half_taps = 0 if self.identity else int(np.ceil(ZERO_CROSSINGS / cutoff))
        self.cutoff, self.kernels, self.table = cutoff, None, None
        if not self.identity:
            taps = np.arange(-self.half_taps + 1, self.half_taps + 1)
            if self.up * len(taps) <= MAX_KERNEL_TABLE:
                # row p holds the kernel for fractional position p/up: taps at offsets -half_taps+1 .. half_taps
                self.kernels = self._kernel(taps[None, :] - np.arange(self.up)[:, None] / self.up)
                self._build_group_matrix()
            else:
                # a polyphase period too long to tabulate per phase (a rate prime to 16 kHz, such as 48001 Hz, has
                # 16000 phases): the kernel at ``TABLE_STEPS`` points per sample, read by linear interpolation,
                # keeps the set-up and the memory proportional to the kernel's length
                self.table = self._kernel(np.arange(-self.half_taps * TABLE_STEPS, self.half_taps * TABLE_STEPS + 2)
                                          / TABLE_STEPS)
                self.group_matrix = None
        self.reset()

    def _kernel(self, offsets: np.ndarray) -> np.ndarray:
        """The Kaiser-windowed sinc at ``offsets`` (input samples) from the output's position, float32."""
        window = np.i0(KAISER_BETA * np.sqrt(np.clip(1.0 - (offsets / self.half_taps) ** 2, 0.0, 1.0)))
        return (self.cutoff * np.sinc(self.cutoff * offsets) * window / np.i0(KAISER_BETA)).astype(np.float32)

    def _kernels_at(self, phase: np.ndarray) -> np.ndarray:
        """Kernels ``(outputs, taps)`` for outputs at fractional positions ``phase / up``."""
        if self.kernels is not None:
            return self.kernels[phase]
        taps = np.arange(-self.half_taps + 1, self.half_taps + 1)
        position = (taps[None, :] + self.half_taps - phase[:, None] / self.up) * TABLE_STEPS
        lower = np.floor(position).astype(np.int64)
        weight = (position - lower).astype(np.float32)
        return self.table[lower] + weight * (self.table[lower + 1] - self.table[lower])

    def _build_group_matrix(self) -> None:
        """``group_matrix`` ``(group, span)``: row ``j`` holds output ``j``'s kernel at its place in the segment of
        ``span`` inputs that a group reads; None when the polyphase period is too long for a dense matrix."""
        self.group = self.up * -(-GROUP_OUTPUTS // self.up)
        self.group_stride = self.group * self.down // self.up  # inputs between the starts of two groups
        taps = 2 * self.half_taps
        self.group_span = (self.group - 1) * self.down // self.up + taps
        if self.group * self.group_span > MAX_GROUP_MATRIX:
            self.group_matrix = None
            return
        matrix = np.zeros((self.group, self.group_span), np.float32)
        j = np.arange(self.group)
        floor, phase = (j * self.down) // self.up, (j * self.down) % self.up
        matrix[j[:, None], floor[:, None] + np.arange(taps)[None, :]] = self.kernels[phase]
        self.group_matrix = matrix
        self.segment = np.zeros(self.group_span, np.float32)  # one reused buffer: same alignment every product

    @property
    def taps_after(self) -> int:
        """Input samples needed beyond an output's position (the streaming look-ahead)."""
        return self.half_taps

    def reset(self) -> None:
        self.n_in = 0  # input samples received
        self.n_out = 0  # output samples produced
        # buffer holds input samples [buffer_start, n_in); indices below 0 are implicit zeros
        self.buffer = np.zeros((0, self.channels), np.float32)
        self.buffer_start = 0

    def output_position(self, m: np.ndarray | int):
        """Integer part and phase of the input position of output sample(s) ``m``."""
        return (np.asarray(m, np.int64) * self.down) // self.up, (np.asarray(m, np.int64) * self.down) % self.up

    def available_outputs(self, n_in: int) -> int:
        """How many output samples can be computed once ``n_in`` input samples have arrived."""
        if self.identity:
            return n_in
        # output m needs input index floor(m*down/up) + half_taps < n_in
        limit = n_in - 1 - self.half_taps  # largest admissible floor position
        if limit < 0:
            return 0
        return ((limit + 1) * self.up - 1) // self.down + 1

    def process(self, block: np.ndarray) -> np.ndarray:
        """block ``(samples, channels)`` -> the newly computable output ``(m, channels)`` float32."""
        block = np.asarray(block, np.float32).reshape(-1, self.channels)
        if self.identity:
            self.n_in += len(block)
            self.n_out += len(block)
            return block.copy()
        self.buffer = np.concatenate([self.buffer, block]) if len(self.buffer) else block.copy()
        self.n_in += len(block)
        return self._emit(self.available_outputs(self.n_in))

    def flush(self, total_out: int | None = None) -> np.ndarray:
        """Zero-pad the input and return the remaining output, ``total_out`` samples in all."""
        if total_out is None:
            total_out = -(-self.n_in * self.up // self.down)
        if self.identity:
            missing = max(0, total_out - self.n_out)
            self.n_out += missing
            return np.zeros((missing, self.channels), np.float32)
        last_floor, _ = self.output_position(max(total_out - 1, 0))
        needed = int(last_floor) + self.half_taps + 1
        if needed > self.n_in:
            self.buffer = np.concatenate([self.buffer, np.zeros((needed - self.n_in, self.channels), np.float32)])
        return self._emit(total_out)

    def _emit(self, end: int) -> np.ndarray:
        if end <= self.n_out:
            return np.zeros((0, self.channels), np.float32)
        out = self._grouped(end) if self.group_matrix is not None else self._gathered(end)
        self.n_out = end
        # drop input that no future output can touch
        next_floor, _ = self.output_position(end)
        keep_from = int(next_floor) - self.half_taps + 1
        if keep_from > self.buffer_start:
            drop = min(keep_from - self.buffer_start, len(self.buffer))
            self.buffer = self.buffer[drop:]
            self.buffer_start += drop
        return out

    def _grouped(self, end: int) -> np.ndarray:
        """Outputs ``[n_out, end)`` ``(m, channels)``, one matrix-vector product per group and channel."""
        out = np.empty((end - self.n_out, self.channels), np.float32)
        segment, span = self.segment, self.group_span
        available = self.buffer_start + len(self.buffer)  # one past the last input index held
        for group in range(self.n_out // self.group, (end - 1) // self.group + 1):
            first_out = group * self.group
            lo, hi = max(first_out, self.n_out), min(first_out + self.group, end)
            start = group * self.group_stride - self.half_taps + 1  # input index of segment[0]
            a, b = max(start, self.buffer_start), min(start + span, available)
            for c in range(self.channels):
                segment[:] = 0.0  # zeros before the signal and past the input received so far
                if b > a:
                    segment[a - start:b - start] = self.buffer[a - self.buffer_start:b - self.buffer_start, c]
                out[lo - self.n_out:hi - self.n_out, c] = (self.group_matrix @ segment)[lo - first_out:hi - first_out]
        return out

    def _gathered(self, end: int) -> np.ndarray:
        """Outputs ``[n_out, end)`` ``(m, channels)``, each from its own gathered taps."""
        m = np.arange(self.n_out, end)
        floor, phase = self.output_position(m)
        first = int(floor[0]) - self.half_taps + 1  # lowest input index touched
        if first < self.buffer_start:  # implicit zeros before the start of the signal
            pad = self.buffer_start - first
            self.buffer = np.concatenate([np.zeros((pad, self.channels), np.float32), self.buffer])
            self.buffer_start = first
        taps = np.arange(-self.half_taps + 1, self.half_taps + 1)
        out = np.empty((len(m), self.channels), np.float32)
        piece = max(16, PIECE_ELEMENTS // len(taps))  # pieces keep the gathered arrays small, whatever the kernel
        for lo in range(0, len(m), piece):
            index = (floor[lo:lo + piece] - self.buffer_start)[:, None] + taps[None, :]
            kernels = self._kernels_at(phase[lo:lo + piece])  # (piece, taps)
            for c in range(self.channels):
                out[lo:lo + piece, c] = np.einsum("mt,mt->m", self.buffer[index, c], kernels)
        return out


def resample(audio: np.ndarray, rate_in: int, rate_out: int, n_out: int | None = None) -> np.ndarray:
    """Offline resampling of ``(samples,)`` or ``(samples, channels)`` audio; same values as the streaming form."""
    audio = np.asarray(audio, np.float32)
    squeeze = audio.ndim == 1
    block = audio[:, None] if squeeze else audio
    resampler = Resampler(rate_in, rate_out, block.shape[1])
    if n_out is None:
        n_out = -(-len(block) * resampler.up // resampler.down)
    head = resampler.process(block)
    out = np.concatenate([head, resampler.flush(n_out)])[:n_out]
    return out[:, 0] if squeeze else out
