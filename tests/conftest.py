from __future__ import annotations

import os
import shutil
import signal

import numpy as np
import pytest

from stream_dc.bundle import load_bundle

# A shell without job control starts background jobs with Ctrl-C ignored, and the commands these tests start would
# inherit that; the tests that send Ctrl-C need it to reach them.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def bundle():
    """The shipped default model."""
    return load_bundle()


class ConstantEmbeddings:
    """Stands in for the network: every bin of window ``k`` gets the voice reference embedding when
    ``pattern(k)`` is True, the accompaniment one otherwise, so masks are exactly known."""

    provider = "test"

    def __init__(self, bundle, pattern=lambda k: True):
        self.bundle, self.pattern, self.calls = bundle, pattern, 0
        config = bundle.config
        self.voice = config.voice_centroid / np.linalg.norm(config.voice_centroid)
        self.accompaniment = config.accompaniment_centroid / np.linalg.norm(config.accompaniment_centroid)

    def embed(self, features: np.ndarray, chunk: int | None = None) -> np.ndarray:
        """Windows ``(batch, frames, n_mels)`` -> ``(batch, frames, n_mels, dim)``; or, for the chunked engine, one
        chunk with its look-ahead ``(frames, n_mels)`` -> the chunk's ``(chunk, n_mels, dim)`` (one call each)."""
        if chunk is not None:
            return self.embed(features[None, :chunk])[0]
        batch, frames, bands = features.shape
        out = np.empty((batch, frames, bands, len(self.voice)), np.float32)
        for b in range(batch):
            out[b] = self.voice if self.pattern(self.calls) else self.accompaniment
            self.calls += 1
        return out

    def reset(self) -> None:
        pass


@pytest.fixture
def constant_model():
    return ConstantEmbeddings


def tone(seconds: float, rate: int, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * freq * t)
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def noise(seconds: float, rate: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((int(seconds * rate), channels))).astype(np.float32)


@pytest.fixture(scope="module")
def jack_server(tmp_path_factory):
    """A JACK server with its dummy driver (see ``tests.jack``), for the tests of a module; skipped without jackd,
    PortAudio or JACK-Client."""
    if shutil.which("jackd") is None:
        pytest.skip("jackd is not installed (apt-get install jackd2)")
    pytest.importorskip("jack")
    try:
        import sounddevice  # noqa: F401
    except OSError:
        pytest.skip("PortAudio is not installed (apt-get install libportaudio2)")
    from tests.jack import start_server

    name = f"streamdc{os.getpid()}{tmp_path_factory.getbasetemp().name[-4:]}"
    log = open(tmp_path_factory.mktemp("jack") / "jackd.log", "w")
    try:
        server = start_server(name, log)
    except RuntimeError as error:
        pytest.fail(f"{error} (see {log.name})")
    yield name
    server.terminate()
    server.wait(timeout=10)
    log.close()
