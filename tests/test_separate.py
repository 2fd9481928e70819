"""stream-dc separate as a user runs it: stems like the input, modes and reconstructions, offline options, the
plot, bad inputs, silence, a corrupt model bundle, and options the chosen mode cannot apply."""
import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from stream_dc.bundle import load_bundle
from tests.commands import audio, run


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



def test_stream_only_latency_is_reported_in_offline_mode(tmp_path):
    path = tmp_path / "song.wav"
    sf.write(path, audio(1.0, 16000, 1), 16000)
    result = run(["separate", "--latency", "live", str(path), "-o", str(tmp_path / "out"), "--device", "cpu"],
                 text=True)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "--latency applies to stream mode only" in line]
    assert len(warnings) == 1 and "warning" in warnings[0]
    assert (tmp_path / "out" / "song" / "vocals.wav").exists()
