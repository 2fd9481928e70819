"""``stream-dc play`` as a user runs it, on a real-time audio device (a JACK server with its dummy driver): it plays
to the end and exits 0, what it plays equals the streaming processor's stems, the transport and the guide-voice
level do what they say (from the web API and from the terminal's keys), and the web page works in a real browser.
"""
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from stream_dc.stream import StreamProcessor
from tests.jack import PERIOD, RATE, JackTester
from tests.synthetic import accompaniment, voice

pytestmark = pytest.mark.live


def song(path, seconds, seed):
    """A synthetic stereo song at 44.1 kHz written to ``path``; returns its samples as the player reads them."""
    rng = np.random.default_rng(seed)
    v, a = voice(seconds, RATE, rng), accompaniment(seconds, RATE, rng)
    mixture = np.stack([v + a, 0.8 * v + a], axis=1).astype(np.float32)
    sf.write(path, mixture, RATE, subtype="FLOAT")
    return sf.read(path, dtype="float32")[0]


class Play:
    """``stream-dc play`` on the JACK server ``server`` with its web API on a free port, its output recorded."""

    def __init__(self, server, args, record_seconds, tmp_path, stdin=subprocess.DEVNULL):
        tmp_path.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, JACK_DEFAULT_SERVER=server, PYTHONUNBUFFERED="1")
        self.log_path = tmp_path / "play.log"
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "stream_dc", "play", *args, "--device", "cpu",
                                         "--output", "system", "--web", "127.0.0.1:0"],
                                        env=env, stdin=stdin, stderr=self.log, stdout=subprocess.DEVNULL)
        self.tester = JackTester(server, None, record_seconds, name=f"recorder{os.getpid()}")
        self.tester.client.activate()
        self.tester.start()  # recording starts now, before stream-dc opens its ports
        self.tester.listen_to(self.tester.wait_for_ports("PortAudio:out", self.process))
        self.url = self._url()

    def _url(self, timeout=30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(r"web remote: (http://\S+)", self.stderr())
            if found:
                return found.group(1)
            assert self.process.poll() is None, self.stderr()
            time.sleep(0.05)
        raise AssertionError(f"no web address printed: {self.stderr()}")

    def wait_for_text(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in (seen := self.stderr()):
            assert time.monotonic() < deadline and self.process.poll() is None, seen
            time.sleep(0.05)
        return seen

    def stderr(self) -> str:
        return self.log_path.read_text()

    def api(self, path="/api/state", command=None, value=None, token=True):
        base, _, query = self.url.partition("/?")
        url = base + path + ("?" + query if token else "")
        data = None if command is None else json.dumps({"command": command, "value": value}).encode()
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as response:
            return json.loads(response.read())

    def wait(self, condition, timeout=30.0, what="the condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.api()
            if condition(state):
                return state
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {self.api()}")

    def finish(self, timeout=60.0) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self.tester.client.deactivate()
            self.tester.client.close()
            self.log.close()

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def processor_stems(bundle, mixture, preset="balanced"):
    """What ``separate --mode stream`` gives for ``mixture``: the processor's stems, aligned to the input."""
    processor = StreamProcessor(bundle, RATE, 2, latency=preset, device="cpu")
    parts = [processor.process_stems(mixture[i:i + 4096]) for i in range(0, len(mixture), 4096)]
    parts.append(processor.flush_stems())
    vocals = np.concatenate([p[0] for p in parts])[processor.latency_samples:]
    accompaniment_ = np.concatenate([p[1] for p in parts])[processor.latency_samples:]
    return vocals, accompaniment_


def locate(recording, expected):
    """Where ``expected`` starts in ``recording`` (cross-correlation of the first channel), and the SNR of the
    recording against it there."""
    x, y = recording[:, 0].astype(np.float64), expected[:, 0].astype(np.float64)
    size = 1 << int(np.ceil(np.log2(len(x) + len(y))))
    correlation = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(y, size)), size)[:len(x)]
    start = int(np.argmax(correlation))
    segment = recording[start:start + len(expected)]
    error = segment - expected[:len(segment)]
    return start, 10 * np.log10(np.sum(segment ** 2) / max(np.sum(error ** 2), 1e-30))


def test_play_plays_to_the_end_and_equals_the_stream_processor(jack_server, bundle, tmp_path):
    mixture = song(tmp_path / "song.wav", 5.0, seed=1)
    for attempt in range(3):  # a machine busy with other work can starve the player: up to three tries
        play = Play(jack_server, [str(tmp_path / "song.wav")], 12.0, tmp_path / f"run{attempt}")
        try:
            play.wait(lambda s: s["position"] > 0.5, what="playback")
            status = play.finish()
        finally:
            play.stop()
        assert status == 0, play.stderr()
        assert "Traceback" not in play.stderr()
        if "underruns 0" in play.stderr():
            break
    else:
        pytest.fail(f"underruns in all three runs: {play.stderr()}")
    _, accompaniment_ = processor_stems(bundle, mixture)
    start, snr = locate(play.tester.recording, accompaniment_)
    assert snr > 40, f"the player's output differs from the processor's stems: {snr:.1f} dB"
    heard = play.tester.recording[start:start + len(mixture)]
    assert len(heard) == len(mixture) and not np.any(play.tester.recording[start + len(mixture):start + len(
        mixture) + RATE // 2])  # the whole song, then silence


def test_pause_seek_and_next_do_what_they_say(jack_server, tmp_path):
    for name, seed in (("a.wav", 2), ("b.wav", 3)):
        song(tmp_path / name, 8.0, seed)
    play = Play(jack_server, [str(tmp_path / "a.wav"), str(tmp_path / "b.wav")], 40.0, tmp_path)
    try:
        play.wait(lambda s: s["position"] > 1.0, what="playback")
        paused = play.api("/api/command", "pause")
        assert paused["paused"]
        time.sleep(0.3)  # what was in the device's buffer has played
        before = play.api()["position"]
        mark = play.tester.position
        time.sleep(1.0)
        assert play.api()["position"] == before  # the song does not move
        assert not np.any(play.tester.recording[mark:play.tester.position])  # and nothing is heard
        play.api("/api/command", "resume")
        play.wait(lambda s: s["position"] > before + 0.3, what="the song to go on after a pause")
        play.api("/api/command", "seek_to", 6.0)
        state = play.wait(lambda s: s["position"] >= 6.0, what="the seek")
        assert state["song"] == 0 and state["position"] < 7.5
        play.api("/api/command", "next")
        state = play.wait(lambda s: s["song"] == 1, what="the next song")
        assert state["title"] == "b.wav" and state["position"] < 1.5
        play.api("/api/command", "seek", -10)  # clamped to the start of the song
        play.wait(lambda s: s["song"] == 1 and s["position"] < 0.5, what="the seek back")
        status = play.finish()
    finally:
        play.stop()
    assert status == 0, play.stderr()


def test_voice_level_change_is_click_free_and_heard_within_150_ms(jack_server, bundle, tmp_path):
    mixture = song(tmp_path / "song.wav", 8.0, seed=4)
    play = Play(jack_server, [str(tmp_path / "song.wav")], 14.0, tmp_path)
    try:
        play.wait(lambda s: s["position"] > 2.0, what="playback")
        sent = play.tester.client.frame_time  # the JACK clock when the command leaves
        play.api("/api/command", "set_voice", 0.0)
        assert play.api()["voice_db"] == 0.0
        status = play.finish()
    finally:
        play.stop()
    assert status == 0, play.stderr()
    vocals, accompaniment_ = processor_stems(bundle, mixture)
    recording, times = play.tester.recording, play.tester.cycle_times
    start, _ = locate(recording[:RATE * 3], accompaniment_[:RATE])
    heard = recording[start:start + len(mixture)]
    change = np.abs(heard - accompaniment_[:len(heard)]).max(axis=1) > 1e-3  # the voice comes in
    first = int(np.argmax(change))
    settled = first + RATE // 100  # the gain's ramp is over
    loud = np.abs(vocals[settled:len(heard)]).max(axis=1) > 1e-2
    missing = np.flatnonzero(loud & ~change[settled:settled + len(loud)]) + RATE // 100  # samples after the onset
    assert change[first] and not len(missing), (  # from 10 ms after the onset on, the voice is heard wherever it sings
        f"onset at {first / RATE:.3f} s; the voice is missing at {len(missing)} loud samples, the first "
        f"{missing[:1] / RATE if len(missing) else '-'} s after the onset; before the onset the recording strays "
        f"from the accompaniment by {np.abs(heard[:first] - accompaniment_[:first]).max() if first else 0:.2e}")
    when = times[(start + first) // PERIOD] + (start + first) % PERIOD  # the JACK frame time of that sample
    delay = (when - sent) / RATE
    assert delay < 0.150, f"heard {1000 * delay:.0f} ms after the command"
    # after the change the output is accompaniment + voice; across it no step exceeds the music's own
    after = heard[first + RATE // 50:first + RATE]
    full = accompaniment_[first + RATE // 50:first + RATE] + vocals[first + RATE // 50:first + RATE]
    assert 10 * np.log10(np.sum(full ** 2) / np.sum((after - full) ** 2)) > 40
    around = heard[first - RATE // 10:first + RATE // 10]
    music = (accompaniment_ + vocals)[first - RATE // 10:first + RATE // 10]
    assert np.abs(np.diff(around, axis=0)).max() <= 1.05 * np.abs(np.diff(music, axis=0)).max()


def test_terminal_keys_through_a_pseudo_terminal(jack_server, tmp_path):
    import pty

    song(tmp_path / "a.wav", 8.0, 5)
    song(tmp_path / "b.wav", 8.0, 6)
    controller, terminal = pty.openpty()
    play = Play(jack_server, [str(tmp_path / "a.wav"), str(tmp_path / "b.wav")], 30.0, tmp_path, stdin=terminal)
    try:
        assert "keys: space pause" in play.wait_for_text("keys: ")
        play.wait(lambda s: s["position"] > 0.5, what="playback")
        for key, check in ((b"+", lambda s: s["key"] == 1.0), (b"-", lambda s: s["key"] == 0.0),
                           (b"\x1b[A", lambda s: not s["voice_off"]), (b" ", lambda s: s["paused"]),
                           (b" ", lambda s: not s["paused"]), (b"\x1b[C", lambda s: s["position"] > 5.0),
                           (b"n", lambda s: s["song"] == 1)):
            os.write(controller, key)
            play.wait(check, what=f"the key {key!r}")
        os.write(controller, b"q")
        status = play.finish(timeout=20)
    finally:
        play.stop()
        os.close(controller)
        os.close(terminal)
    assert status == 0, play.stderr()


def test_no_keys_and_no_error_without_a_terminal(jack_server, tmp_path):
    song(tmp_path / "a.wav", 2.0, 7)
    play = Play(jack_server, [str(tmp_path / "a.wav")], 8.0, tmp_path)
    try:
        status = play.finish()
    finally:
        play.stop()
    assert status == 0 and "keys:" not in play.stderr() and "error" not in play.stderr()


def test_web_page_in_a_real_browser(jack_server, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    if not os.path.exists("/usr/bin/chromium") or not os.path.exists("/usr/bin/chromedriver"):
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    song(tmp_path / "first song.wav", 20.0, 8)
    play = Play(jack_server, [str(tmp_path / "first song.wav")], 30.0, tmp_path)
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        browser.set_window_size(480, 1000)
        browser.get(play.url)
        wait = WebDriverWait(browser, 20)
        wait.until(lambda b: b.find_element(By.ID, "title").text == "first song.wav")
        wait.until(lambda b: b.find_element(By.ID, "connection").text == "connected")
        slider = browser.find_element(By.ID, "voice")
        slider.click()  # the middle of the slider
        for _ in range(40):
            slider.send_keys(Keys.ARROW_LEFT)
        play.wait(lambda s: s["voice_off"], what="the slider at its left end to turn the voice off")
        for _ in range(10):
            slider.send_keys(Keys.ARROW_RIGHT)
        state = play.wait(lambda s: s["voice_db"] == -50.0, what="the slider to set the engine's voice gain")
        assert not state["voice_off"]
        browser.find_element(By.ID, "key-up").click()
        browser.find_element(By.ID, "key-up").click()
        play.wait(lambda s: s["key"] == 2.0, what="the key buttons")
        wait.until(lambda b: b.find_element(By.ID, "key-value").text == "+2")
        browser.find_element(By.ID, "pause").click()
        play.wait(lambda s: s["paused"], what="the pause button")
        browser.find_element(By.ID, "key-reset").click()
        play.wait(lambda s: s["key"] == 0.0, what="the original key")
        if os.environ.get("STREAM_DC_SCREENSHOT"):  # how docs/play-page.png is made
            for command, value in (("resume", None), ("set_voice", -18), ("set_key", -2)):
                play.api("/api/command", command, value)
            time.sleep(1.5)
            browser.save_screenshot(os.environ["STREAM_DC_SCREENSHOT"])
    finally:
        browser.quit()
        play.api("/api/command", "quit")
        play.finish()
        play.stop()


def test_a_page_bound_beyond_loopback_needs_its_token(jack_server, tmp_path):
    song(tmp_path / "a.wav", 20.0, 9)
    env = dict(os.environ, JACK_DEFAULT_SERVER=jack_server, PYTHONUNBUFFERED="1")
    log = open(tmp_path / "play.log", "w+")
    process = subprocess.Popen([sys.executable, "-m", "stream_dc", "play", str(tmp_path / "a.wav"), "--device", "cpu",
                                "--output", "system", "--web", "0.0.0.0:0"], env=env, stderr=log,
                               stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"web remote: http://([^:/]+):(\d+)/\?token=(\S+)",
                                      (tmp_path / "play.log").read_text())):
            assert time.monotonic() < deadline and process.poll() is None, (tmp_path / "play.log").read_text()
            time.sleep(0.05)
        host, port, token = found.groups()
        assert host not in ("0.0.0.0", "")  # an address a phone can reach is printed
        for path in ("/", "/api/state", "/?token=wrong"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10)
            assert refused.value.code == 403
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/command",
                                         data=json.dumps({"command": "pause"}).encode())
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/state?token={token}", timeout=10) as response:
            assert json.loads(response.read())["title"] == "a.wav"
    finally:
        process.terminate()
        process.wait(30)
        log.close()
    assert process.returncode == 143


def test_a_song_that_cannot_be_read_is_skipped_with_one_line(jack_server, tmp_path):
    song(tmp_path / "1 first.wav", 2.0, 10)
    (tmp_path / "2 broken.wav").write_bytes(b"RIFF not really a wave file at all")
    song(tmp_path / "3 last.wav", 2.0, 11)
    play = Play(jack_server, [str(tmp_path)], 12.0, tmp_path)
    try:
        play.wait(lambda s: s["song"] == 2, what="the last song after the broken one")
        status = play.finish()
    finally:
        play.stop()
    assert status == 1, play.stderr()
    errors = [line for line in play.stderr().splitlines() if "error" in line]
    assert len(errors) == 1 and "skipped" in errors[0] and "2 broken.wav" in errors[0], errors
