"""Fault injection: every fault ends in one line naming the input, a non-zero status, no traceback, nothing
half-written and nothing outside the output folder."""
import errno
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from stream_dc.apps import cli
from stream_dc.pcm import encode_pcm
from tests.conftest import noise, tone

CLI = [sys.executable, "-m", "stream_dc"]


def write(path, seconds=1.0, rate=16000, channels=1):
    sf.write(path, tone(seconds, rate, channels) + noise(seconds, rate, channels), rate, subtype="PCM_16",
             format="WAV")
    return path


def files_below(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def run_cli(args, capsys):
    status = cli.main(args)
    captured = capsys.readouterr()
    return status, captured.err


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


class FakePortAudioError(Exception):
    pass


class FakeSounddevice:
    """Two devices, as sounddevice lists them; asking for any other index fails as PortAudio does."""

    PortAudioError = FakePortAudioError
    devices = [{"index": 0, "name": "mic", "hostapi": 0, "max_input_channels": 2, "max_output_channels": 0,
                "default_samplerate": 48000.0},
               {"index": 1, "name": "speakers", "hostapi": 0, "max_input_channels": 0, "max_output_channels": 2,
                "default_samplerate": 48000.0}]

    class default:
        device = (0, 1)

    def query_devices(self, device=None, kind=None):
        if device is None:
            return self.devices
        if isinstance(device, int) and not 0 <= device < len(self.devices):
            raise FakePortAudioError(f"Error querying device {device}")
        matches = [d for d in self.devices if device in (d["index"], d["name"])]
        if not matches:
            raise ValueError(f"No {kind} device matching {device!r}")
        return matches[0]


@pytest.mark.parametrize("args,message", [
    (["--input", "5"], "no input device '5' (Error querying device 5); see stream-dc devices"),
    (["--output", "USB"], "no output device 'USB'"),
    (["--buffer", "-5"], "--buffer -5: the jitter buffer is a duration of 0 to 10000 ms"),
    (["--buffer", "1e300"], "--buffer 1e+300: the jitter buffer is a duration of 0 to 10000 ms"),
    (["--duration", "0"], "--duration 0: give a number of seconds above 0"),
])
def test_live_device_and_option_errors(capsys, monkeypatch, args, message):
    from stream_dc.apps import live

    monkeypatch.setattr(live, "sounddevice", lambda: FakeSounddevice())
    status, err = run_cli(["live", *args], capsys)
    assert status == 1
    assert len(err.strip().splitlines()) == 1 and message in err


def test_device_cuda_never_falls_back_to_the_cpu_silently(monkeypatch, bundle):
    """onnxruntime quietly runs on the CPU when CUDA fails to start; --device cuda must fail instead."""
    import onnxruntime

    from stream_dc.inference import DeviceError, EmbeddingModel

    class FallenBack:
        def __init__(self, model, options, providers):
            self.providers = providers

        def get_providers(self):
            return ["CPUExecutionProvider"]

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider",
                                                                          "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", FallenBack)
    with pytest.raises(DeviceError, match="could not start its CUDA provider"):
        EmbeddingModel(bundle, "cuda")


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


def test_quantisation_leaves_the_root_logger_alone():
    pytest.importorskip("onnx")
    import logging

    from export.onnx_graph import build_model, quantize_int8

    rng = np.random.default_rng(0)
    weights = {"layers": [{"W": rng.standard_normal((2, 32, 150)).astype(np.float32) * 0.1,
                           "R": rng.standard_normal((2, 32, 8)).astype(np.float32) * 0.1,
                           "B": np.zeros((2, 64), np.float32)}],
               "output_weight": rng.standard_normal((16, 3000)).astype(np.float32) * 0.1,
               "output_bias": np.zeros(3000, np.float32)}
    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.DEBUG)
    try:
        quantize_int8(build_model(weights, 150, 20))
        assert root.level == logging.DEBUG
    finally:
        root.setLevel(before)


def test_resume_refuses_a_checkpoint_that_would_run_code(tmp_path):
    pytest.importorskip("torch")
    import pickle

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (tmp_path / "run").mkdir()
    with open(tmp_path / "run" / "last.pt", "wb") as handle:
        pickle.dump({"train_state": Payload()}, handle)
    from tests.synthetic import write_mir1k_like

    write_mir1k_like(tmp_path / "data", ["a", "b"], 1, seconds=1.0)
    result = subprocess.run(CLI + ["train", "--data", str(tmp_path / "data"), "--validation", "b", "--out",
                                   str(tmp_path / "run"), "--resume", "--preset", "tiny", "--workers", "1"],
                            capture_output=True, text=True)
    assert result.returncode == 1, result.stderr
    assert "cannot be read" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


class FakeStatus:
    input_overflow = output_underflow = False


class EchoProcessor:
    """Stands in for ``StreamProcessor`` in the live engine: returns each block doubled, and records them."""

    channels, sample_rate = 2, 16000

    def __init__(self):
        self.blocks = []

    def process(self, block):
        self.blocks.append(block.copy())
        return 2 * block


def callback_round(engine, value, frames=64):
    """One audio callback with an input block full of ``value``; returns the output block."""
    indata = np.full((frames, 2), value, np.float32)
    outdata = np.empty((frames, 2), np.float32)
    engine.callback(indata, outdata, frames, None, FakeStatus())
    return outdata


def drain(engine):
    """What the worker thread does, run by hand until the inbox is empty: the test decides the timing."""
    while engine.work_once(timeout=0):
        pass


def test_live_callback_keeps_a_fixed_delay_counts_underruns_and_overruns():
    from stream_dc.apps.live import LiveEngine

    processor = EchoProcessor()
    engine = LiveEngine(processor, blocksize=64, buffer_blocks=2, queue_seconds=0.0)  # inbox of 4 blocks
    outs = [callback_round(engine, 0.01 * (k + 1)) for k in range(2)]  # the buffer is filling: silence, no underrun
    assert not np.any(outs) and engine.underruns == 0
    drain(engine)
    out = callback_round(engine, 0.03)  # block 2 plays block 0, processed in time
    np.testing.assert_allclose(out, 0.02)
    out = callback_round(engine, 0.04)  # block 1 was processed too
    np.testing.assert_allclose(out, 0.04)
    out = callback_round(engine, 0.05)  # block 2 is still waiting for the worker: an underrun, silence played
    assert not np.any(out) and engine.underruns == 1
    drain(engine)  # blocks 2-4 processed late; block 2 is dropped, so the delay stays 2 blocks
    out = callback_round(engine, 0.06)
    np.testing.assert_allclose(out, 0.08)  # block 5 plays block 3
    assert engine.dropped_late == 1
    for k in range(6):  # the worker stalls: the inbox (4 blocks) fills and further input is dropped
        callback_round(engine, 0.1)
    assert engine.overruns == 3
    drain(engine)
    callback_round(engine, 0.2)
    drain(engine)
    # the processor heard every block in order, silence in place of the three dropped ones
    assert len(processor.blocks) == 13
    assert [float(b[0, 0]) for b in processor.blocks[-8:]] == pytest.approx([0.06] + [0.1] * 3 + [0.0] * 3 + [0.2])
    assert engine.device_xruns == 0
