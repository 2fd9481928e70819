"""``stream-dc`` command line: play, separate, stream, live, devices, evaluate, train, export.

The CLI only maps arguments to a ``SeparationOptions`` and a session object (``PlaySession``, ``SeparateSession``,
``PipeSession``, ``LiveSession``, ``Evaluation``), which does the work; every command reports problems as one line
on stderr (``report``) and ends on a signal as ``signals`` says. ``train`` and ``export`` import PyTorch lazily
(``pip install 'stream-dc[train]'``).
"""
from __future__ import annotations

import argparse
import math
import os
import sys

from threadpoolctl import threadpool_limits

from .. import __version__
from ..options import SYNTHESIS_WINDOWS_MS, SeparationOptions
from ..presets import KEEP, PRESETS
from .helptext import DefaultsFormatter
from .report import Reporter
from .signals import exit_status, handle_stop_signals

PLAY_PRESET = "balanced"  # see the README: play reads ahead, so a look-ahead preset costs no waiting


def finite_float(text: str) -> float:
    """An argparse type: a finite number (``nan`` and ``inf`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def whole_number(low: int, high: int | None = None):
    """An argparse type: a whole number from ``low`` (to ``high``)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or high is not None and value > high:
            limits = f"{low} to {high}" if high else f"{low} or more"
            raise argparse.ArgumentTypeError(f"{text!r}: use {limits}")
        return value

    return parse


# -- arguments -> options ---------------------------------------------------------------------------------------
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
    parser.add_argument("--mask-head", choices=("off", "average", "mask"),
                        help="for a model with a mask-inference head: off (the cluster masks), average (their mean "
                             "with the head's mask) or mask (the head's alone) (default: the model's setting)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="onnxruntime device: auto uses CUDA when onnxruntime-gpu is installed")
    parser.add_argument("--threads", type=whole_number(1, 256), metavar="N",
                        help="onnxruntime's CPU threads, and offline synthesis's (default: one per core; live: 1, "
                             "which leaves the other cores to the audio callbacks and other programs; the "
                             "STREAM_DC_THREADS variable sets it too)")


def add_offline_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reconstruction", choices=("projection", "inverse-mel"), default="projection",
                        help="projection: mel mask on each channel's STFT, full band; inverse-mel: the paper's")
    parser.add_argument("--no-wiener", dest="wiener", action="store_false",
                        help="offline: apply the final masks as they are, without the multichannel Wiener post-filter")
    parser.add_argument("--no-channel-masks", dest="channel_masks", action="store_false",
                        help="offline: a stereo input's voice masks from its downmix alone (faster) instead of the "
                             "mean over its downmix and each channel")
    parser.add_argument("--synthesis-window", dest="synthesis_window_ms", type=int, choices=SYNTHESIS_WINDOWS_MS,
                        default=SeparationOptions.synthesis_window_ms, metavar="MS",
                        help="offline: the window of the STFT the masks apply on, 32, 64 or 128 ms (streaming: 32 ms)")


def add_stream_arguments(parser: argparse.ArgumentParser, latency: str = "balanced", keep: bool = True) -> None:
    parser.add_argument("--latency", default=latency, metavar="PRESET",
                        help=f"streaming preset: {', '.join(PRESETS)}; or windows hop=FRAMES,lookahead=FRAMES, or the "
                             "chunked BLSTM chunk=FRAMES,lookahead=FRAMES (8 ms frames)")
    if keep:
        parser.add_argument("--keep", choices=KEEP, default="accompaniment",
                            help="which stem to output (accompaniment = vocal remover)")
    parser.add_argument("--vocal-gain", dest="vocal_gain_db", type=finite_float, metavar="DB",
                        help="mix the other stem back in at this gain, e.g. -15 for a quiet guide vocal")
    add_key_argument(parser)


def add_key_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--key", type=finite_float, default=0.0, metavar="SEMITONES",
                        help="change the key of both stems by this many semitones, -12 to 12, fractions allowed "
                             "(0: no key stage)")


def options_from(args: argparse.Namespace) -> SeparationOptions:
    """The ``SeparationOptions`` the parsed arguments give (options a command has no argument for keep their
    defaults). Raises ValueError for values that cannot work."""
    names = [name for name in SeparationOptions.__dataclass_fields__ if hasattr(args, name)]
    return SeparationOptions(**{name: getattr(args, name) for name in names})


