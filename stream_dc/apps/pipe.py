"""``stream-dc stream``: raw PCM or WAV on stdin -> separated audio on stdout, block by block.

Memory stays constant: blocks are read as they arrive, run through a ``StreamProcessor`` and written at once.
By default the output is aligned with the input (the first ``latency_samples`` are dropped and the tail is
flushed at the end, so the output has exactly the input's length); with ``align=False`` every processed block is
written as it comes, delayed by the latency, followed by the tail. Status goes to stderr only.
"""
from __future__ import annotations

import errno
import time
from typing import BinaryIO

import numpy as np

from ..audio import InputError, check_format
from ..bundle import BundleError
from ..inference import DeviceError
from ..options import SeparationOptions
from ..pcm import PCM_DTYPES, PcmReader, encode_pcm, read_wav_header, wav_header
from ..stream import Aligner, StreamProcessor
from .report import Reporter
from .signals import exit_status

STATUS_INTERVAL = 2.0  # seconds between status updates on a terminal
MAX_BLOCK = 1 << 20  # frames read at once at most


class PipeSession:
    """Separates a stream from ``stdin`` to ``stdout``; ``run()`` returns the exit status.

    Raw input is described by ``rate``, ``channels`` and ``dtype`` (one of ``pcm.PCM_DTYPES``); with ``wav`` the
    WAV header on stdin describes it instead and a WAV header goes out first. ``block`` frames are read at a time.
    """

    def __init__(self, options: SeparationOptions, rate: int = 44100, channels: int = 2, dtype: str = "s16",
                 wav: bool = False, align: bool = True, block: int = 1024, stdin: BinaryIO | None = None,
                 stdout: BinaryIO | None = None, reporter: Reporter | None = None):
        self.options, self.rate, self.channels, self.dtype = options, rate, channels, dtype
        self.wav, self.align, self.block = wav, align, block
        self.stdin, self.stdout = stdin, stdout
        self.report = reporter or Reporter("stream")

    def run(self) -> int:
        if self.stdin is None or self.stdout is None:
            return self.report.error(f"standard {'input' if self.stdin is None else 'output'} is closed: give the "
                                     "audio on stdin and send stdout to a file or a pipe")
        if not 1 <= self.block <= MAX_BLOCK:
            return self.report.error(f"--block {self.block}: read 1 to {MAX_BLOCK} frames at a time")
        if self.dtype not in PCM_DTYPES:
            return self.report.error(f"--dtype {self.dtype}: choose one of {', '.join(PCM_DTYPES)}")
        for option in self.options.unused(streaming=True):
            self.report.warning(f"{option} applies to offline separation only: ignored")
        data_bytes = None
        try:
            if self.wav:
                header = read_wav_header(self.stdin)
                self.rate, self.channels, self.dtype, data_bytes = (header.sample_rate, header.channels, header.dtype,
                                                                    header.data_bytes)
            check_format(self.rate, self.channels)
            processor = StreamProcessor(None, self.rate, self.channels, self.options)
        except (InputError, BundleError, DeviceError, ValueError) as error:
            return self.report.error(str(error))
        try:
            return self._run(processor, data_bytes)
        except KeyboardInterrupt as interrupt:
            self.report.end_status()
            self.report.error("interrupted")
            return exit_status(interrupt)
        except BrokenPipeError:
            raise  # the reader went away: the command ends quietly (see cli.main)
        except InputError as error:
            self.report.end_status()
            return self.report.error(f"stdin: {error}")
        except OSError as error:  # writing stdout failed: a full disk, a closed device
            self.report.end_status()
            reason = "no space left on the output device" if error.errno == errno.ENOSPC else (
                error.strerror or str(error))
            return self.report.error(f"cannot write the output: {reason}")

    def _run(self, processor: StreamProcessor, data_bytes: int | None) -> int:
        rate, channels, dtype, latency = self.rate, self.channels, self.dtype, processor.latency_samples
        frame_bytes = len(encode_pcm(np.zeros((1, channels), np.float32), dtype))
        self.report.info(f"{rate} Hz, {channels} ch, {dtype}; preset {processor.preset.name}, latency "
                         f"{processor.latency_ms:.0f} ms ({latency} samples); "
                         f"{'aligned' if self.align else 'not aligned'}; onnxruntime {processor.provider}")
        out_bytes = None
        if self.wav and data_bytes is not None:
            out_bytes = data_bytes // frame_bytes * frame_bytes + (0 if self.align else latency * frame_bytes)
        reader = PcmReader(self.stdin, dtype, channels, limit=data_bytes)
        aligner = Aligner(latency if self.align else 0)
        n_in, busy, last_status = 0, 0.0, time.monotonic()
        clipped = [0]  # output samples past full scale, which integer PCM clips

        def emit(block) -> None:
            block = aligner.trim(block)
            if len(block):
                if dtype != "f32":
                    clipped[0] += int(np.count_nonzero(np.abs(block) > 1.0))
                self.stdout.write(encode_pcm(block, dtype))
                self.stdout.flush()

        if self.wav:
            self.stdout.write(wav_header(rate, channels, dtype, out_bytes))
        while (block := reader.read(self.block)) is not None:
            started = time.perf_counter()
            out = processor.process(block)
            busy += time.perf_counter() - started
            n_in += len(block)
            emit(out)
            if time.monotonic() - last_status > STATUS_INTERVAL:
                last_status = time.monotonic()
                self.report.status(f"{n_in / rate:8.1f} s in, real-time factor {busy / max(n_in / rate, 1e-9):.3f}")
        started = time.perf_counter()
        emit(processor.flush())
        busy += time.perf_counter() - started
        self.report.end_status()
        if reader.dropped_bytes:
            self.report.warning(f"dropped {reader.dropped_bytes} trailing bytes (not a whole {frame_bytes}-byte "
                                "frame)")
        if clipped[0]:  # the stems of a loud mix can peak above the mix itself
            self.report.warning(f"the output went past full scale at {clipped[0]} samples, clipped in {dtype} "
                                "(--dtype f32 keeps them)")
        if n_in:
            self.report.info(f"{n_in / rate:.1f} s processed, real-time factor {busy / (n_in / rate):.3f}, "
                             f"{processor.windows_run} windows")
        else:
            self.report.info("no audio received")
        return 0
