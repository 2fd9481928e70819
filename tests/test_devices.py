"""Sound devices: which inputs hear what the computer plays, and the device list that marks them."""
import io

from stream_dc.apps import devices
from stream_dc.apps.devices import list_devices, loopback_kind


def device(index, name, inputs, outputs, hostapi=0):
    return {"index": index, "name": name, "hostapi": hostapi, "max_input_channels": inputs,
            "max_output_channels": outputs, "default_samplerate": 48000.0}


def test_loopback_kind_marks_monitors_and_jack_inputs():
    assert loopback_kind(device(0, "Monitor of Built-in Audio Analog Stereo", 2, 0), "ALSA") == "monitor"
    assert loopback_kind(device(1, "Monitor of HDMI / DisplayPort 1 Output", 2, 0), "PulseAudio") == "monitor"
    assert loopback_kind(device(2, "Loopback: PCM (hw:2,1)", 2, 2), "ALSA") == "monitor"
    assert loopback_kind(device(3, "system", 2, 2), "JACK Audio Connection Kit") == "jack"
    assert loopback_kind(device(4, "HDA Intel PCH: ALC257 Analog (hw:0,0)", 2, 2), "ALSA") == ""
    # an output hears nothing, whatever its name or host API
    assert loopback_kind(device(5, "Loopback: PCM (hw:2,0)", 0, 2), "ALSA") == ""
    assert loopback_kind(device(6, "system", 0, 2), "JACK Audio Connection Kit") == ""


class FakeSounddevice:
    """Three devices on one host API, as sounddevice lists them."""

    devices = [device(0, "HDA Intel PCH: ALC257 Analog (hw:0,0)", 2, 2),
               device(1, "Monitor of Built-in Audio Analog Stereo", 2, 0),
               device(2, "HDMI 0", 0, 8)]

    class default:
        device = (0, 2)

    def query_devices(self):
        return self.devices

    def query_hostapis(self):
        return [{"name": "ALSA"}]


def test_list_devices_marks_the_monitor(monkeypatch):
    monkeypatch.setattr(devices, "sounddevice", lambda: FakeSounddevice())
    out = io.StringIO()
    assert list_devices(out=out) == 0
    rows = {d["name"]: next(line for line in out.getvalue().splitlines() if d["name"] in line)
            for d in FakeSounddevice.devices}
    assert rows["Monitor of Built-in Audio Analog Stereo"].rstrip().endswith("monitor")
    assert rows["HDA Intel PCH: ALC257 Analog (hw:0,0)"].rstrip().endswith("Hz")
    assert rows["HDMI 0"].rstrip().endswith("Hz")
    assert rows["HDA Intel PCH: ALC257 Analog (hw:0,0)"].startswith(">")  # the default input
    assert rows["HDMI 0"][:2] == " <"  # the default output
