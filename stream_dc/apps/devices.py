"""Sound devices through PortAudio (``sounddevice``): ``stream-dc devices`` and finding the device a command names.

An input that hears what the computer plays is marked, so that a browser or a music app can be karaoke'd live with
``stream-dc live --input <it>``: PulseAudio and PipeWire offer a "Monitor of <output>" source for every output,
ALSA's loopback module (snd-aloop) a "Loopback" card, macOS a BlackHole or Soundflower device, Windows "Stereo Mix";
on JACK every program's output port can be connected to stream-dc's input ports.
"""
from __future__ import annotations

import atexit
import re
import sys
import threading

from ..inference import DeviceError

CLOSE_SECONDS = 0.5  # waited for PortAudio to close a stream whose device has gone
LOOPBACK_NAMES = re.compile(r"monitor|loopback|stereo mix|what u hear|blackhole|soundflower|wave out", re.I)


def sounddevice():
    """The ``sounddevice`` module; DeviceError when PortAudio is missing."""
    try:
        import sounddevice as sd
    except OSError as error:  # the PortAudio library is missing
        raise DeviceError(f"PortAudio is not available ({error}); install it, e.g. apt-get install libportaudio2") \
            from None
    return sd


def loopback_kind(info: dict, host_api: str) -> str:
    """How an input device hears what the computer plays: ``monitor`` (a monitor or loopback device), ``jack``
    (ports any program can be connected to), or ``""`` (a microphone or line input, as far as its name tells)."""
    if info["max_input_channels"] < 1:
        return ""
    if LOOPBACK_NAMES.search(info["name"]):
        return "monitor"
    if "jack" in host_api.lower():
        return "jack"
    return ""


def find_device(sd, choice: str | None, kind: str) -> tuple[int, dict]:
    """Device index and info for ``choice`` (index or part of a name) or the default ``kind`` (input or output)
    device; raises DeviceError."""
    if choice is None:
        index = sd.default.device[0 if kind == "input" else 1]
        if index is None or index < 0:
            raise DeviceError(f"no default {kind} device: choose one with --{kind} (see stream-dc devices)")
        return int(index), sd.query_devices(index)
    target = int(choice) if choice.isdigit() else choice
    try:
        info = sd.query_devices(target, kind)
    except (ValueError, sd.PortAudioError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DeviceError(f"no {kind} device {choice!r} ({reason}); see stream-dc devices") from None
    return int(info["index"]), info


def list_devices(out=None) -> int:
    """Print every device with its host API, channels, default rate and loopback mark; returns the exit status."""
    out = out or sys.stdout
    try:
        sd = sounddevice()
    except DeviceError as error:
        print(f"stream-dc devices: error: {error}", file=sys.stderr)
        return 1
    devices, apis = sd.query_devices(), sd.query_hostapis()
    default_in, default_out = sd.default.device
    if not len(devices):
        print("stream-dc devices: error: no audio devices found", file=sys.stderr)
        return 1
    print(f"{'':2}{'#':>3}  {'name':<40} {'host API':<22} {'in':>3} {'out':>4} {'default rate':>13}  hears", file=out)
    for info in devices:
        host_api = apis[info["hostapi"]]["name"]
        mark = (">" if info["index"] == default_in else " ") + ("<" if info["index"] == default_out else " ")
        print(f"{mark}{info['index']:>3}  {info['name'][:40]:<40} {host_api[:22]:<22} {info['max_input_channels']:>3} "
              f"{info['max_output_channels']:>4} {info['default_samplerate']:>10.0f} Hz  "
              f"{loopback_kind(info, host_api)}", file=out)
    print("> default input, < default output; hears: monitor = what the computer plays, jack = any program's "
          "output once connected (stream-dc live --input DEVICE)", file=out)
    return 0


def close_stream(stream) -> bool:
    """Stop and close a PortAudio stream in a helper thread: PortAudio can hang closing a stream whose device (or
    JACK server) has gone; after ``CLOSE_SECONDS`` the command ends anyway. True when it closed."""
    closer = threading.Thread(target=_abort_and_close, args=(stream,), daemon=True)
    closer.start()
    closer.join(CLOSE_SECONDS)
    return not closer.is_alive()


def _abort_and_close(stream) -> None:
    try:
        stream.abort()
        stream.close()
    except Exception:  # the device is gone: there is nothing left to close
        pass


def abandon_portaudio(sd) -> None:
    """Leave PortAudio as it is when the process exits: after its device (or JACK server) has gone, sounddevice's
    exit handler, which stops and closes the last stream and terminates PortAudio, can hang or abort on a failed
    assertion, after the command has already said what happened."""
    handler = getattr(sd, "_exit_handler", None)
    if handler is not None:
        atexit.unregister(handler)
