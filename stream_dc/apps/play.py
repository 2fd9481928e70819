"""``stream-dc play``: the karaoke player. Songs (files and folders, in order or shuffled) play on the output device
with the voice removed, at once; the guide voice's level, the key and the transport are controlled from the
terminal's keys and, with ``--web``, from a web page on a phone or a browser. The audio path is ``player``; this is
the command around it: the device, the user interfaces, the status line, and a clean end.
"""
from __future__ import annotations

import time

from ..bundle import BundleError
from ..inference import DeviceError
from ..options import SeparationOptions
from ..readers import audio_files, quoted
from .devices import abandon_portaudio, close_stream, find_device, sounddevice
from .player import MIXER_AHEAD_SECONDS, Player
from .report import EXIT_ERROR, Reporter
from .signals import exit_status
from .terminal import HELP, TerminalKeys
from .web import WebError, WebRemote, parse_address

STATUS_INTERVAL = 0.1  # seconds
STALL_SECONDS = 1.0


class PlaySession:
    """Plays ``inputs`` on the ``output`` device (index or part of a name; None: the default); ``run()`` returns
    the exit status: 0 at the end of the queue or on ``q``, 130 / 143 / 129 on a signal, 1 on an error (a song that
    cannot be read is reported and skipped, and the status is then 1).

    ``web`` is ``[HOST:]PORT`` for the web page ("" for the default address, None: no page); ``keys`` reads the
    terminal's keys when stdin is a terminal."""

    def __init__(self, options: SeparationOptions, inputs: list[str], output: str | None = None,
                 rate: int | None = None, channels: int = 2, blocksize: int = 1024, shuffle: bool = False,
                 web: str | None = None, keys: bool = True, reporter: Reporter | None = None):
        self.options, self.inputs, self.output, self.rate, self.channels = options, inputs, output, rate, channels
        self.blocksize, self.shuffle, self.web, self.keys = blocksize, shuffle, web, keys
        self.report = reporter or Reporter("play")

    def run(self) -> int:
        if self.channels < 1 or not 16 <= self.blocksize <= 1 << 16:
            return self.report.error("--channels must be at least 1 and --blocksize 16 to 65536 frames")
        for option in self.options.unused(streaming=True):
            self.report.warning(f"{option} applies to offline separation only: ignored")
        paths = audio_files(self.inputs)
        if not paths:
            return self.report.error(f"no audio files in {', '.join(quoted(p) for p in self.inputs)}")
        try:
            address = parse_address(self.web) if self.web is not None else None
            sd = sounddevice()
            index, info = find_device(sd, self.output, "output")
            rate = int(self.rate or info["default_samplerate"])
            sd.check_output_settings(device=index, channels=self.channels, dtype="float32", samplerate=rate)
            player = Player(self.options, paths, rate, self.channels, self.shuffle)
        except (BundleError, DeviceError, WebError, ValueError) as error:
            return self.report.error(str(error))
        except Exception as error:  # sounddevice.PortAudioError from the settings check
            return self.report.error(f"output device {self.output or 'default'}: {error}")
        player.start()  # the renderer starts at once, while the device opens
        try:
            stream = sd.OutputStream(device=index, samplerate=rate, blocksize=self.blocksize,
                                     channels=self.channels, dtype="float32", callback=player.callback)
        except Exception as error:  # sounddevice.PortAudioError
            player.stop()
            return self.report.error(f"cannot open the output device {info['name']!r} ({error})")
        return self._play(player, stream, info["name"], address)

    def _play(self, player: Player, stream, device: str, address) -> int:
        device_ms = 1000 * stream.latency
        player.state.latency_ms += device_ms + 1000 * MIXER_AHEAD_SECONDS
        keys, remote, status, failure, device_failed = None, None, 0, None, False
        try:
            if address is not None:  # the page's address is taken before any sound, so a port in use stops it all
                remote = WebRemote(player, *address)
                url = remote.start()
            stream.start()
            self.report.info(f"{len(player.paths)} song{'s' if len(player.paths) != 1 else ''} on {device}, "
                             f"{player.sample_rate} Hz; preset {player.processor.preset.name}; controls heard after "
                             f"{player.state.latency_ms:.0f} ms; onnxruntime {player.processor.provider}")
            if remote is not None:
                self.report.info(f"web remote: {url}")
            if self.keys:
                keys = TerminalKeys(player.controls)
                if keys.start():
                    self.report.info(HELP)
            failure, device_failed = self._watch(player, stream)
        except KeyboardInterrupt as interrupt:
            status = exit_status(interrupt)
        except WebError as error:
            failure = str(error)
        except Exception as error:  # sounddevice.PortAudioError while running
            failure, device_failed = f"audio device error: {error}", True
        finally:
            if keys is not None:
                keys.stop()
            player.stop()
            if remote is not None:
                remote.stop()
            if not close_stream(stream):
                failure, device_failed = failure or "the audio device did not close", True
            player.join(2.0)
        return self._summary(player, status, failure, device_failed)

    def _summary(self, player: Player, status: int, failure: str | None, device_failed: bool) -> int:
        self.report.end_status()
        state = player.state
        where = "".join(f"; underrun in song {song + 1} at {seconds:.1f} s" for song, seconds in state.underrun_at[:3])
        self.report.info(f"stopped at {state.songs[min(state.song, len(state.songs) - 1)]} "
                         f"{state.position / state.sample_rate:.1f} s: real-time factor "
                         f"{state.real_time_factor:.3f}, underruns {state.underruns}{where}")
        if device_failed:
            abandon_portaudio(sounddevice())
        if failure:
            return self.report.error(failure)
        return status or (EXIT_ERROR if state.skipped else 0)

    def _skipped(self, state, reported: int) -> int:
        """Say why each song that could not play was skipped (once); returns how many have been said."""
        for song, reason in state.skipped[reported:]:
            self.report.end_status()
            self.report.error(f"skipped: {reason}")
        return len(state.skipped)

    def _watch(self, player: Player, stream) -> tuple[str | None, bool]:
        """Wait for the end of the queue or a quit (no failure), or a failure: a line saying what, and whether the
        device is what failed."""
        state, song, reported = player.state, -1, 0
        seen, last_progress = -1, time.monotonic()
        while True:
            time.sleep(STATUS_INTERVAL)
            now = time.monotonic()
            reported = self._skipped(state, reported)
            if state.error is not None:
                return state.error, False
            if state.finished or player.stopping.is_set():
                return None, False
            if not stream.active:
                return "the audio stream stopped (device disconnected?)", True
            if player.callbacks != seen:
                seen, last_progress = player.callbacks, now
            elif now - last_progress > STALL_SECONDS:
                return f"the audio device stopped asking for audio for {STALL_SECONDS:g} s (disconnected, or its " \
                       "server died?)", True
            if state.song != song and not self.report.interactive:
                song = state.song
                self.report.info(f"playing {quoted(state.songs[song])} ({song + 1}/{len(state.songs)})")
            self.report.status(_status_line(state))


def _status_line(state) -> str:
    snapshot = state.snapshot()
    voice = "off" if snapshot["voice_off"] else f"{state.voice_db:+.0f} dB"
    duration = "--:--" if snapshot["duration"] is None else _clock(snapshot["duration"])
    return (f"{'paused ' if state.paused else ''}{state.song + 1}/{len(state.songs)} {snapshot['title'][:40]} | "
            f"{_clock(snapshot['position'])} / {duration} | key {state.key:+g} | voice {voice} | latency "
            f"{state.latency_ms:.0f} ms | real-time factor {state.real_time_factor:.3f} | underruns {state.underruns}")


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(max(seconds, 0)), 60)
    return f"{minutes}:{seconds:02d}"