# -- commands ---------------------------------------------------------------------------------------------------
def cmd_separate(args) -> int:
    from .separate import SeparateSession

    return SeparateSession(options_from(args), args.inputs, args.out, args.format, args.bits, args.plot,
                           Reporter("separate", args.quiet)).run()


def cmd_stream(args) -> int:
    from .pipe import PipeSession

    return PipeSession(options_from(args), args.rate, args.channels, args.dtype, args.wav, not args.no_align,
                       args.block, _binary(sys.stdin), _binary(sys.stdout), Reporter("stream", args.quiet)).run()


def cmd_live(args) -> int:
    from .live import LiveSession

    return LiveSession(options_from(args), args.input, args.output, args.rate, args.channels, args.blocksize,
                       args.buffer, args.duration).run()


def cmd_play(args) -> int:
    from .play import PlaySession

    return PlaySession(options_from(args), args.inputs, args.output, args.rate, args.channels, args.blocksize,
                       args.shuffle, args.web, not args.no_keys, Reporter("play", args.quiet)).run()


def cmd_devices(args) -> int:
    from .devices import list_devices

    return list_devices()


def cmd_evaluate(args) -> int:
    from ..evaluation.evaluate import Evaluation

    return Evaluation.from_arguments(args, options_from(args)).run()


def _binary(stream):
    """The binary buffer under a standard stream, or None when the stream is closed."""
    return None if stream is None else getattr(stream, "buffer", stream)


TORCH_COMMANDS = {"train": "training.train", "export": "export.exporter"}


