"""``stream-dc`` command line: separate, stream, live, devices, evaluate, train, export.

Every command reports problems as one line on stderr and exits non-zero; audio goes to files or stdout only.
``train`` and ``export`` import PyTorch lazily (``pip install 'stream-dc[train]'``).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

from . import __version__
from .interrupts import exit_status, handle_sigterm

EXIT_ERROR = 1


class DefaultsFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, where it has one worth showing."""

    def _get_help_string(self, action):
        text = action.help or ""
        if "%(default)" not in text and "default" not in text and action.default not in (None, False, True) \
                and action.default is not argparse.SUPPRESS and action.option_strings:
            text += " (default: %(default)s)"
        return text


def finite_float(text: str) -> float:
    """An argparse type: a finite number (``nan`` and ``inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def thread_count(text: str) -> int:
    """argparse type for ``--threads``: a whole number of 1 or more."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: use 1 thread or more")
    return value


def fail(command: str, message: str, code: int = EXIT_ERROR) -> int:
    print(f"stream-dc {command}: error: {message}", file=sys.stderr)
    return code


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="DIR", help="model bundle folder (default: the shipped model)")
    parser.add_argument("--mask-softness", type=finite_float, metavar="ALPHA",
                        help="0: binary masks; > 0: soft masks from the cluster posteriors, softmax(-ALPHA x distance) "
                             "(default: the model's setting)")
    parser.add_argument("--no-voice-gate", dest="voice_gate", action="store_false",
                        help="do not scale each frame's voice mask by the model's frame voice activity (models that "
                             "carry a voice-activity gate use it by default)")
    parser.add_argument("--no-mask-refiner", dest="refine", action="store_false",
                        help="apply the clustering's masks as they are, without the model's per-bin mask refiner "
                             "(models that carry one use it by default)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="onnxruntime device: auto uses CUDA when onnxruntime-gpu is installed")
    parser.add_argument("--threads", type=thread_count, metavar="N",
                        help="onnxruntime's CPU threads (default: one per core; live: 1, which leaves the other cores "
                             "to the audio callbacks and other programs; the STREAM_DC_THREADS variable sets it too)")


def add_offline_arguments(parser: argparse.ArgumentParser) -> None:
    from .stft import HOP_MS, OFFLINE_WINDOW_HOPS

    parser.add_argument("--no-wiener", dest="wiener", action="store_false",
                        help="offline: apply the final masks as they are, without the multichannel Wiener post-filter")
    parser.add_argument("--no-channel-masks", dest="channel_masks", action="store_false",
                        help="offline: a stereo input's voice masks from its downmix alone (faster) instead of the "
                             "mean over its downmix and each channel")
    parser.add_argument("--synthesis-window", type=int, choices=(32, 64, 128), default=OFFLINE_WINDOW_HOPS * HOP_MS,
                        metavar="MS",
                        help="offline: the window of the STFT the masks apply on, 32, 64 or 128 ms (streaming: 32 ms)")


def add_stream_arguments(parser: argparse.ArgumentParser) -> None:
    from .stream import KEEP, PRESETS

    parser.add_argument("--latency", default="balanced", metavar="PRESET",
                        help=f"streaming preset: {', '.join(PRESETS)}; or windows hop=FRAMES,lookahead=FRAMES, or the "
                             "chunked BLSTM chunk=FRAMES,lookahead=FRAMES (8 ms frames)")
    parser.add_argument("--keep", choices=KEEP, default="accompaniment",
                        help="which stem to output (accompaniment = vocal remover)")
    parser.add_argument("--vocal-gain", type=finite_float, metavar="DB",
                        help="mix the other stem back in at this gain, e.g. -15 for a quiet guide vocal")


def describe_model(bundle, provider: str) -> str:
    arch = bundle.config.architecture
    size = f"{arch.get('layers', '?')}x{arch.get('hidden', '?')} BLSTM" if arch else "model"
    return f"model {bundle.directory} ({size}, {arch.get('weights', 'float32')} weights) on {provider}"


# -- separate -------------------------------------------------------------------------------------------------
def cmd_separate(args) -> int:
    from tqdm import tqdm

    from .audio import check_source
    from .bundle import BundleError
    from .inference import DeviceError
    from .io import AtomicWavWriter, open_source, output_subtype
    from .separator import Separator
    from .stft import HOP_MS

    if args.plot:
        if args.mode != "offline":
            return fail("separate", "--plot draws the offline analysis: use it with --mode offline")
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            return fail("separate", "--plot needs matplotlib: pip install 'stream-dc[eval]'")
    try:
        separator = Separator(args.model, device=args.device, reconstruction=args.reconstruction, mode=args.mode,
                              latency=args.latency, keep_analysis=args.plot, mask_softness=args.mask_softness,
                              threads=args.threads, voice_gate=args.voice_gate, refine=args.refine, wiener=args.wiener,
                              channel_masks=args.channel_masks, window_hops=args.synthesis_window // HOP_MS)
    except (BundleError, DeviceError, ValueError) as error:
        return fail("separate", str(error))
    if not args.quiet:
        print(f"stream-dc separate: {describe_model(separator.bundle, separator.provider)}, {args.mode} mode, "
              f"{args.reconstruction} reconstruction", file=sys.stderr)
    out_root = Path(args.out)
    failures, used_names = 0, set()
    progress = tqdm(args.inputs, desc="separating", unit="file", file=sys.stderr,
                    disable=args.quiet or len(args.inputs) < 2 or not sys.stderr.isatty())
    for path in progress:
        name = output_folder_name(Path(path).name)
        candidate, n = name, 2
        while candidate in used_names:
            candidate, n = f"{name}-{n}", n + 1
        used_names.add(candidate)
        folder = out_root / candidate
        created = not folder.exists()
        writers = []
        started = time.perf_counter()
        try:
            inside(out_root, folder)
            source, subtype = open_source(path)
            subtype = output_subtype(subtype, args.subtype)
            check_source(source)
            writers = [AtomicWavWriter(folder / f"{stem}.wav", source.sample_rate, source.channels, subtype)
                       for stem in ("vocals", "accompaniment")]
            separator.separate_source(source, lambda v, a: (writers[0].write(v), writers[1].write(a)))
            for writer in writers:
                writer.commit()
            if args.plot and separator.analysis is not None:  # (silent input: nothing to draw)
                from .plots import plot_analysis

                plot_analysis(separator.analysis, separator.bundle.config.features.frame_rate, Path(path).name,
                              folder / "separation.png")
            seconds = time.perf_counter() - started
            duration = writers[0].frames / source.sample_rate
            if not args.quiet:
                tqdm.write(f"{path} -> {folder}/ ({duration:.1f} s of audio in {seconds:.1f} s, "
                           f"real-time factor {seconds / max(duration, 1e-9):.3f})", file=sys.stderr)
        except KeyboardInterrupt as interrupt:
            discard(writers, folder if created else None)
            print("stream-dc separate: interrupted", file=sys.stderr)
            return exit_status(interrupt)
        except Exception as error:  # one input's failure, whatever it is, must not stop the others
            discard(writers, folder if created else None)
            failures += 1
            tqdm.write(f"stream-dc separate: error: {describe_failure(path, error)}", file=sys.stderr)
    return EXIT_ERROR if failures else 0


def output_folder_name(file_name: str) -> str:
    """A folder name for an input's stems: the file name without its extension, with separators, control
    characters and leading dots removed (so ``..wav`` or ``...wav`` cannot name ``..`` or ``.``)."""
    stem = file_name.rsplit(".", 1)[0] if "." in file_name.lstrip(".") else file_name
    cleaned = "".join("_" if c in "/\\" or not c.isprintable() else c for c in stem).strip().lstrip(".").strip()
    return cleaned or "audio"


def inside(root: Path, path: Path) -> None:
    """Refuse ``path`` unless it lies inside ``root`` once both are resolved."""
    resolved_root, resolved = root.resolve(), path.resolve()
    if resolved_root != resolved and resolved_root not in resolved.parents:
        raise ValueError(f"output {path} would lie outside {root}")


def discard(writers: list, folder: Path | None) -> None:
    """Remove the temporary files of a failed input, and its folder when this run created it and it is empty."""
    for writer in writers:
        try:
            writer.abort()
        except OSError:
            pass
    if folder is not None:
        try:
            folder.rmdir()
        except OSError:  # not empty, or never created
            pass


def describe_failure(path: str, error: BaseException) -> str:
    """One line naming the input and the reason."""
    import errno

    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        reason = error.strerror or "no space left on the output device"
    else:
        lines = str(error).strip().splitlines()
        reason = lines[-1] if lines else type(error).__name__
        if "No space left" in reason or "disk full" in reason.lower():
            reason = "no space left on the output device"
        elif not isinstance(error, (ValueError, OSError)):
            reason = f"{type(error).__name__}: {reason}"
    return reason if reason.startswith(str(path)) else f"{path}: {reason}"


# -- stream (pipes) -------------------------------------------------------------------------------------------
def cmd_stream(args) -> int:
    from .pipe import run_pipe

    return run_pipe(args)


# -- live and devices -----------------------------------------------------------------------------------------
def cmd_devices(args) -> int:
    from .live import list_devices

    return list_devices()


def cmd_live(args) -> int:
    from .live import run_live

    return run_live(args)


# -- evaluate -------------------------------------------------------------------------------------------------
def cmd_evaluate(args) -> int:
    from .evaluate import run_evaluate

    return run_evaluate(args)


# -- train / export (need PyTorch) ----------------------------------------------------------------------------
TORCH_COMMANDS = {"train": "training.train", "export": "export.exporter"}


def run_torch_command(command: str, argv: list[str]) -> int:
    """Hand ``argv`` to the training or export module, imported only now."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return fail(command, "PyTorch is not installed: pip install 'stream-dc[train]'")
    import importlib

    return importlib.import_module(TORCH_COMMANDS[command]).main(argv)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stream-dc", description="Real-time singing-voice separation by deep "
                                     "clustering: vocal removal for files, pipes and live audio.")
    parser.add_argument("--version", action="version", version=f"stream-dc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("separate", help="separate audio files into vocals.wav and accompaniment.wav", description="Separate audio files into vocals.wav and accompaniment.wav.",
                       formatter_class=DefaultsFormatter)
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files (wav, flac, ogg, mp3, ...)")
    p.add_argument("-o", "--out", required=True, help="output folder; each input gets OUT/<name>/")
    add_model_arguments(p)
    p.add_argument("--mode", choices=("offline", "stream"), default="offline",
                   help="offline: the paper's whole-signal procedure; stream: the streaming processor, aligned")
    p.add_argument("--latency", default="balanced", help="streaming preset for --mode stream")
    p.add_argument("--reconstruction", choices=("projection", "inverse-mel"), default="projection",
                   help="projection: mel mask on each channel's STFT, full band (default); inverse-mel: the paper's")
    add_offline_arguments(p)
    p.add_argument("--subtype", choices=("PCM_16", "PCM_24", "PCM_32", "FLOAT"),
                   help="WAV sample format (default: the input's PCM depth, else 32-bit float)")
    p.add_argument("--plot", action="store_true", help="also write OUT/<name>/separation.png")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")
    p.set_defaults(func=cmd_separate)

    p = sub.add_parser("stream", help="separate raw PCM or WAV from stdin to stdout as it arrives", description="Separate raw PCM or WAV from stdin to stdout as it arrives.",
                       formatter_class=DefaultsFormatter)
    p.add_argument("--rate", type=int, default=44100, help="sample rate of raw input (Hz)")
    p.add_argument("--channels", type=int, default=2, help="channels of raw input")
    p.add_argument("--dtype", choices=("s16", "s24", "f32"), default="s16", help="raw sample format, little-endian")
    p.add_argument("--wav", action="store_true", help="WAV on stdin (format from its header), WAV on stdout")
    p.add_argument("--no-align", action="store_true",
                   help="emit each block as soon as it is ready (output delayed by the latency, plus its tail)")
    p.add_argument("--block", type=int, default=1024, help="frames read per block")
    add_stream_arguments(p)
    add_model_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no status on stderr")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("live", help="live vocal removal from a sound card input to an output", description="Live vocal removal from a sound card input to an output.",
                       formatter_class=DefaultsFormatter)
    p.add_argument("--input", metavar="DEV", help="input device (index or name; default: the system default)")
    p.add_argument("--output", metavar="DEV", help="output device (index or name; default: the system default)")
    p.add_argument("--rate", type=int, help="sample rate (default: the devices' default rate)")
    p.add_argument("--channels", type=int, default=2, help="channels")
    p.add_argument("--blocksize", type=int, default=1024, help="frames per audio callback")
    p.add_argument("--buffer", type=finite_float, default=250.0, metavar="MS",
                   help="jitter buffer between the audio callback and the processor (ms)")
    p.add_argument("--duration", type=finite_float, help="stop after this many seconds (default: run until Ctrl-C)")
    add_stream_arguments(p)
    add_model_arguments(p)
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("devices", help="list audio devices with their rates and channel counts", description="List audio devices with their rates and channel counts.",
                       formatter_class=DefaultsFormatter)
    p.set_defaults(func=cmd_devices)

    p = sub.add_parser("evaluate", help="BSS Eval scores on a dataset, with oracle and baseline figures", description="BSS Eval scores on a dataset, with oracle and baseline figures.",
                       formatter_class=DefaultsFormatter)
    from .evaluate import add_arguments as add_evaluate_arguments

    add_evaluate_arguments(p)
    add_offline_arguments(p)
    add_model_arguments(p)
    p.set_defaults(func=cmd_evaluate)

    # their arguments belong to their own modules (see run_torch_command)
    sub.add_parser("train", help="train a model (needs stream-dc[train]); see stream-dc train --help", add_help=False)
    sub.add_parser("export", help="export a checkpoint to a model bundle (needs stream-dc[train])", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in TORCH_COMMANDS:
        return run_torch_command(argv[0], argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    handle_sigterm()
    try:
        return args.func(args)
    except KeyboardInterrupt as interrupt:
        print(f"stream-dc {args.command}: interrupted", file=sys.stderr)
        return exit_status(interrupt)
    except BrokenPipeError:
        _silence_stdout()
        return 0


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
