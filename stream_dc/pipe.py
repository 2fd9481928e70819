"""``stream-dc stream``: raw PCM or WAV on stdin -> separated audio on stdout, block by block.

Memory stays constant: blocks are read as they arrive, run through a ``StreamProcessor`` and written at once.
By default the output is aligned with the input (the first ``latency_samples`` are dropped and the tail is
flushed at the end, so the output has exactly the input's length); ``--no-align`` writes every processed block
as it comes, delayed by the latency, followed by the tail. Status goes to stderr only.
"""
from __future__ import annotations

import errno
import sys
import time

import numpy as np

from .audio import InputError
from .bundle import BundleError
from .inference import DeviceError
from .interrupts import exit_status
from .io import PcmReader, encode_pcm, read_wav_header, wav_header
from .stream import Aligner, StreamProcessor

STATUS_INTERVAL = 2.0  # seconds between status updates on a terminal


def _fail(message: str) -> int:
    print(f"stream-dc stream: error: {message}", file=sys.stderr)
    return 1


def run_pipe(args, stdin=None, stdout=None, stderr=None) -> int:
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    stderr = stderr or sys.stderr
    data_bytes = None
    try:
        if args.wav:
            header = read_wav_header(stdin)
            rate, channels, dtype, data_bytes = header.sample_rate, header.channels, header.dtype, header.data_bytes
        else:
            rate, channels, dtype = args.rate, args.channels, args.dtype
    except InputError as error:
        return _fail(str(error))
    if not 1000 <= rate <= 768000:
        return _fail(f"--rate {rate}: use a sample rate between 1000 and 768000 Hz")
    if not 1 <= channels <= 64:
        return _fail(f"--channels {channels}: use 1 to 64 channels")
    if args.block < 1:
        return _fail("--block must be at least 1 frame")
    try:
        processor = StreamProcessor(args.model, rate, channels, latency=args.latency, device=args.device,
                                    keep=args.keep, vocal_gain_db=args.vocal_gain, mask_softness=args.mask_softness,
                                    threads=args.threads, voice_gate=args.voice_gate, refine=args.refine)
    except (BundleError, DeviceError, ValueError) as error:
        return _fail(str(error))
    align = not args.no_align
    latency = processor.latency_samples
    frame_bytes = len(encode_pcm(np.zeros((1, channels), np.float32), dtype))
    if not args.quiet:
        print(f"stream-dc stream: {rate} Hz, {channels} ch, {dtype}; preset {processor.preset.name}, latency "
              f"{processor.latency_ms:.0f} ms ({latency} samples); {'aligned' if align else 'not aligned'}; "
              f"onnxruntime {processor.provider}", file=stderr)
    out_bytes = None
    if args.wav and data_bytes is not None:
        out_bytes = data_bytes // frame_bytes * frame_bytes + (0 if align else latency * frame_bytes)
    reader = PcmReader(stdin, dtype, channels, limit=data_bytes)
    aligner = Aligner(latency if align else 0)
    n_in, busy, last_status = 0, 0.0, time.monotonic()
    interactive = not args.quiet and stderr.isatty()

    def emit(block) -> None:
        block = aligner.trim(block)
        if len(block):
            stdout.write(encode_pcm(block, dtype))
            stdout.flush()

    try:
        if args.wav:
            stdout.write(wav_header(rate, channels, dtype, out_bytes))
        while True:
            block = reader.read(args.block)
            if block is None:
                break
            started = time.perf_counter()
            out = processor.process(block)
            busy += time.perf_counter() - started
            n_in += len(block)
            emit(out)
            if interactive and time.monotonic() - last_status > STATUS_INTERVAL:
                last_status = time.monotonic()
                print(f"\r{n_in / rate:8.1f} s in, real-time factor {busy / max(n_in / rate, 1e-9):.3f}",
                      end="", file=stderr, flush=True)
        started = time.perf_counter()
        emit(processor.flush())
        busy += time.perf_counter() - started
    except KeyboardInterrupt as interrupt:
        if interactive:
            print(file=stderr)
        print("stream-dc stream: interrupted", file=stderr)
        return exit_status(interrupt)
    except BrokenPipeError:
        raise  # the reader went away: the command ends quietly (see cli.main)
    except OSError as error:  # writing stdout failed: a full disk, a closed device
        if interactive:
            print(file=stderr)
        reason = "no space left on the output device" if error.errno == errno.ENOSPC else (
            error.strerror or str(error))
        return _fail(f"cannot write the output: {reason}")
    if interactive:
        print(file=stderr)
    if reader.dropped_bytes:
        print(f"stream-dc stream: warning: dropped {reader.dropped_bytes} trailing bytes (not a whole "
              f"{frame_bytes}-byte frame)", file=stderr)
    if not args.quiet:
        if n_in:
            print(f"stream-dc stream: {n_in / rate:.1f} s processed, real-time factor {busy / (n_in / rate):.3f}, "
                  f"{processor.windows_run} windows", file=stderr)
        else:
            print("stream-dc stream: no audio received", file=stderr)
    return 0
