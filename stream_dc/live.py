"""Live separation through PortAudio (``sounddevice``): ``stream-dc live`` and ``stream-dc devices``.

The audio callback only moves samples: each input block goes into a bounded queue, and the output block for the
input of ``buffer_blocks`` callbacks ago comes out of a bounded deque. A worker thread runs the
``StreamProcessor`` between the two. The jitter buffer absorbs the processor's bursts (it runs the network once
per hop); if a block is still not ready when its turn comes, the callback plays silence and counts an underrun,
and the late block is dropped when it arrives, so the latency never grows. Input blocks that find the queue full
are counted as overruns and replaced by silence for the processor, which keeps its timeline.

The processor starts at the first input block that holds any sound: digital silence before it is passed through
as silence without work, and the window grid starts with the music.
"""
from __future__ import annotations

import math
import queue
import signal
import sys
import threading
import time
from collections import deque

import numpy as np

from .bundle import BundleError
from .inference import DeviceError, thread_setting
from .stream import StreamProcessor

STATUS_INTERVAL = 0.5  # seconds


def _sounddevice():
    try:
        import sounddevice
    except OSError as error:  # the PortAudio library is missing
        raise DeviceError(f"PortAudio is not available ({error}); install it, e.g. apt-get install libportaudio2") \
            from None
    return sounddevice


class LiveEngine:
    """Audio callback + worker thread around a ``StreamProcessor`` (see the module docstring)."""

    def __init__(self, processor: StreamProcessor, blocksize: int, buffer_blocks: int, queue_seconds: float = 2.0):
        self.processor, self.blocksize, self.buffer_blocks = processor, blocksize, buffer_blocks
        capacity = max(4, math.ceil(queue_seconds * processor.sample_rate / blocksize))
        self.inbox: queue.Queue = queue.Queue(maxsize=capacity)
        self.outbox: deque = deque(maxlen=capacity + buffer_blocks)
        self.callbacks = 0
        self.underruns = self.overruns = self.dropped_late = self.device_xruns = 0
        self.busy_seconds = 0.0
        self.processed_blocks = 0
        self.heard_sound = False
        self.expected = 0  # the next input block's sequence number, as the worker sees it
        self.silence = np.zeros((blocksize, processor.channels), np.float32)
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.worker = threading.Thread(target=self._work, name="stream-dc worker", daemon=True)

    # runs on PortAudio's thread: no allocation beyond one copy, no waiting
    def callback(self, indata, outdata, frames, time_info, status) -> None:
        if status.input_overflow or status.output_underflow:
            self.device_xruns += 1
        sequence = self.callbacks
        self.callbacks += 1
        try:
            self.inbox.put_nowait((sequence, indata.copy()))
        except queue.Full:
            self.overruns += 1
        wanted = sequence - self.buffer_blocks
        outbox = self.outbox
        while outbox and outbox[0][0] < wanted:
            outbox.popleft()
            self.dropped_late += 1
        if outbox and outbox[0][0] == wanted and len(outbox[0][1]) == frames:
            outdata[:] = outbox.popleft()[1]
        else:
            outdata.fill(0.0)
            if wanted >= 0:
                self.underruns += 1

    def _work(self) -> None:
        try:
            while not self.stopping.is_set():
                self.work_once(timeout=0.1)
        except BaseException as error:  # reported by the main thread
            self.error = error

    def work_once(self, timeout: float) -> bool:
        """Process the next input block, waiting up to ``timeout`` s for it; False when none came."""
        try:
            sequence, block = self.inbox.get(timeout=timeout) if timeout > 0 else self.inbox.get_nowait()
        except queue.Empty:
            return False
        if not self.heard_sound and not np.any(block):
            self.outbox.append((sequence, np.zeros_like(block)))  # silence before the first sound
            self.expected = sequence + 1
            return True
        self.heard_sound = True
        started = time.perf_counter()
        while self.expected < sequence:  # blocks lost to overruns: the processor hears silence
            self.processor.process(self.silence)
            self.expected += 1
        out = self.processor.process(block)
        self.busy_seconds += time.perf_counter() - started
        self.outbox.append((sequence, out))
        self.processed_blocks += 1
        self.expected = sequence + 1
        return True

    def start(self) -> None:
        self.worker.start()

    def stop(self) -> None:
        self.stopping.set()
        self.worker.join(timeout=5)

    @property
    def seconds(self) -> float:
        return self.processed_blocks * self.blocksize / self.processor.sample_rate

    @property
    def real_time_factor(self) -> float:
        return self.busy_seconds / max(self.seconds, 1e-9)


def _find_device(sd, choice: str | None, kind: str):
    """Device index for ``choice`` (index or part of a name) or the default; raises DeviceError."""
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


def list_devices() -> int:
    try:
        sd = _sounddevice()
    except DeviceError as error:
        print(f"stream-dc devices: error: {error}", file=sys.stderr)
        return 1
    devices, apis = sd.query_devices(), sd.query_hostapis()
    default_in, default_out = sd.default.device
    if not len(devices):
        print("no audio devices found", file=sys.stderr)
        return 1
    print(f"{'':2}{'#':>3}  {'name':<40} {'host API':<28} {'in':>3} {'out':>4} {'default rate':>13}")
    for info in devices:
        mark = (">" if info["index"] == default_in else " ") + ("<" if info["index"] == default_out else " ")
        print(f"{mark}{info['index']:>3}  {info['name'][:40]:<40} {apis[info['hostapi']]['name'][:28]:<28} "
              f"{info['max_input_channels']:>3} {info['max_output_channels']:>4} {info['default_samplerate']:>11.0f} Hz")
    print("> default input, < default output")
    return 0