def run_torch_command(command: str, argv: list[str]) -> int:
    """Hand ``argv`` to the training or export module, imported only now."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return Reporter(command).error("PyTorch is not installed: pip install 'stream-dc[train]'")
    import importlib

    return importlib.import_module(TORCH_COMMANDS[command]).main(argv)


# -- the parser -------------------------------------------------------------------------------------------------
def _command(sub, name: str, summary: str, func):
    parser = sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                            formatter_class=DefaultsFormatter)
    parser.set_defaults(func=func)
    return parser


def _play_parser(sub) -> None:
    p = _command(sub, "play", "play songs with the voice removed; control the guide voice, the key and the "
                 "transport from the keyboard or a web page", cmd_play)
    p.add_argument("inputs", nargs="+", metavar="FILE_OR_FOLDER", help="songs, or folders of songs, in order")
    p.add_argument("--shuffle", action="store_true", help="play the songs in random order")
    p.add_argument("--web", nargs="?", const="", metavar="[HOST:]PORT",
                   help="serve a remote-control page (default 127.0.0.1:8765; 0.0.0.0:PORT for a phone); its URL, "
                        "with the access token, is printed")
    p.add_argument("--output", metavar="DEV", help="output device (index or name; default: the system default)")
    p.add_argument("--rate", type=whole_number(1000, 768000), help="output sample rate (default: the device's)")
    p.add_argument("--channels", type=whole_number(1, 64), default=2, help="output channels")
    p.add_argument("--blocksize", type=int, default=1024, help="frames per audio callback")
    p.add_argument("--no-keys", action="store_true", help="do not read the terminal's keys")
    p.add_argument("-q", "--quiet", action="store_true", help="no status on stderr")
    add_stream_arguments(p, latency=PLAY_PRESET, keep=False)
    add_model_arguments(p)


def _separate_parser(sub) -> None:
    from ..files import FORMATS

    p = _command(sub, "separate", "separate audio files (or folders of them) into vocals and accompaniment",
                 cmd_separate)
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files (wav, flac, ogg, mp3, m4a, ...) or folders")
    p.add_argument("-o", "--out", required=True, help="output folder; each input gets OUT/<name>/")
    p.add_argument("--mode", choices=("offline", "stream"), default="offline",
                   help="offline: the whole-signal procedure; stream: the streaming processor, aligned")
    p.add_argument("--latency", default="balanced", help="streaming preset for --mode stream")
    add_key_argument(p)
    add_offline_arguments(p)
    p.add_argument("--format", choices=tuple(FORMATS), default="wav", help="stems' file format")
    p.add_argument("--bits", choices=("16", "24", "32", "float"),
                   help="sample format of wav (16, 24, 32 or float) and flac (16 or 24) stems (default: wav keeps the "
                        "input's PCM depth and writes float for compressed input, which never clips; flac 24)")
    p.add_argument("--plot", action="store_true", help="also write OUT/<name>/separation.png")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or summary on stderr")
    add_model_arguments(p)


def _stream_parser(sub) -> None:
    p = _command(sub, "stream", "separate raw PCM or WAV from stdin to stdout as it arrives", cmd_stream)
    p.add_argument("--rate", type=whole_number(1000, 768000), default=44100, help="sample rate of raw input (Hz)")
    p.add_argument("--channels", type=whole_number(1, 64), default=2, help="channels of raw input")
    p.add_argument("--dtype", choices=("s16", "s24", "f32"), default="s16", help="raw sample format, little-endian")
    p.add_argument("--wav", action="store_true", help="WAV on stdin (format from its header), WAV on stdout")
    p.add_argument("--no-align", action="store_true",
                   help="emit each block as soon as it is ready (output delayed by the latency, plus its tail)")
    p.add_argument("--block", type=whole_number(1, 1 << 20), default=1024, help="frames read per block")
    p.add_argument("-q", "--quiet", action="store_true", help="no status on stderr")
    add_stream_arguments(p)
    add_model_arguments(p)


def _live_parser(sub) -> None:
    p = _command(sub, "live", "live vocal removal from a sound card input (or what the computer plays) to an output",
                 cmd_live)
    p.add_argument("--input", metavar="DEV", help="input device (index or name; default: the system default; "
                   "stream-dc devices marks the ones that hear what the computer plays)")
    p.add_argument("--output", metavar="DEV", help="output device (index or name; default: the system default)")
    p.add_argument("--rate", type=whole_number(1000, 768000), help="sample rate (default: the devices' default rate)")
    p.add_argument("--channels", type=whole_number(1, 64), default=2, help="channels")
    p.add_argument("--blocksize", type=int, default=1024, help="frames per audio callback")
    p.add_argument("--buffer", type=finite_float, default=250.0, metavar="MS",
                   help="jitter buffer between the audio callback and the processor (ms)")
    p.add_argument("--duration", type=finite_float, help="stop after this many seconds (default: run until Ctrl-C)")
    add_stream_arguments(p)
    add_model_arguments(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="stream-dc", description="Real-time singing-voice separation by deep "
                                     "clustering: a karaoke player and a vocal remover for files, pipes and live "
                                     "audio.")
    parser.add_argument("--version", action="version", version=f"stream-dc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _play_parser(sub)
    _separate_parser(sub)
    _stream_parser(sub)
    _live_parser(sub)
    _command(sub, "devices", "list audio devices with their rates and channel counts", cmd_devices)
    p = _command(sub, "evaluate", "score stream-dc, oracle masks and baselines on a dataset", cmd_evaluate)
    from ..evaluation.evaluate import add_arguments as add_evaluate_arguments

    add_evaluate_arguments(p)
    add_offline_arguments(p)
    add_model_arguments(p)
    # their arguments belong to their own modules (see run_torch_command)
    sub.add_parser("train", help="train a model (needs stream-dc[train]); see stream-dc train --help", add_help=False)
    sub.add_parser("export", help="export a checkpoint to a model bundle (needs stream-dc[train])", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    handle_stop_signals()
    if argv and argv[0] in TORCH_COMMANDS:
        return run_torch_command(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    # BLAS gets one thread: the runtime shares its work among the cores itself (onnxruntime's threads, the synthesis's
    # slice pool), and BLAS threads left spinning after a product took the cores from onnxruntime's (streaming with
    # the balanced preset: real-time factor 0.12 with them, 0.075 without)
    threadpool_limits(1, user_api="blas")
    try:
        return args.func(args)
    except ValueError as error:  # options that cannot work together (SeparationOptions.check)
        return Reporter(args.command).error(str(error))
    except KeyboardInterrupt as interrupt:
        Reporter(args.command).error("interrupted")
        return exit_status(interrupt)
    except BrokenPipeError:
        _silence_stdout()
        return 0


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter's final flush stays quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
