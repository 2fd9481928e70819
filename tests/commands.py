"""Running the stream-dc command as a user does: ``python -m stream_dc`` in a subprocess, or ``cli.main`` in this
process; and a short test signal."""
import subprocess
import sys

from stream_dc.apps import cli
from tests.conftest import noise, tone

CLI = [sys.executable, "-m", "stream_dc"]


def run(args, **kwargs):
    return subprocess.run(CLI + args, capture_output=True, **kwargs)


def run_cli(args, capsys):
    status = cli.main(args)
    captured = capsys.readouterr()
    return status, captured.err


def audio(seconds, rate, channels):
    return tone(seconds, rate, channels) + noise(seconds, rate, channels)
