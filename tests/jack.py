"""A JACK server with its dummy driver (a real-time audio device without a sound card) and a JACK client that plays
a signal into, and records what comes out of, stream-dc's ports. Needs jackd (Debian's jackd2), PortAudio
(libportaudio2) and the JACK-Client package; ``.ci/run`` installs them; tests are skipped without them."""
import subprocess
import threading
import time

import numpy as np

RATE, PERIOD = 44100, 1024


def start_server(name: str, log=subprocess.DEVNULL, timeout: float = 45.0) -> subprocess.Popen:
    """``jackd -d dummy`` named ``name``, once a client can connect to it (RuntimeError when it does not start)."""
    import jack

    command = ["jackd", "--no-realtime", "-n", name, "-d", "dummy", "-r", str(RATE), "-p", str(PERIOD)]
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while True:
        try:
            jack.Client("probe", servername=name, no_start_server=True).close()
            return server
        except jack.JackOpenError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise RuntimeError(f"jackd {name} did not start") from None
            time.sleep(0.2)


class JackTester:
    """A JACK client that plays ``signal`` from the cycle ``start()`` is called and records what it hears (from
    ``start()``, or from ``record()`` when there is nothing to play); ``frames[i]`` is the JACK frame time of
    recording sample ``i``'s cycle start."""

    def __init__(self, server, signal_, record_seconds, name="tester"):
        import jack

        self.client = jack.Client(name, servername=server, no_start_server=True)
        self.outs = [self.client.outports.register(f"out_{c}") for c in range(2)]
        self.ins = [self.client.inports.register(f"in_{c}") for c in range(2)]
        self.signal = signal_ if signal_ is not None else np.zeros((0, 2), np.float32)
        self.recording = np.zeros((int(record_seconds * RATE), 2), np.float32)
        self.cycle_times = np.zeros(len(self.recording) // PERIOD + 2, np.int64)
        self.position = None  # samples played so far, None before start
        self.done = threading.Event()
        self.xruns = 0
        self.client.set_process_callback(self.process)
        self.client.set_xrun_callback(self.xrun)

    def xrun(self, delay):
        self.xruns += 1

    def process(self, frames):
        if self.position is None:
            for port in self.outs:
                port.get_array().fill(0)
            return
        start, end = self.position, self.position + frames
        for c, port in enumerate(self.outs):
            out = port.get_array()
            out.fill(0)
            chunk = self.signal[start:end, c]
            out[:len(chunk)] = chunk
        if end <= len(self.recording):
            self.cycle_times[start // PERIOD] = self.client.last_frame_time
            for c, port in enumerate(self.ins):
                self.recording[start:end, c] = port.get_array()
        else:
            self.done.set()
        self.position = end

    def start(self):
        self.position = 0

    def wait_for_ports(self, prefix: str, process, timeout: float = 30.0) -> list[str]:
        """The audio ports whose names start with ``prefix``, once ``process`` has opened them."""
        deadline = time.monotonic() + timeout
        while True:
            ports = [p.name for p in self.client.get_ports(prefix, is_audio=True)]
            if ports:
                return ports
            assert process.poll() is None, process.stderr.read() if process.stderr else "the process ended"
            assert time.monotonic() < deadline, f"no {prefix} ports appeared"
            time.sleep(0.05)

    def listen_to(self, outputs: list[str]) -> None:
        """Record ``outputs`` (stream-dc's output ports) instead of whatever they are connected to."""
        for c, port in enumerate(outputs[:2]):
            for target in self.client.get_all_connections(port):
                self.client.disconnect(port, target)
            self.client.connect(port, f"{self.client.name}:in_{c}")
