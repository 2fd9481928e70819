"""Fault injection: every fault ends in one line naming the input, a non-zero status, no traceback, nothing
half-written and nothing outside the output folder."""
import errno
import signal
import subprocess

import numpy as np
import pytest
import soundfile as sf

from stream_dc.pcm import encode_pcm
from tests.commands import CLI, run_cli
from tests.conftest import noise, tone


def write(path, seconds=1.0, rate=16000, channels=1):
    sf.write(path, tone(seconds, rate, channels) + noise(seconds, rate, channels), rate, subtype="PCM_16",
             format="WAV")
    return path


def files_below(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("name", ["...wav", "..wav", ".wav", "a\x01b.wav", "-.wav"])
def test_outputs_stay_inside_the_output_folder(tmp_path, capsys, name):
    source = write(tmp_path / name)
    out = tmp_path / "nest" / "out"
    status, err = run_cli(["separate", str(source), "-o", str(out), "-q", "--device", "cpu"], capsys)
    assert status == 0, err
    written = files_below(tmp_path / "nest")
    assert all(path == "out" or path.startswith("out/") for path in written), written
    stems = [p for p in (tmp_path / "nest" / "out").rglob("*.wav")]
    assert len(stems) == 2 and all(p.parent.parent == out for p in stems)
    assert not any(c in str(p.relative_to(out)) for p in stems for c in ("\x01", ".."))


def test_disk_full_removes_the_partial_files_and_the_next_input_runs(tmp_path, capsys, monkeypatch):
    from stream_dc import files

    first, second = write(tmp_path / "first.wav", 3.0), write(tmp_path / "second.wav", 1.0)
    real_write = sf.SoundFile.write
    calls = {"n": 0}

    def full_disk(self, data):  # the first input's first write fails as a full disk does in libsndfile
        calls["n"] += 1
        if calls["n"] == 1:
            raise sf.LibsndfileError(0, "System error.")
        return real_write(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", full_disk)
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: type("Usage", (), {"free": 4096})())
    out = tmp_path / "out"
    status, err = run_cli(["separate", str(first), str(second), "-o", str(out), "--device", "cpu"], capsys)
    assert status == 1
    errors = [line for line in err.splitlines() if "error" in line]
    assert errors == [f"stream-dc separate: error: {first}: no space left on the device holding {out / 'first'}"]
    assert files_below(out) == ["second", "second/accompaniment.wav", "second/vocals.wav"]
    assert "Traceback" not in err


def test_any_failure_inside_one_input_is_reported_and_the_batch_goes_on(tmp_path, capsys, monkeypatch):
    from stream_dc.separator import Separator

    inputs = [write(tmp_path / f"{n}.wav") for n in ("one", "two", "three")]
    real = Separator.separate_source
    calls = {"n": 0}

    def flaky(self, source, sink):
        calls["n"] += 1
        if calls["n"] == 2:
            sink(np.zeros((100, 1), np.float32), np.zeros((100, 1), np.float32))  # half-way through
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code")
        return real(self, source, sink)

    monkeypatch.setattr(Separator, "separate_source", flaky)
    status, err = run_cli(["separate", *map(str, inputs), "-o", str(tmp_path / "out"), "--device", "cpu"], capsys)
    assert status == 1
    assert f"stream-dc separate: error: {inputs[1]}: RuntimeError: [ONNXRuntimeError]" in err
    assert files_below(tmp_path / "out") == ["one", "one/accompaniment.wav", "one/vocals.wav",
                                             "three", "three/accompaniment.wav", "three/vocals.wav"]


def test_failed_inputs_leave_no_folders_and_name_the_file(tmp_path, capsys):
    sf.write(tmp_path / "empty.wav", np.zeros((0, 2), np.float32), 44100)
    bad = noise(1.0, 16000, 1)
    bad[500] = np.nan
    sf.write(tmp_path / "nan.wav", bad, 16000, subtype="FLOAT")
    out = tmp_path / "out"
    status, err = run_cli(["separate", str(tmp_path / "empty.wav"), str(tmp_path / "nan.wav"), "-o", str(out),
                           "--device", "cpu"], capsys)
    assert status == 1
    assert f"error: {tmp_path / 'empty.wav'}: the audio is empty" in err
    assert f"error: {tmp_path / 'nan.wav'}: the audio contains NaN" in err
    assert files_below(out) == []


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_gains_are_refused(value):
    result = subprocess.run(CLI + ["stream", f"--vocal-gain={value}"], input="", capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"stream-dc stream: error: argument --vocal-gain: {value!r} is not a finite number")


def wait_for(stream, text: bytes, timeout=60.0) -> bytes:
    """Read ``stream`` until ``text`` has appeared (the condition a test waits on, instead of a fixed sleep)."""
    import select
    import time

    seen, deadline = b"", time.monotonic() + timeout
    while text not in seen:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out waiting for {text!r}; got {seen!r}"
        ready, _, _ = select.select([stream], [], [], remaining)
        if ready:
            chunk = stream.read1(4096) if hasattr(stream, "read1") else stream.read(1)
            assert chunk, f"stream closed before {text!r}; got {seen!r}"
            seen += chunk
    return seen


@pytest.mark.parametrize("sent,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stream_ends_cleanly_on_ctrl_c_and_sigterm(sent, status):
    process = subprocess.Popen(CLI + ["stream", "--rate", "16000", "--channels", "1", "--dtype", "s16"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdin.write(encode_pcm(tone(1.0, 16000, 1), "s16"))
    process.stdin.flush()
    seen = wait_for(process.stderr, b"onnxruntime")  # the processor is up and reading
    process.send_signal(sent)
    _, rest = process.communicate(timeout=30)
    stderr = (seen + rest).decode()
    assert process.returncode == status
    assert "interrupted" in stderr and "Traceback" not in stderr


def test_stream_of_nothing_says_so(tmp_path):
    result = subprocess.run(CLI + ["stream", "--device", "cpu"], input="", capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1] == "stream-dc stream: no audio received"


def test_stream_into_a_full_disk_is_one_line(monkeypatch, capsys):
    import io as stdio

    from stream_dc.apps.pipe import PipeSession
    from stream_dc.options import SeparationOptions

    class FullDisk(stdio.BytesIO):
        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

    data = stdio.BytesIO(encode_pcm(tone(3.0, 16000, 1), "s16"))
    session = PipeSession(SeparationOptions(device="cpu"), rate=16000, channels=1, align=False, stdin=data,
                          stdout=FullDisk())
    assert session.run() == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "stream-dc stream: error: cannot write the output: no space left on the " \
                                           "output device"


def test_progress_bars_only_on_a_terminal(tmp_path):
    inputs = [str(write(tmp_path / f"{n}.wav")) for n in ("a", "b")]
    result = subprocess.run(CLI + ["separate", *inputs, "-o", str(tmp_path / "out"), "--device", "cpu"],
                            capture_output=True, text=True)
    assert result.returncode == 0 and "\r" not in result.stderr and "it/s" not in result.stderr
