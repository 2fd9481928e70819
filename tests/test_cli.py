"""The stream-dc command line as a user runs it: file separation, pipes, and every kind of bad input."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from stream_dc.bundle import load_bundle
from stream_dc.files import replaced_on_success
from stream_dc.pcm import decode_pcm, encode_pcm, read_wav_header, wav_header
from tests.conftest import noise, tone

CLI = [sys.executable, "-m", "stream_dc"]


def run(args, **kwargs):
    return subprocess.run(CLI + args, capture_output=True, **kwargs)


def audio(seconds, rate, channels):
    return tone(seconds, rate, channels) + noise(seconds, rate, channels)


@pytest.mark.parametrize("name,rate,channels,subtype", [
    ("mono16k.wav", 16000, 1, "PCM_16"), ("stereo44k.flac", 44100, 2, "PCM_24"), ("stereo48k.ogg", 48000, 2, None),
    ("stereo44k.mp3", 44100, 2, None), ("quad96k.wav", 96000, 4, "FLOAT"), ("mono8k.wav", 8000, 1, "PCM_16"),
])
def test_separate_writes_stems_like_the_input(tmp_path, name, rate, channels, subtype):
    path = tmp_path / name
    sf.write(path, audio(1.5, rate, channels), rate, subtype=subtype)
    frames = sf.info(path).frames
    result = run(["separate", str(path), "-o", str(tmp_path / "out"), "--device", "cpu"], text=True)
    assert result.returncode == 0, result.stderr
    assert "CPUExecutionProvider" in result.stderr
    for stem in ("vocals", "accompaniment"):
        info = sf.info(tmp_path / "out" / path.stem / f"{stem}.wav")
        assert (info.samplerate, info.channels, info.frames) == (rate, channels, frames)
    expected = subtype if subtype in ("PCM_16", "PCM_24", "FLOAT") else "FLOAT"
    assert sf.info(tmp_path / "out" / path.stem / "vocals.wav").subtype == expected


def test_separate_modes_and_reconstructions(tmp_path):
    path = tmp_path / "song.wav"
    sf.write(path, audio(2.0, 22050, 2), 22050)
    for extra in (["--mode", "stream", "--latency", "low"], ["--reconstruction", "inverse-mel"]):
        out = tmp_path / extra[1]
        result = run(["separate", str(path), "-o", str(out), "--device", "cpu", "-q"] + extra, text=True)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        vocals, rate = sf.read(out / "song" / "vocals.wav")
        assert rate == 22050 and vocals.shape == (44100, 2)


def test_separate_offline_options_reach_the_separator(tmp_path):
    from stream_dc.separator import Separator

    path = tmp_path / "song.wav"
    mix = audio(2.0, 44100, 2)
    mix[:, 1] *= 0.5
    sf.write(path, mix, 44100, subtype="FLOAT")
    mix = sf.read(path, dtype="float32")[0]
    for extra, options in (([], {}), (["--no-channel-masks", "--synthesis-window", "32"],
                                      {"channel_masks": False, "synthesis_window_ms": 32})):
        out = tmp_path / f"out{len(extra)}"
        result = run(["separate", str(path), "-o", str(out), "--device", "cpu", "-q"] + extra, text=True)
        assert result.returncode == 0, result.stderr
        vocals = sf.read(out / "song" / "vocals.wav", dtype="float32")[0]
        np.testing.assert_allclose(vocals, Separator(device="cpu", **options).separate(mix, 44100)[0], atol=1e-6)


def test_separate_plot_writes_a_picture(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "song.wav"
    sf.write(path, audio(2.0, 16000, 1), 16000)
    result = run(["separate", str(path), "-o", str(tmp_path / "out"), "--device", "cpu", "--plot"], text=True)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "out" / "song"
    assert sorted(p.name for p in folder.iterdir()) == ["accompaniment.wav", "separation.png", "vocals.wav"]
    assert (folder / "separation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs_fail_cleanly_and_others_complete(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(good, audio(1.0, 16000, 1), 16000)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(os.urandom(4000))
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 2), np.float32), 44100)
    nan = tmp_path / "nan.wav"
    signal = audio(1.0, 16000, 1)
    signal[5000] = np.nan
    sf.write(nan, signal, 16000, subtype="FLOAT")
    (tmp_path / "no-audio").mkdir()
    inputs = [tmp_path / "missing.wav", tmp_path / "no-audio", junk, empty, nan, good]
    out = tmp_path / "out"
    result = run(["separate"] + [str(p) for p in inputs] + ["-o", str(out), "--device", "cpu"], text=True)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(errors) == 5
    for expected in ("no such file", "a folder with no audio files", "not a readable audio file", "empty", "NaN"):
        assert any(expected in line for line in errors), (expected, errors)
    assert "Traceback" not in result.stderr
    # only the good input has stems, and no temporary files are left behind
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "good/accompaniment.wav", "good/vocals.wav"]


def test_silent_input_gives_silent_stems(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros((30000, 2), np.float32), 44100)
    result = run(["separate", str(path), "-o", str(tmp_path / "out"), "--device", "cpu"], text=True)
    assert result.returncode == 0, result.stderr
    vocals, _ = sf.read(tmp_path / "out" / "silence" / "vocals.wav")
    assert vocals.shape == (30000, 2) and not np.any(vocals)


def test_corrupt_model_bundle(tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(load_bundle().directory, bundle)
    config = json.loads((bundle / "config.json").read_text())
    config["model_sha256"] = "0" * 64
    (bundle / "config.json").write_text(json.dumps(config))
    path = tmp_path / "a.wav"
    sf.write(path, audio(0.5, 16000, 1), 16000)
    result = run(["separate", str(path), "-o", str(tmp_path / "out"), "--model", str(bundle)], text=True)
    assert result.returncode == 1 and "checksum" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
    result = run(["separate", str(path), "-o", str(tmp_path / "out"), "--model", str(tmp_path / "nowhere")],
                 text=True)
    assert result.returncode == 1 and "not a directory" in result.stderr


def test_replaced_on_success_never_leaves_a_half_written_file(tmp_path):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), replaced_on_success(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    with replaced_on_success(target) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


@pytest.mark.parametrize("dtype", ["s16", "s24", "f32"])
def test_pcm_codecs_round_trip(dtype):
    x = np.clip(noise(0.1, 16000, 2, seed=3) * 5, -1, 0.999)
    y = decode_pcm(encode_pcm(x, dtype), dtype, 2)
    step = {"s16": 1 / 32768, "s24": 1 / 2 ** 23, "f32": 1e-7}[dtype]
    np.testing.assert_allclose(y, x, atol=step)


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


def test_wav_header_round_trip():
    import io

    header = wav_header(22050, 3, "s16", 600)
    parsed = read_wav_header(io.BytesIO(header + b"\0" * 600))
    assert (parsed.sample_rate, parsed.channels, parsed.dtype, parsed.data_bytes) == (22050, 3, "s16", 600)
    streamed = read_wav_header(io.BytesIO(wav_header(8000, 1, "f32", None)))
    assert streamed.data_bytes is None and streamed.dtype == "f32"


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


def test_export_and_train_report_bad_arguments(tmp_path):
    pytest.importorskip("torch")
    result = run(["export", str(tmp_path / "missing.pt"), "-o", str(tmp_path / "b")], text=True)
    assert result.returncode == 1 and "checkpoint not found" in result.stderr
    result = run(["train", "--data", str(tmp_path / "nowhere"), "--validation", "x", "--out", str(tmp_path / "r")],
                 text=True)
    assert result.returncode == 1 and "dataset folder not found" in result.stderr
