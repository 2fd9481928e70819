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


def test_m4a_through_ffmpeg_and_folders_of_songs(tmp_path):
    """What libsndfile cannot read (m4a/AAC) is decoded by ffmpeg; a folder stands for the audio files below it,
    in name order, other files ignored."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    import subprocess

    songs = tmp_path / "songs"
    (songs / "disc 2").mkdir(parents=True)
    sf.write(tmp_path / "source.wav", audio(2.0, 44100, 2), 44100)
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(tmp_path / "source.wav"), "-c:a", "aac", "-b:a", "128k",
                    str(songs / "b.m4a")], check=True)
    sf.write(songs / "a.flac", audio(1.0, 22050, 1), 22050)
    sf.write(songs / "disc 2" / "c.wav", audio(0.5, 16000, 2), 16000)
    (songs / "cover.jpg").write_bytes(b"\xff\xd8 not audio")
    result = run(["separate", str(songs), "-o", str(tmp_path / "out"), "--device", "cpu"], text=True)
    assert result.returncode == 0, result.stderr
    order = [line.split(" -> ")[0].rsplit("/", 1)[-1] for line in result.stderr.splitlines() if " -> " in line]
    assert order == ["a.flac", "b.m4a", "c.wav"]
    vocals, rate = sf.read(tmp_path / "out" / "b" / "vocals.wav")
    assert rate == 44100 and vocals.shape[1] == 2 and abs(len(vocals) - 88200) < 0.05 * 88200
    assert sf.info(tmp_path / "out" / "b" / "vocals.wav").subtype == "FLOAT"  # compressed input: float stems


@pytest.mark.parametrize("file_format,bits,subtype", [("flac", "16", "PCM_16"), ("flac", None, "PCM_24"),
                                                      ("wav", "24", "PCM_24"), ("mp3", None, "MPEG_LAYER_III")])
def test_stem_formats_and_bit_depths(tmp_path, file_format, bits, subtype):
    sf.write(tmp_path / "song.wav", audio(1.5, 44100, 2), 44100, subtype="FLOAT")
    extra = ["--bits", bits] if bits else []
    result = run(["separate", str(tmp_path / "song.wav"), "-o", str(tmp_path / "out"), "--device", "cpu", "-q",
                  "--format", file_format] + extra, text=True)
    assert result.returncode == 0, result.stderr
    info = sf.info(tmp_path / "out" / "song" / f"vocals.{file_format}")
    assert info.subtype == subtype and info.samplerate == 44100 and info.channels == 2
    if file_format != "mp3":
        assert info.frames == int(1.5 * 44100)
    assert sorted(p.name for p in (tmp_path / "out" / "song").iterdir()) == [f"accompaniment.{file_format}",
                                                                            f"vocals.{file_format}"]


def test_a_bit_depth_a_format_cannot_hold_is_refused(tmp_path):
    sf.write(tmp_path / "song.wav", audio(0.5, 16000, 1), 16000)
    result = run(["separate", str(tmp_path / "song.wav"), "-o", str(tmp_path / "out"), "--format", "mp3", "--bits",
                  "24"], text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == "stream-dc separate: error: --bits 24 does not apply to mp3: choose none (the " \
                                    "format is compressed)"


def test_the_readmes_python_example_runs(tmp_path):
    """The README's Python example, as it stands there, run in a fresh interpreter from the project's folder."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    code += "\nassert vocals.shape == audio.shape and len(np.concatenate(out)) == len(audio) + " \
            "processor.latency_samples\n"
    result = subprocess.run([sys.executable, "-c", "import numpy as np\n" + code], cwd=root, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