def _status_line(engine: LiveEngine, latency_ms: float, provider: str, elapsed: float) -> str:
    minutes, seconds = divmod(int(elapsed), 60)
    return (f"latency {latency_ms:.0f} ms | real-time factor {engine.real_time_factor:.3f} | underruns "
            f"{engine.underruns} | overruns {engine.overruns} | {provider} | {minutes // 60}:{minutes % 60:02d}:"
            f"{seconds:02d}")


def run_live(args) -> int:
    def fail(message: str) -> int:
        print(f"stream-dc live: error: {message}", file=sys.stderr)
        return 1

    if not args.buffer >= 0:
        return fail(f"--buffer {args.buffer:g}: the jitter buffer is a duration in ms, 0 or more")
    if args.duration is not None and not args.duration > 0:
        return fail(f"--duration {args.duration:g}: give a number of seconds above 0")
    if args.rate is not None and not 1000 <= args.rate <= 768000:
        return fail(f"--rate {args.rate}: use a sample rate between 1000 and 768000 Hz")
    try:
        sd = _sounddevice()
        input_index, input_info = _find_device(sd, args.input, "input")
        output_index, output_info = _find_device(sd, args.output, "output")
    except DeviceError as error:
        return fail(str(error))
    rate = int(args.rate or input_info["default_samplerate"])
    channels = args.channels
    if channels < 1 or args.blocksize < 16:
        return fail("--channels must be at least 1 and --blocksize at least 16")
    for info, kind, key in ((input_info, "input", "max_input_channels"), (output_info, "output", "max_output_channels")):
        if info[key] < channels:
            return fail(f"{kind} device {info['name']!r} has {info[key]} {kind} channels: use --channels {info[key]} "
                        "or another device")
    try:
        sd.check_input_settings(device=input_index, channels=channels, dtype="float32", samplerate=rate)
        sd.check_output_settings(device=output_index, channels=channels, dtype="float32", samplerate=rate)
    except Exception as error:  # sounddevice.PortAudioError
        return fail(f"the devices do not support {rate} Hz with {channels} channels ({error})")
    try:
        processor = StreamProcessor(args.model, rate, channels, latency=args.latency, device=args.device,
                                    keep=args.keep, vocal_gain_db=args.vocal_gain, mask_softness=args.mask_softness,
                                    threads=thread_setting(args.threads, default=1), voice_gate=args.voice_gate,
                                    refine=args.refine)
    except (BundleError, DeviceError, ValueError) as error:
        return fail(str(error))
    buffer_blocks = max(1, math.ceil(args.buffer / 1000 * rate / args.blocksize))
    engine = LiveEngine(processor, args.blocksize, buffer_blocks)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    interactive = sys.stderr.isatty()
    try:
        stream = sd.Stream(device=(input_index, output_index), samplerate=rate, blocksize=args.blocksize,
                           channels=channels, dtype="float32", callback=engine.callback)
    except Exception as error:  # sounddevice.PortAudioError
        return fail(f"cannot open the audio devices ({error})")
    device_ms = 1000 * sum(stream.latency) if isinstance(stream.latency, tuple) else 1000 * stream.latency
    latency_ms = processor.latency_ms + 1000 * buffer_blocks * args.blocksize / rate + device_ms
    print(f"stream-dc live: {input_info['name']} -> {output_info['name']}, {rate} Hz, {channels} ch, block "
          f"{args.blocksize}; preset {processor.preset.name}; latency {latency_ms:.0f} ms (processor "
          f"{processor.latency_ms:.0f} + buffer {1000 * buffer_blocks * args.blocksize / rate:.0f} + devices "
          f"{device_ms:.0f}); onnxruntime {processor.provider}; Ctrl-C stops", file=sys.stderr, flush=True)
    started = time.monotonic()
    failure = None
    engine.start()
    try:
        with stream:
            while not stop.wait(STATUS_INTERVAL):
                elapsed = time.monotonic() - started
                if engine.error is not None:
                    failure = f"processing failed: {engine.error}"
                    break
                if not stream.active:
                    failure = "the audio stream stopped (device disconnected?)"
                    break
                if interactive:
                    print("\r" + _status_line(engine, latency_ms, processor.provider, elapsed), end="",
                          file=sys.stderr, flush=True)
                if args.duration and elapsed >= args.duration:
                    break
    except Exception as error:  # sounddevice.PortAudioError while running
        failure = f"audio device error: {error}"
    finally:
        engine.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if interactive:
        print(file=sys.stderr)
    elapsed = time.monotonic() - started
    print(f"stream-dc live: stopped after {elapsed:.1f} s: latency {latency_ms:.0f} ms, real-time factor "
          f"{engine.real_time_factor:.3f}, underruns {engine.underruns}, overruns {engine.overruns}, late blocks "
          f"dropped {engine.dropped_late}, device xruns {engine.device_xruns}", file=sys.stderr, flush=True)
    if failure:
        return fail(failure)
    return 0
