"""A long ``stream-dc live`` run on a JACK server with the dummy driver (a real-time device without a sound card).

    python benchmarks/live_run.py [--minutes 10] [--latency balanced] [--blocksize 1024] [--buffer 250]

Starts ``jackd -d dummy``, runs ``stream-dc live`` on it, plays the example song in a loop into its input ports
from a JACK client for the given time, then stops it with SIGINT and prints its summary (latency, real-time
factor, underruns, overruns) and the number of xruns the JACK server reported. Needs jackd (jackd2), PortAudio
and JACK-Client. Writes benchmarks/results/live_run_<preset>.txt.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import RESULTS, jack_server, machine, music  # noqa: E402

RATE = 44100


def _ctrl_c_on() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--latency", default="balanced")
    parser.add_argument("--blocksize", type=int, default=1024)
    parser.add_argument("--buffer", type=float, default=250.0, help="stream-dc live's jitter buffer (ms)")
    args = parser.parse_args()
    import jack

    with jack_server(f"streamdc-bench{os.getpid()}", RATE, args.blocksize) as server:
        song = music(60.0, RATE, 2)
        env = dict(os.environ, JACK_DEFAULT_SERVER=server, PYTHONUNBUFFERED="1")
        live = subprocess.Popen([sys.executable, "-m", "stream_dc", "live", "--blocksize", str(args.blocksize),
                                 "--latency", args.latency, "--input", "system", "--output", "system",
                                 "--buffer", str(args.buffer)],
                                env=env, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_ctrl_c_on)  # a shell's background job starts with Ctrl-C ignored
        client = jack.Client("player", servername=server, no_start_server=True)
        outs = [client.outports.register(f"out_{c}") for c in range(2)]
        state = {"position": 0, "xruns": 0, "peak": 0.0}
        monitor = client.inports.register("monitor")

        @client.set_process_callback
        def process(frames):
            start = state["position"] % len(song)
            index = (np.arange(frames) + start) % len(song)
            for c, port in enumerate(outs):
                port.get_array()[:] = song[index, c]
            state["position"] += frames
            state["peak"] = max(state["peak"], float(np.max(np.abs(monitor.get_array()))))

        @client.set_xrun_callback
        def xrun(delay):
            state["xruns"] += 1

        with client:
            while not client.get_ports("PortAudio:", is_audio=True):
                if live.poll() is not None:
                    print(live.stderr.read(), file=sys.stderr)
                    return 1
                time.sleep(0.1)
            for c in range(2):
                for source in client.get_all_connections(f"PortAudio:in_{c}"):
                    client.disconnect(source, f"PortAudio:in_{c}")
                client.connect(f"player:out_{c}", f"PortAudio:in_{c}")
            client.connect("PortAudio:out_0", "player:monitor")
            state["xruns"] = 0
            time.sleep(args.minutes * 60)
            live.send_signal(signal.SIGINT)
            try:
                _, stderr = live.communicate(timeout=60)
            except subprocess.TimeoutExpired:  # a hang at exit is a finding: say so, and leave no process behind
                live.kill()
                _, stderr = live.communicate()
                print(f"stream-dc live did not end within 60 s of SIGINT; its stderr:\n{stderr}", file=sys.stderr)
                return 1
    lines = stderr.strip().splitlines()
    text = "\n".join([
        f"machine: {machine()}; JACK dummy driver, {RATE} Hz, period {args.blocksize}; preset {args.latency}; "
        f"jitter buffer {args.buffer:g} ms; {args.minutes:g} minutes of the example song in a loop",
        lines[0], lines[-1],
        f"exit status {live.returncode}; JACK server xruns during the run: {state['xruns']}; output peak "
        f"{state['peak']:.2f}"])
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"live_run_{args.latency}.txt").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
