"""The one error reporter of every command: problems are one line on stderr, ``stream-dc COMMAND: error: REASON``
(or ``warning:``), naming the input; status lines go to stderr too and never into the audio."""
from __future__ import annotations

import errno
import sys
from typing import TextIO

from ..readers import quoted

EXIT_ERROR = 1


class Reporter:
    """Lines on ``stream`` (stderr) for ``command``; ``quiet`` silences ``info`` (never errors or warnings)."""

    def __init__(self, command: str, quiet: bool = False, stream: TextIO | None = None):
        self.command, self.quiet = command, quiet
        self.stream = stream if stream is not None else sys.stderr

    @property
    def interactive(self) -> bool:
        """Whether status may be redrawn in place (a terminal, not quiet)."""
        return not self.quiet and _isatty(self.stream)

    def error(self, message: str) -> int:
        """Report ``message`` as an error; returns the exit status for it."""
        self._line(f"stream-dc {self.command}: error: {_one_line(message)}")
        return EXIT_ERROR

    def warning(self, message: str) -> None:
        self._line(f"stream-dc {self.command}: warning: {_one_line(message)}")

    def info(self, message: str) -> None:
        if not self.quiet:
            self._line(f"stream-dc {self.command}: {message}")

    def status(self, text: str) -> None:
        """Redraw the status line in place (terminals only)."""
        if self.interactive:
            print("\r" + text + "\x1b[K", end="", file=self.stream, flush=True)

    def end_status(self) -> None:
        if self.interactive:
            print(file=self.stream, flush=True)

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


def failure(path, error: BaseException) -> str:
    """One line naming the input ``path`` and the reason of ``error``."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        reason = error.strerror or "no space left on the output device"
    else:
        lines = str(error).strip().splitlines()
        reason = lines[-1] if lines else type(error).__name__
        if "No space left" in reason or "disk full" in reason.lower():
            reason = "no space left on the output device"
        elif not isinstance(error, (ValueError, OSError)):
            reason = f"{type(error).__name__}: {reason}"
    name = quoted(path)
    return reason if reason.startswith(name) else f"{name}: {reason}"


def _one_line(message: str) -> str:
    return " ".join(str(message).splitlines()) or "unknown error"


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
