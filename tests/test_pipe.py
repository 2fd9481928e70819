"""stream-dc stream: raw PCM and WAV through a pipe give the streaming processor's samples; truncated input, a
broken pipe and bad parameters."""
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from stream_dc.pcm import decode_pcm, encode_pcm
from tests.commands import audio, run


def processed_directly(bundle, x, rate, block, **options):
    """What ``StreamProcessor`` gives for ``x`` fed in ``block``-frame pieces, aligned as the pipe aligns it."""
    from stream_dc.stream import StreamProcessor

    processor = StreamProcessor(bundle, rate, x.shape[1], device="cpu", **options)
    out = [processor.process(x[i:i + block]) for i in range(0, len(x), block)] + [processor.flush()]
    return np.concatenate(out)[processor.latency_samples:]


@pytest.mark.parametrize("dtype", ["s16", "s24", "f32"])
def test_stream_raw_pcm_gives_the_processors_samples(bundle, dtype):
    x = audio(2.0, 44100, 2)
    data = encode_pcm(x, dtype)
    result = run(["stream", "--rate", "44100", "--channels", "2", "--dtype", dtype, "--device", "cpu"], input=data)
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout) == len(data)
    status = result.stderr.decode()
    assert "latency" in status and "real-time factor" in status
    expected = processed_directly(bundle, decode_pcm(data, dtype, 2), 44100, 1024)
    step = {"s16": 1 / 32768, "s24": 1 / 2 ** 23, "f32": 1e-6}[dtype]
    np.testing.assert_allclose(decode_pcm(result.stdout, dtype, 2), expected, atol=step * 1.01)


def test_stream_no_align_adds_the_latency(bundle):
    from stream_dc.stream import StreamProcessor

    x = audio(1.0, 16000, 1)
    latency = StreamProcessor(bundle, 16000, 1).latency_samples
    result = run(["stream", "--rate", "16000", "--channels", "1", "--dtype", "f32", "--no-align", "-q"],
                 input=encode_pcm(x, "f32"))
    assert result.returncode == 0 and result.stderr == b""
    assert len(result.stdout) == (len(x) + latency) * 4
    out = decode_pcm(result.stdout, "f32", 1)
    assert not np.any(out[:latency])
    np.testing.assert_allclose(out[latency:], processed_directly(bundle, x, 16000, 1024), atol=1e-6)


def test_stream_wav_in_wav_out(tmp_path, bundle):
    x = audio(1.5, 48000, 2)
    sf.write(tmp_path / "in.wav", x, 48000, subtype="PCM_24")
    data = (tmp_path / "in.wav").read_bytes()
    result = run(["stream", "--wav", "--keep", "vocals", "--vocal-gain", "-12", "-q"], input=data)
    assert result.returncode == 0, result.stderr.decode()
    (tmp_path / "out.wav").write_bytes(result.stdout)
    info = sf.info(tmp_path / "out.wav")
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (48000, 2, len(x), "PCM_24")
    heard = sf.read(tmp_path / "in.wav", dtype="float32")[0]
    expected = processed_directly(bundle, heard, 48000, 1024, keep="vocals", vocal_gain_db=-12)
    np.testing.assert_allclose(sf.read(tmp_path / "out.wav", dtype="float32")[0], expected, atol=2 / 2 ** 23)


def test_stream_drops_a_truncated_last_frame():
    data = encode_pcm(audio(0.5, 16000, 2), "s16") + b"\x01\x02\x03"
    result = run(["stream", "--rate", "16000", "--channels", "2", "--dtype", "s16"], input=data)
    assert result.returncode == 0
    assert len(result.stdout) == len(data) - 3
    assert "dropped 3 trailing bytes" in result.stderr.decode()


def test_stream_broken_pipe_ends_cleanly():
    data = encode_pcm(audio(6.0, 44100, 2), "s16")
    consumer = "import sys; sys.stdin.buffer.read(1000)"
    command = (f"{sys.executable} -m stream_dc stream --rate 44100 --channels 2 --dtype s16 --no-align | "
               f"{sys.executable} -c '{consumer}'")
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {command}; echo ${{PIPESTATUS[0]}} >&2"],
                            input=data, capture_output=True)
    stderr = result.stderr.decode()
    assert "Traceback" not in stderr and "BrokenPipe" not in stderr
    assert stderr.strip().splitlines()[-1] == "0"


@pytest.mark.parametrize("args,message", [
    (["--rate", "0"], "--rate"), (["--channels", "0"], "--channels"), (["--block", "0"], "--block"),
    (["--latency", "instant"], "unknown latency preset"), (["--latency", "hop=9"], "custom latency"),
    (["--wav"], "not a WAV stream"),
])
def test_stream_bad_parameters(args, message):
    result = run(["stream"] + args, input=b"garbage bytes!")
    assert result.returncode != 0
    assert message in result.stderr.decode() and "Traceback" not in result.stderr.decode()


def test_stream_says_when_integer_output_clipped():
    """A full-scale square wave: the accompaniment overshoots its edges; s16 output clips it and says so, f32
    output keeps it and says nothing."""
    rate = 16000
    t = np.arange(rate * 3) / rate
    square = np.sign(np.sin(2 * np.pi * 220 * t) + 1e-9) * np.sign(np.sin(2 * np.pi * 3 * t) + 1e-9)
    x = np.stack([square, square], axis=1).astype(np.float32)
    said = {}
    for dtype in ("s16", "f32"):
        result = run(["stream", "--rate", str(rate), "--channels", "2", "--dtype", dtype, "--device", "cpu"],
                     input=encode_pcm(x, dtype))
        assert result.returncode == 0
        said[dtype] = "went past full scale" in result.stderr.decode()
        if dtype == "f32":
            peak = np.abs(decode_pcm(result.stdout, "f32", 2)).max()
    assert peak > 1.0 and said == {"s16": True, "f32": False}, (peak, said)
