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


# -- the second battery: links, hangs, silent wrong output, signals, tampered bundles ---------------------------------
def test_no_write_goes_through_a_link_planted_at_a_temporary_name(tmp_path, capsys, monkeypatch):
    """Temporary names are unpredictable, and one that is taken (here, by a planted link to a file outside OUT) is
    never opened: another is drawn, and the outside file stays as it was."""
    pytest.importorskip("matplotlib")
    from stream_dc import files

    source = write(tmp_path / "song.wav", 2.0)
    out = tmp_path / "out"
    (out / "song").mkdir(parents=True)
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    for name in ("vocals.wav", "accompaniment.wav", "separation.png"):
        (out / "song" / f".{name}.planted.part").symlink_to(outside)
    tokens = iter(["planted"] * 3 + [f"fresh{n}" for n in range(3)])
    monkeypatch.setattr(files.secrets, "token_hex", lambda size: next(tokens))
    status, err = run_cli(["separate", str(source), "-o", str(out), "--plot", "-q", "--device", "cpu"], capsys)
    assert status == 0, err
    assert outside.read_text() == "keep me"
    assert {p.name for p in (out / "song").iterdir() if not p.is_symlink()} == {
        "vocals.wav", "accompaniment.wav", "separation.png"}


def test_a_linked_output_folder_or_a_relative_out_stays_inside(tmp_path, capsys, monkeypatch):
    """The stays-inside-OUT check is made on resolved paths: a subfolder that is a link to elsewhere is refused
    (nothing is written there), and a relative -o works as an absolute one."""
    source = write(tmp_path / "song.wav")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "song").symlink_to(elsewhere, target_is_directory=True)
    status, err = run_cli(["separate", str(source), "-o", str(out), "-q", "--device", "cpu"], capsys)
    assert status == 1 and "would lie outside" in err and len(err.strip().splitlines()) == 1
    assert list(elsewhere.iterdir()) == []
    monkeypatch.chdir(tmp_path)
    status, err = run_cli(["separate", "song.wav", "-o", "relative", "-q", "--device", "cpu"], capsys)
    assert status == 0, err
    assert sorted(files_below(tmp_path / "relative")) == ["song", "song/accompaniment.wav", "song/vocals.wav"]


