"""The live command without a sound card: device and option errors, and the engine's audio callback (fixed delay,
underruns, overruns) driven by hand."""
import numpy as np
import pytest

from tests.commands import run_cli


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
