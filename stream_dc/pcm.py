"""Raw PCM and streaming WAV on pipes: little-endian ``s16``, ``s24`` and ``f32`` samples, read incrementally with a
carry-over for partial frames, and the WAV header parsed here, since libsndfile needs to seek.
"""
from __future__ import annotations

import struct
from typing import BinaryIO

import numpy as np

from .audio import InputError

PCM_DTYPES = ("s16", "s24", "f32")
_BYTES = {"s16": 2, "s24": 3, "f32": 4}


def decode_pcm(data: bytes, dtype: str, channels: int) -> np.ndarray:
    """Little-endian PCM bytes (whole frames) -> ``(frames, channels)`` float32 in [-1, 1]."""
    if dtype == "s16":
        samples = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
    elif dtype == "s24":
        raw = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        value = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        value = np.where(value >= 1 << 23, value - (1 << 24), value)
        samples = value.astype(np.float32) / float(1 << 23)
    elif dtype == "f32":
        samples = np.frombuffer(data, "<f4").astype(np.float32)
    else:
        raise ValueError(f"unknown PCM type {dtype!r}")
    return samples.reshape(-1, channels)


def encode_pcm(block: np.ndarray, dtype: str) -> bytes:
    """``(frames, channels)`` float -> little-endian PCM bytes (integers are clipped and rounded)."""
    if dtype == "f32":
        return np.ascontiguousarray(block, "<f4").tobytes()
    if dtype == "s16":
        return np.round(np.clip(block, -1.0, 32767 / 32768) * 32768.0).astype("<i2").tobytes()
    if dtype == "s24":
        value = np.round(np.clip(block, -1.0, (2 ** 23 - 1) / 2 ** 23) * float(1 << 23)).astype(np.int32).reshape(-1)
        value = np.where(value < 0, value + (1 << 24), value).astype(np.uint32)
        out = np.empty((len(value), 3), np.uint8)
        out[:, 0], out[:, 1], out[:, 2] = value & 0xFF, (value >> 8) & 0xFF, (value >> 16) & 0xFF
        return out.tobytes()
    raise ValueError(f"unknown PCM type {dtype!r}")


class PcmReader:
    """Reads whole frames from a binary stream as they arrive; a trailing partial frame is counted and dropped."""

    def __init__(self, stream: BinaryIO, dtype: str, channels: int, prefix: bytes = b"", limit: int | None = None):
        self.stream, self.dtype, self.channels = stream, dtype, channels
        self.frame_bytes = _BYTES[dtype] * channels
        self.pending = prefix
        self.remaining = limit  # data bytes still to read (a WAV data chunk's size), None = until EOF
        self.dropped_bytes = 0

    def read(self, frames: int) -> np.ndarray | None:
        """Up to ``frames`` frames, as soon as at least one whole frame is available; None at the end."""
        wanted = frames * self.frame_bytes
        while len(self.pending) < self.frame_bytes:
            chunk = self._read_some(wanted - len(self.pending))
            if not chunk:
                self.dropped_bytes += len(self.pending)
                self.pending = b""
                return None
            self.pending += chunk
        usable = min(len(self.pending), wanted) // self.frame_bytes * self.frame_bytes
        data, self.pending = self.pending[:usable], self.pending[usable:]
        return decode_pcm(data, self.dtype, self.channels)

    def _read_some(self, size: int) -> bytes:
        if self.remaining is not None:
            size = min(size, self.remaining)
            if size <= 0:
                return b""
        reader = getattr(self.stream, "read1", self.stream.read)
        chunk = reader(max(size, 1))
        if self.remaining is not None:
            self.remaining -= len(chunk)
        return chunk


class WavHeader:
    """Format of a WAV stream: rate, channels, PCM type and data size (None when streamed without a size)."""

    def __init__(self, sample_rate: int, channels: int, dtype: str, data_bytes: int | None):
        self.sample_rate, self.channels, self.dtype, self.data_bytes = sample_rate, channels, dtype, data_bytes


def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_wav_header(stream: BinaryIO) -> WavHeader:
    """Parse a RIFF/WAVE header up to the start of the data chunk. Raises InputError."""
    riff = _read_exact(stream, 12)
    if len(riff) < 12 or riff[:4] not in (b"RIFF", b"RF64") or riff[8:12] != b"WAVE":
        raise InputError("stdin is not a WAV stream (no RIFF/WAVE header)")
    fmt = None
    while True:
        head = _read_exact(stream, 8)
        if len(head) < 8:
            raise InputError("WAV stream ended before its data chunk")
        chunk_id, size = head[:4], struct.unpack("<I", head[4:])[0]
        if chunk_id == b"data":
            break
        body = _read_exact(stream, size + (size & 1))
        if chunk_id == b"fmt ":
            fmt = body
    if fmt is None or len(fmt) < 16:
        raise InputError("WAV stream has no fmt chunk before its data")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == 0xFFFE and len(fmt) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's first two bytes
        tag = struct.unpack("<H", fmt[24:26])[0]
    dtype = {(1, 16): "s16", (1, 24): "s24", (3, 32): "f32"}.get((tag, bits))
    if dtype is None:
        raise InputError(f"unsupported WAV sample format (format tag {tag}, {bits} bits): use 16/24-bit PCM or "
                         "32-bit float")
    if channels < 1 or rate < 1:
        raise InputError("WAV header has no channels or no sample rate")
    data_bytes = None if size in (0, 0xFFFFFFFF) or riff[:4] == b"RF64" else size
    return WavHeader(rate, channels, dtype, data_bytes)


def wav_header(sample_rate: int, channels: int, dtype: str, data_bytes: int | None) -> bytes:
    """A WAV header; with ``data_bytes`` None the sizes say 'unknown' (0xFFFFFFFF) as streaming tools write."""
    bits = _BYTES[dtype] * 8
    tag = 3 if dtype == "f32" else 1
    block_align = channels * _BYTES[dtype]
    fmt = struct.pack("<HHIIHH", tag, channels, sample_rate, sample_rate * block_align, block_align, bits)
    data_size = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff_size = 0xFFFFFFFF if data_bytes is None else 4 + 8 + len(fmt) + 8 + data_bytes
    return (b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
            + b"data" + struct.pack("<I", data_size))
