"""Raw PCM codecs and WAV headers of the pipe."""
import numpy as np
import pytest

from stream_dc.pcm import decode_pcm, encode_pcm, read_wav_header, wav_header
from tests.conftest import noise


@pytest.mark.parametrize("dtype", ["s16", "s24", "f32"])
def test_pcm_codecs_round_trip(dtype):
    x = np.clip(noise(0.1, 16000, 2, seed=3) * 5, -1, 0.999)
    y = decode_pcm(encode_pcm(x, dtype), dtype, 2)
    step = {"s16": 1 / 32768, "s24": 1 / 2 ** 23, "f32": 1e-7}[dtype]
    np.testing.assert_allclose(y, x, atol=step)


def test_wav_header_round_trip():
    import io

    header = wav_header(22050, 3, "s16", 600)
    parsed = read_wav_header(io.BytesIO(header + b"\0" * 600))
    assert (parsed.sample_rate, parsed.channels, parsed.dtype, parsed.data_bytes) == (22050, 3, "s16", 600)
    streamed = read_wav_header(io.BytesIO(wav_header(8000, 1, "f32", None)))
    assert streamed.data_bytes is None and streamed.dtype == "f32"