def test_a_fifo_input_is_refused_at_once_and_the_batch_goes_on(tmp_path):
    import os

    fifo = tmp_path / "fifo.wav"
    os.mkfifo(fifo)
    good = write(tmp_path / "good.wav")
    result = subprocess.run(CLI + ["separate", str(fifo), str(good), "-o", str(tmp_path / "out"), "--device", "cpu"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [f"stream-dc separate: error: {fifo}: not a regular file (a pipe or a device): give a file, or "
                      "use stream-dc stream"]
    assert files_below(tmp_path / "out") == ["good", "good/accompaniment.wav", "good/vocals.wav"]


def test_huge_float_samples_are_refused_never_turned_into_nan(tmp_path, capsys):
    loud = noise(1.0, 16000, 2)
    loud[100, 0] = 1e20
    sf.write(tmp_path / "loud.wav", loud, 16000, subtype="FLOAT")
    status, err = run_cli(["separate", str(tmp_path / "loud.wav"), "-o", str(tmp_path / "out"), "--device", "cpu"],
                          capsys)
    assert status == 1 and "beyond 1000 times full scale" in err and files_below(tmp_path / "out") == []
    result = subprocess.run(CLI + ["stream", "--rate", "16000", "--channels", "2", "--dtype", "f32", "-q"],
                            input=encode_pcm(loud, "f32"), capture_output=True)
    assert result.returncode == 1
    assert result.stderr.decode().strip().splitlines()[-1].startswith("stream-dc stream: error: stdin: the audio has "
                                                                      "samples of 1e+20")
    assert not np.any(np.isnan(np.frombuffer(result.stdout, "<f4")))


def test_a_truncated_file_is_named_not_separated_short(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal(44100 * 2)).astype(np.float32)
    sf.write(tmp_path / "full.mp3", np.stack([x, x], 1), 44100, format="MP3")
    data = (tmp_path / "full.mp3").read_bytes()
    (tmp_path / "cut.mp3").write_bytes(data[:len(data) // 2])  # its header still announces 2 s
    status, err = run_cli(["separate", str(tmp_path / "cut.mp3"), "-o", str(tmp_path / "out"), "--device", "cpu"],
                          capsys)
    assert status == 1
    assert f"error: {tmp_path / 'cut.mp3'}: decoded" in err and "truncated or corrupt" in err
    assert files_below(tmp_path / "out") == []


def test_a_closed_terminal_ends_a_separation_cleanly(tmp_path):
    """SIGHUP (a closed terminal, a dropped ssh) is handled like SIGTERM: status 129, nothing half-written."""
    import time

    long = write(tmp_path / "long.wav", seconds=120.0, rate=44100, channels=2)
    process = subprocess.Popen(CLI + ["separate", str(long), "-o", str(tmp_path / "out"), "--device", "cpu"],
                               stderr=subprocess.PIPE, text=True)
    try:
        assert "model" in process.stderr.readline()  # loaded, now separating
        time.sleep(1.0)
        process.send_signal(signal.SIGHUP)
        _, rest = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 129, rest
    assert "interrupted" in rest and "Traceback" not in rest
    assert not any(p.is_file() for p in (tmp_path / "out").rglob("*")) if (tmp_path / "out").exists() else True


@pytest.mark.parametrize("closed", ["<&-", ">&-"])
def test_stream_with_stdin_or_stdout_closed_says_so(closed):
    import shlex

    command = " ".join(shlex.quote(part) for part in CLI + ["stream", "--device", "cpu"])
    result = subprocess.run(["bash", "-c", f"{command} {closed}"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    stream = "input" if closed == "<&-" else "output"
    assert result.stderr.strip() == f"stream-dc stream: error: standard {stream} is closed: give the audio on stdin " \
                                    "and send stdout to a file or a pipe"


@pytest.mark.parametrize("field,value,message", [
    (("features", "hop_length"), 0, "features.hop_length is 0"),
    (("features", "fmax"), -1, "features.fmax is -1"),
    (("features", "n_mels"), "150", "features.n_mels must be a whole number, not '150'"),
    (("mask_softness",), float("nan"), "mask_softness is nan"),
    (("provenance",), "deep", "nested more than 32 levels deep"),
])
def test_a_tampered_bundle_config_is_one_line_naming_the_field(tmp_path, field, value, message):
    import json
    import shutil

    from stream_dc.bundle import load_bundle

    bundle = tmp_path / "bundle"
    shutil.copytree(load_bundle().directory, bundle)
    config = json.loads((bundle / "config.json").read_text())
    target = config
    for key in field[:-1]:
        target = target[key]
    if value == "deep":
        value = nested = []
        for _ in range(40):
            nested.append([])
            nested = nested[0]
    target[field[-1]] = value
    (bundle / "config.json").write_text(json.dumps(config))
    source = write(tmp_path / "a.wav")
    result = subprocess.run(CLI + ["separate", str(source), "-o", str(tmp_path / "out"), "--model", str(bundle)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "config.json" in lines[0], lines


def test_evaluate_checks_its_report_path_before_evaluating(tmp_path):
    for path, message in ((tmp_path / "missing" / "r.json", "does not exist"), (tmp_path, "is a folder")):
        result = subprocess.run(CLI + ["evaluate", "--data", str(tmp_path / "no-data"), "--json", str(path)],
                                capture_output=True, text=True)
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_a_file_name_cannot_forge_a_second_error_line(tmp_path, capsys):
    forged = tmp_path / "song.wav\nstream-dc separate: error: forged"
    status, err = run_cli(["separate", str(forged), "-o", str(tmp_path / "out"), "--device", "cpu"], capsys)
    assert status == 1
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "\\n" in errors[0]


def test_a_latency_value_given_twice_is_refused():
    result = subprocess.run(CLI + ["stream", "--latency", "hop=5,lookahead=5,hop=6"], input=b"", capture_output=True)
    assert result.returncode == 1
    assert b"hop given more than once" in result.stderr
