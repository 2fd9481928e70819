"""Property-based faults (Hypothesis): WAV files with any header the RIFF format allows (rates, channel counts,
sample formats, lengths, damaged sizes) and any sample values. ``stream-dc separate`` either separates them
correctly (stems of the input's rate, channels and exact length, finite, summing to the mixture) or refuses them
in one line naming the file; it never raises, hangs or writes outside OUT."""
import struct

import numpy as np
import pytest
import soundfile as sf

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from stream_dc.apps.report import Reporter  # noqa: E402
from stream_dc.apps.separate import SeparateSession  # noqa: E402
from stream_dc.options import SeparationOptions  # noqa: E402

FORMATS = {"s16": (1, 16, "<i2"), "s24": (1, 24, None), "f32": (3, 32, "<f4"), "u8": (1, 8, "u1"),
           "f64": (3, 64, "<f8")}


def wav_bytes(rate: int, channels: int, fmt: str, samples: np.ndarray, data_size: int | None) -> bytes:
    """A WAV file built by hand: ``samples`` ``(frames, channels)`` in [-1, 1] (or anything for floats) in format
    ``fmt``, its data chunk's size field set to ``data_size`` when given (a damaged header)."""
    tag, bits, dtype = FORMATS[fmt]
    if fmt == "s24":
        values = np.clip(np.nan_to_num(samples), -1, 1) * (2 ** 23 - 1)
        ints = values.astype(np.int32).reshape(-1)
        data = b"".join(int(v & 0xFFFFFF).to_bytes(3, "little") for v in ints)
    elif fmt in ("s16", "u8"):
        scale = 32767 if fmt == "s16" else 127
        values = np.clip(np.nan_to_num(samples), -1, 1) * scale + (128 if fmt == "u8" else 0)
        data = values.astype(dtype).tobytes()
    else:
        data = samples.astype(dtype).tobytes()
    block = channels * bits // 8
    fmt_chunk = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    size = len(data) if data_size is None else data_size
    return (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt_chunk) + 8 + size) + b"WAVE" + b"fmt "
            + struct.pack("<I", len(fmt_chunk)) + fmt_chunk + b"data" + struct.pack("<I", size) + data)


@st.composite
def wav_files(draw):
    rate = draw(st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 48001, 96000, 999, 800_000]))
    channels = draw(st.sampled_from([1, 2, 3, 6, 65]))
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    frames = draw(st.integers(0, 3000))
    kind = draw(st.sampled_from(["noise", "silence", "loud", "nan", "inf", "clipped"]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 16)))
    samples = (0.2 * rng.standard_normal((frames, channels))).astype(np.float64)
    if kind == "silence":
        samples[:] = 0
    elif kind == "clipped":
        samples = np.sign(samples)
    elif frames and kind in ("loud", "nan", "inf"):
        samples[rng.integers(frames), rng.integers(channels)] = {"loud": 1e20, "nan": np.nan, "inf": np.inf}[kind]
    damaged = draw(st.sampled_from([None, None, 0, 7, 2 ** 31]))
    return rate, channels, fmt, samples, damaged


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(wav_files())
def test_separate_either_separates_correctly_or_refuses_in_one_line(tmp_path_factory, case):
    rate, channels, fmt, samples, damaged = case
    folder = tmp_path_factory.mktemp("case")
    path = folder / "in.wav"
    path.write_bytes(wav_bytes(rate, channels, fmt, samples, damaged))
    out = folder / "out"
    lines = []

    class Lines:
        def write(self, text):
            lines.extend(line for line in text.splitlines() if line.strip())

        def flush(self):
            pass

        def isatty(self):
            return False

    status = SeparateSession(SeparationOptions(device="cpu"), [str(path)], out,
                             reporter=Reporter("separate", quiet=True, stream=Lines())).run()
    written = [p for p in folder.rglob("*") if p.is_file() and p != path]
    assert all(out in p.parents for p in written)  # nothing outside OUT
    if status == 0:
        info = sf.info(path)
        vocals, got_rate = sf.read(out / "in" / "vocals.wav", dtype="float64", always_2d=True)
        accompaniment, _ = sf.read(out / "in" / "accompaniment.wav", dtype="float64", always_2d=True)
        mixture, _ = sf.read(path, dtype="float64", always_2d=True)
        assert got_rate == info.samplerate and vocals.shape == accompaniment.shape == mixture.shape
        assert np.all(np.isfinite(vocals)) and np.all(np.isfinite(accompaniment))
        pcm = info.subtype.startswith("PCM")
        tolerance = 1e-3 if pcm else 1e-4 * max(1.0, float(np.max(np.abs(mixture))))
        error = np.abs(vocals + accompaniment - mixture).max(axis=1)
        # a stem of a loud mix can peak above full scale: integer files clip it there, and say so
        full = (np.maximum(np.abs(vocals), np.abs(accompaniment)) >= 1 - 2 ** -14).any(axis=1) if pcm else False
        assert np.max(error[~full], initial=0.0) <= tolerance + 2 ** -15
        warned = [line for line in lines if "went past full scale" in line and "--bits float" in line]
        assert lines == warned and (np.max(error, initial=0.0) <= tolerance + 2 ** -15 or warned), lines
    else:
        assert status == 1 and len(lines) == 1, lines
        assert lines[0].startswith(f"stream-dc separate: error: {path}: "), lines
        assert written == [] or all(p.suffix != ".part" for p in written)
