"""Where the time and the memory of a run go, stage by stage, measured in this process.

``StageClock`` wraps the functions that do each stage's work (decode, features, network, clustering, refiner,
Wiener, synthesis, key change, write) for the length of a ``with`` block. Time is charged exclusively: while a
stage's function runs, its wall-clock time goes to that stage, not to the stage that called it (the Wiener step's
time is not also synthesis's); what no stage claims is ``other`` (Python start-up excluded: the clock starts with
the block). The work a stage hands to threads (onnxruntime's, the synthesis's slice pool) counts as the wall-clock
time the stage waits for it. The stages themselves must run in one thread (``separate`` and ``stream`` do; the
player's and ``live``'s threads would mix their stacks). The peak resident memory's growth is charged the same
way: to the stage running when the peak rose.

    with StageClock() as clock:
        cli.main(["separate", "song.wav", "-o", "out"])
    print(clock.rows(audio_seconds))

As a script it runs one ``stream-dc`` command under the clock and writes the rows as JSON:

    python benchmarks/stages.py SECONDS_OF_AUDIO OUT.json -- separate song.wav -o out
"""
from __future__ import annotations

import dataclasses
import functools
import json
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stream_dc import separator as separator_module  # noqa: E402
from stream_dc import synthesis as synthesis_module  # noqa: E402
from stream_dc.engines import _Engine  # noqa: E402
from stream_dc.files import StemWriter  # noqa: E402
from stream_dc.frontend import AnalysisFrontEnd  # noqa: E402
from stream_dc.inference import ChunkedEmbeddingModel, EmbeddingModel  # noqa: E402
from stream_dc.keyshift import KeyShift  # noqa: E402
from stream_dc.refine import MaskRefiner  # noqa: E402
from stream_dc.separator import Separator  # noqa: E402
from stream_dc.synthesis import InverseMelSynthesis, ProjectionSynthesis  # noqa: E402

STAGES = ("decode", "features", "network", "clustering", "refiner", "wiener", "synthesis", "key change", "write",
          "other")

# (owner, attribute, stage): the functions whose time is each stage's
WRAPPED = [
    (AnalysisFrontEnd, "process", "features"), (AnalysisFrontEnd, "flush", "features"),
    (EmbeddingModel, "embed", "network"), (EmbeddingModel, "run", "network"),
    (ChunkedEmbeddingModel, "run", "network"),
    (separator_module, "kmeans", "clustering"), (separator_module, "gated_voice_mask", "clustering"),
    (_Engine, "_masks", "clustering"),
    (MaskRefiner, "refine", "refiner"),
    (synthesis_module, "wiener_voice", "wiener"),
    (ProjectionSynthesis, "process", "synthesis"), (ProjectionSynthesis, "flush", "synthesis"),
    (InverseMelSynthesis, "process", "synthesis"), (InverseMelSynthesis, "flush", "synthesis"),
    (KeyShift, "process", "key change"), (KeyShift, "flush", "key change"),
    (StemWriter, "write", "write"), (StemWriter, "commit", "write"),
]


_INHERITED = object()  # a class attribute that came from a base class: deleted again, not set


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StageClock:
    """Seconds and peak-memory growth (MB) per stage of what runs inside ``with StageClock() as clock:``; see the
    module docstring. ``seconds``, ``peak_growth_mb``: stage -> figure; ``peak_mb``: the process's peak at the end.
    """

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)
        self.peak_growth_mb: dict[str, float] = defaultdict(float)
        self.peak_mb = 0.0
        self._stack: list[str] = []
        self._saved: list[tuple[object, str, object]] = []

    # -- charging ---------------------------------------------------------------------------------------------
    def _switch(self) -> None:
        """Charge the time and peak growth since the last switch to the stage now running."""
        now, peak = time.perf_counter(), _peak_mb()
        stage = self._stack[-1] if self._stack else "other"
        self.seconds[stage] += now - self._last
        self.peak_growth_mb[stage] += peak - self._peak
        self._last, self._peak = now, peak

    def _enter(self, stage: str) -> None:
        self._switch()
        self._stack.append(stage)

    def _leave(self) -> None:
        self._switch()
        self._stack.pop()

    def timed(self, function, stage: str):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            self._enter(stage)
            try:
                return function(*args, **kwargs)
            finally:
                self._leave()
        return wrapper

    def _timed_blocks(self, blocks):
        """``blocks`` (an ``AudioSource``'s) whose iterators charge the time of each block to ``decode``."""
        def timed_blocks(*args, **kwargs):
            iterator = blocks(*args, **kwargs)
            while True:
                self._enter("decode")
                try:
                    block = next(iterator)
                except StopIteration:
                    return
                finally:
                    self._leave()
                yield block
        return timed_blocks

    # -- patching ---------------------------------------------------------------------------------------------
    def _patch(self, owner, name: str, replacement) -> None:
        self._saved.append((owner, name, vars(owner).get(name, _INHERITED)))
        setattr(owner, name, replacement)

    def __enter__(self) -> "StageClock":
        clock = self
        separate_source = Separator.separate_source

        def timed_separate_source(separator, source, write):
            return separate_source(separator, dataclasses.replace(source, blocks=clock._timed_blocks(source.blocks)),
                                   write)

        self._last, self._peak = time.perf_counter(), _peak_mb()
        try:
            for owner, name, stage in WRAPPED:
                self._patch(owner, name, self.timed(getattr(owner, name), stage))
            self._patch(Separator, "separate_source", timed_separate_source)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._switch()
        self.peak_mb = _peak_mb()
        for owner, name, original in reversed(self._saved):
            if original is _INHERITED:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        self._saved.clear()

    # -- reporting --------------------------------------------------------------------------------------------
    def rows(self, audio_seconds: float) -> list[dict]:
        """One row per stage that ran: seconds, real-time factor, share of the total, peak growth."""
        total = sum(self.seconds.values())
        return [{"stage": stage, "seconds": f"{self.seconds[stage]:.2f}",
                 "rtf": f"{self.seconds[stage] / audio_seconds:.4f}",
                 "share": f"{100 * self.seconds[stage] / total:.0f}%",
                 "peak_growth_mb": f"{self.peak_growth_mb[stage]:.0f}"}
                for stage in STAGES if stage in self.seconds] + [
                {"stage": "total", "seconds": f"{total:.2f}", "rtf": f"{total / audio_seconds:.4f}", "share": "100%",
                 "peak_growth_mb": f"{sum(self.peak_growth_mb.values()):.0f}"}]


def main() -> int:
    seconds, out, separator, *command = sys.argv[1:]
    if separator != "--":
        raise SystemExit("usage: python benchmarks/stages.py SECONDS_OF_AUDIO OUT.json -- COMMAND [ARGS...]")
    from stream_dc.apps import cli

    with StageClock() as clock:
        status = cli.main(command)
    Path(out).write_text(json.dumps({"rows": clock.rows(float(seconds)), "peak_mb": clock.peak_mb, "status": status}))
    return status


if __name__ == "__main__":
    sys.exit(main())
