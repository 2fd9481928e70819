"""Ctrl-C and SIGTERM: both end a command cleanly, with the shell's conventional status (130 and 143)."""
from __future__ import annotations

import signal

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C would be so that every clean-up path runs."""


def _raise_terminated(signum, frame):
    raise Terminated


def handle_sigterm() -> None:
    signal.signal(signal.SIGTERM, _raise_terminated)


def exit_status(interrupt: KeyboardInterrupt) -> int:
    return EXIT_TERMINATED if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED
