"""Live separation through PortAudio (``sounddevice``): ``stream-dc live``, sound-card input to output.

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
import threading
import time
from collections import deque

import numpy as np

from ..bundle import BundleError
from ..inference import DeviceError
from ..options import SeparationOptions
from ..stream import StreamProcessor
from .devices import abandon_portaudio, close_stream, find_device, sounddevice
from .report import Reporter
from .signals import exit_status

STATUS_INTERVAL = 0.25  # seconds between checks (and status redraws)
STALL_SECONDS = 1.0  # a running stream whose callbacks stop this long has lost its device
MAX_BUFFER_MS = 10_000.0


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


def _status_line(engine: LiveEngine, latency_ms: float, provider: str, elapsed: float) -> str:
    minutes, seconds = divmod(int(elapsed), 60)
    return (f"latency {latency_ms:.0f} ms | real-time factor {engine.real_time_factor:.3f} | underruns "
            f"{engine.underruns} | overruns {engine.overruns} | {provider} | {minutes // 60}:{minutes % 60:02d}:"
            f"{seconds:02d}")


class LiveSession:
    """Live separation from the ``input`` device to the ``output`` device (index or part of a name; None: the
    defaults); ``run()`` returns the exit status. ``buffer_ms`` is the jitter buffer, ``duration`` (seconds) stops
    the run on its own."""

    def __init__(self, options: SeparationOptions, input: str | None = None, output: str | None = None,
                 rate: int | None = None, channels: int = 2, blocksize: int = 1024, buffer_ms: float = 250.0,
                 duration: float | None = None, reporter: Reporter | None = None):
        self.options, self.input, self.output, self.rate, self.channels = options, input, output, rate, channels
        self.blocksize, self.buffer_ms, self.duration = blocksize, buffer_ms, duration
        self.report = reporter or Reporter("live")

    def _check_arguments(self) -> str | None:
        if not 0 <= self.buffer_ms <= MAX_BUFFER_MS:
            return f"--buffer {self.buffer_ms:g}: the jitter buffer is a duration of 0 to {MAX_BUFFER_MS:g} ms"
        if self.duration is not None and not 0 < self.duration < 1e9:
            return f"--duration {self.duration:g}: give a number of seconds above 0"
        if self.channels < 1 or not 16 <= self.blocksize <= 1 << 16:
            return "--channels must be at least 1 and --blocksize 16 to 65536 frames"
        return None

    def _open(self):
        """The devices, the processor and the PortAudio stream; raises DeviceError (or BundleError, ValueError)."""
        sd = sounddevice()
        input_index, input_info = find_device(sd, self.input, "input")
        output_index, output_info = find_device(sd, self.output, "output")
        rate = int(self.rate or input_info["default_samplerate"])
        for info, kind, key in ((input_info, "input", "max_input_channels"),
                                (output_info, "output", "max_output_channels")):
            if info[key] < self.channels:
                raise DeviceError(f"{kind} device {info['name']!r} has {info[key]} {kind} channels: use --channels "
                                  f"{info[key]} or another device")
        try:
            sd.check_input_settings(device=input_index, channels=self.channels, dtype="float32", samplerate=rate)
            sd.check_output_settings(device=output_index, channels=self.channels, dtype="float32", samplerate=rate)
        except Exception as error:  # sounddevice.PortAudioError
            raise DeviceError(f"the devices do not support {rate} Hz with {self.channels} channels ({error})") \
                from None
        threads = self.options.threads or _environment_threads() or 1
        processor = StreamProcessor(None, rate, self.channels, self.options.changed(threads=threads))
        buffer_blocks = max(1, math.ceil(self.buffer_ms / 1000 * rate / self.blocksize))
        engine = LiveEngine(processor, self.blocksize, buffer_blocks)
        try:
            stream = sd.Stream(device=(input_index, output_index), samplerate=rate, blocksize=self.blocksize,
                               channels=self.channels, dtype="float32", callback=engine.callback)
        except Exception as error:  # sounddevice.PortAudioError
            raise DeviceError(f"cannot open the audio devices ({error})") from None
        return engine, stream, input_info["name"], output_info["name"]

    def run(self) -> int:
        problem = self._check_arguments()
        if problem:
            return self.report.error(problem)
        for option in self.options.unused(streaming=True):
            self.report.warning(f"{option} applies to offline separation only: ignored")
        try:
            engine, stream, input_name, output_name = self._open()
        except (BundleError, DeviceError, ValueError) as error:
            return self.report.error(str(error))
        processor, rate = engine.processor, engine.processor.sample_rate
        device_ms = 1000 * (sum(stream.latency) if isinstance(stream.latency, tuple) else stream.latency)
        buffer_ms = 1000 * engine.buffer_blocks * self.blocksize / rate
        latency_ms = processor.latency_ms + buffer_ms + device_ms
        self.report.info(f"{input_name} -> {output_name}, {rate} Hz, {self.channels} ch, block {self.blocksize}; "
                         f"preset {processor.preset.name}{_key(self.options.key)}; latency {latency_ms:.0f} ms "
                         f"(processor {processor.latency_ms:.0f} + buffer {buffer_ms:.0f} + devices {device_ms:.0f}); "
                         f"onnxruntime {processor.provider}; Ctrl-C stops")
        started = time.monotonic()
        failure, status = None, 0
        engine.start()
        try:
            stream.start()
            failure = self._watch(engine, stream, latency_ms, started)
        except KeyboardInterrupt as interrupt:
            status = exit_status(interrupt)
        except Exception as error:  # sounddevice.PortAudioError while running
            failure = f"audio device error: {error}"
        finally:
            engine.stop()
            closed = close_stream(stream)
        self.report.end_status()
        elapsed = time.monotonic() - started
        self.report.info(f"stopped after {elapsed:.1f} s: latency {latency_ms:.0f} ms, real-time factor "
                         f"{engine.real_time_factor:.3f}, underruns {engine.underruns}, overruns {engine.overruns}, "
                         f"late blocks dropped {engine.dropped_late}, device xruns {engine.device_xruns}")
        if not closed:
            failure = failure or "the audio device did not close"
        if failure:
            abandon_portaudio(sounddevice())
            return self.report.error(failure)
        return status

    def _watch(self, engine: LiveEngine, stream, latency_ms: float, started: float) -> str | None:
        """Wait until the duration ends (None) or something fails (a line saying what)."""
        seen, last_progress = -1, time.monotonic()
        while True:
            time.sleep(STATUS_INTERVAL)
            now = time.monotonic()
            if engine.error is not None:
                return f"processing failed: {engine.error}"
            if not stream.active:
                return "the audio stream stopped (device disconnected?)"
            if engine.callbacks != seen:
                seen, last_progress = engine.callbacks, now
            elif now - last_progress > STALL_SECONDS:
                return f"the audio device stopped delivering audio for {STALL_SECONDS:g} s (disconnected, or its " \
                       "server died?)"
            self.report.status(_status_line(engine, latency_ms, engine.processor.provider, now - started))
            if self.duration and now - started >= self.duration:
                return None


def _key(semitones: float) -> str:
    return f", key {semitones:+g}" if semitones else ""


def _environment_threads() -> int | None:
    from ..inference import thread_setting

    return thread_setting(None)
