"""The one signal policy of every command: Ctrl-C (SIGINT), SIGTERM and SIGHUP (a closed terminal, a dropped ssh)
all end a command cleanly, through the same clean-up paths, with the shell's conventional status: 128 plus the
signal's number (130, 143, 129). A broken pipe ends a command quietly (``BrokenPipeError``)."""
from __future__ import annotations

import signal

EXIT_INTERRUPTED = 128 + signal.SIGINT
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where Ctrl-C would be so that every clean-up path runs."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_terminated(signum, frame):
    raise Terminated(signum)


def handle_stop_signals() -> None:
    """Make SIGTERM and SIGHUP raise ``Terminated`` in the main thread (Ctrl-C already raises KeyboardInterrupt)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _raise_terminated)


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """130 for Ctrl-C, 128 + the signal's number for the others."""
    return 128 + interrupt.signum if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED
