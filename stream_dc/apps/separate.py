"""``stream-dc separate``: audio files (or folders of them) -> ``OUT/<name>/vocals.<format>`` and
``accompaniment.<format>``, at the input's rate, channels and exact length.

Each input is separated on its own: a bad one (unreadable, empty, corrupt half-way through, a full disk while
writing its stems) is reported in one line and the others still run, the exit status then being 1. Stems are
written to exclusive temporary files and renamed when complete (``files``); every path stays inside ``OUT``.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..audio import check_source
from ..bundle import GPU_MODEL_FILE, MODEL_FILE, BundleError
from ..files import FORMATS, StemWriter, inside, output_folder_name, stem_subtype
from ..inference import DeviceError
from ..options import SeparationOptions
from ..readers import audio_files, open_source, quoted
from ..separator import Separator
from .report import EXIT_ERROR, Reporter, failure
from .signals import exit_status

STEMS = ("vocals", "accompaniment")


def describe_model(bundle, provider: str, file_name: str = MODEL_FILE) -> str:
    arch = bundle.config.architecture
    size = f"{arch.get('layers', '?')}x{arch.get('hidden', '?')} BLSTM" if arch else "model"
    heads = ", two heads" if arch.get("mask_head") else ""
    weights = "float16" if file_name == GPU_MODEL_FILE else arch.get("weights", "float32")
    return f"model {bundle.directory} ({size}{heads}, {weights} weights) on {provider}"


class SeparateSession:
    """Separates ``inputs`` (files and folders) into ``out``; ``run()`` returns the exit status.

    ``file_format`` is one of ``files.FORMATS`` and ``bits`` a depth it takes (None: its default); ``plot`` also
    draws ``separation.png`` (offline only, needs matplotlib)."""

    def __init__(self, options: SeparationOptions, inputs: list[str], out: str | Path, file_format: str = "wav",
                 bits: str | None = None, plot: bool = False, reporter: Reporter | None = None):
        self.options, self.inputs, self.out = options, inputs, Path(out)
        self.file_format, self.bits, self.plot = file_format, bits, plot
        self.report = reporter or Reporter("separate")

    def run(self) -> int:
        problem = self._check_arguments()
        if problem:
            return self.report.error(problem)
        for option in self.options.unused(streaming=self.options.mode == "stream"):
            self.report.warning(f"{option} applies to {'offline' if self.options.mode == 'stream' else 'stream'} "
                                "mode only: ignored")
        paths = audio_files(self.inputs)
        if not paths:
            return self.report.error(f"no audio files in {', '.join(quoted(p) for p in self.inputs)}")
        try:
            separator = Separator(options=self.options, keep_analysis=self.plot)
        except (BundleError, DeviceError, ValueError) as error:
            return self.report.error(str(error))
        model = describe_model(separator.bundle, separator.provider, separator.model.file_name)
        self.report.info(f"{model}, {self.options.mode} mode, {self.options.reconstruction} reconstruction")
        failures, used = 0, set()
        for number, path in enumerate(paths, 1):
            folder = self.out / _unique(output_folder_name(path.name), used)
            label = f"[{number}/{len(paths)}] " if len(paths) > 1 else ""
            try:
                self._separate_one(separator, path, folder, label)
            except KeyboardInterrupt as interrupt:
                self.report.end_status()
                self.report.error("interrupted")
                return exit_status(interrupt)
            except Exception as error:  # one input's failure, whatever it is, must not stop the others
                self.report.end_status()
                failures += 1
                self.report.error(failure(path, error))
        return EXIT_ERROR if failures else 0

    def _check_arguments(self) -> str | None:
        if self.plot:
            if self.options.mode != "offline":
                return "--plot draws the offline analysis: use it with --mode offline"
            try:
                import matplotlib  # noqa: F401
            except ImportError:
                return "--plot needs matplotlib: pip install 'stream-dc[eval]'"
        if self.file_format not in FORMATS:
            return f"--format {self.file_format}: choose one of {', '.join(FORMATS)}"
        try:
            stem_subtype(self.file_format, "FLOAT", self.bits)
        except ValueError as error:
            return str(error)
        return None

    def _separate_one(self, separator: Separator, path: Path, folder: Path, label: str) -> None:
        created = not folder.exists()
        writers: list[StemWriter] = []
        started = time.perf_counter()
        try:
            inside(self.out, folder)
            source, input_subtype = open_source(path)
            check_source(source)
            subtype = stem_subtype(self.file_format, input_subtype, self.bits)
            for stem in STEMS:  # one at a time, so that a failure discards those already open
                writers.append(StemWriter(folder / f"{stem}.{self.file_format}", source.sample_rate,
                                          source.channels, subtype, self.file_format))
            total = source.frames / source.sample_rate

            def write(vocals, accompaniment) -> None:
                writers[0].write(vocals)
                writers[1].write(accompaniment)
                self.report.status(f"{label}{quoted(path.name)}: {writers[0].frames / source.sample_rate:6.1f} / "
                                   f"{total:.1f} s")

            separator.separate_source(source, write)
            for writer in writers:
                writer.commit()
            if self.plot and separator.analysis is not None:  # (silent input: nothing to draw)
                from .plots import plot_analysis

                plot_analysis(separator.analysis, separator.bundle.config.features.frame_rate, path.name,
                              folder / "separation.png")
        except BaseException:
            _discard(writers, folder if created else None)
            raise
        seconds = time.perf_counter() - started
        duration = writers[0].frames / source.sample_rate
        self.report.end_status()
        for stem, writer in zip(STEMS, writers):
            if writer.clipped:  # a stem of a loud mix can peak above the mix itself
                self.report.warning(f"{quoted(path)}: the {stem} went past full scale at {writer.clipped} samples, "
                                    f"clipped in its {subtype} file (--bits float keeps them)")
        self.report.info(f"{quoted(path)} -> {folder}/ ({duration:.1f} s of audio in {seconds:.1f} s, real-time "
                         f"factor {seconds / max(duration, 1e-9):.3f})")


def _unique(name: str, used: set) -> str:
    candidate, n = name, 2
    while candidate in used:
        candidate, n = f"{name}-{n}", n + 1
    used.add(candidate)
    return candidate


def _discard(writers: list, folder: Path | None) -> None:
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
