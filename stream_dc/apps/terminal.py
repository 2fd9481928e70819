"""Single-key controls of the karaoke player from a terminal (cbreak mode: no Enter needed, no echo).

A thread reads the keys and calls the player's controls; the terminal's settings are restored when it stops, on
any exit. With stdin not a terminal there are no keys, and no error.
"""
from __future__ import annotations

import os
import select
import sys
import threading

HELP = "keys: space pause | \u2190/\u2192 seek 10 s | n/p next/previous | \u2191/\u2193 guide voice | +/- key | q quit"
SEEK_SECONDS = 10.0


def key_actions(controls) -> dict[bytes, callable]:
    """What each key (as a terminal sends it) does."""
    return {
        b" ": controls.toggle_pause, b"\x1b[D": lambda: controls.seek(-SEEK_SECONDS),
        b"\x1b[C": lambda: controls.seek(SEEK_SECONDS), b"n": controls.next, b"p": controls.previous,
        b"\x1b[A": controls.voice_up, b"\x1b[B": controls.voice_down, b"+": controls.key_up, b"=": controls.key_up,
        b"-": controls.key_down, b"q": controls.quit, b"Q": controls.quit,
    }


def split_keys(data: bytes) -> list[bytes]:
    """The keys in what one read gave: arrow keys are three bytes (ESC [ X), every other key one."""
    keys, i = [], 0
    while i < len(data):
        if data[i:i + 2] == b"\x1b[" and i + 2 < len(data):
            keys.append(data[i:i + 3])
            i += 3
        else:
            keys.append(data[i:i + 1])
            i += 1
    return keys


class TerminalKeys:
    """Reads keys from ``stream`` (stdin) while the player runs; ``start()`` is False when it is not a terminal."""

    def __init__(self, controls, stream=None):
        self.actions = key_actions(controls)
        self.stream = stream if stream is not None else sys.stdin
        self.saved = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._read, name="stream-dc keys", daemon=True)

    def start(self) -> bool:
        try:
            fd = self.stream.fileno()
        except (AttributeError, ValueError, OSError):
            return False
        if not os.isatty(fd):
            return False
        import termios
        import tty

        self.fd, self.saved = fd, termios.tcgetattr(fd)
        tty.setcbreak(fd)
        self.thread.start()
        return True

    def stop(self) -> None:
        self.stopping.set()
        if self.saved is not None:
            import termios

            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
            self.saved = None

    def _read(self) -> None:
        while not self.stopping.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(self.fd, 32)
            except OSError:
                return
            if not data:
                return
            for key in split_keys(data):
                action = self.actions.get(key)
                if action is not None:
                    action()
