"""The karaoke player's audio path: a queue of songs decoded, separated, shifted in key and mixed live.

Three parts, each on its own thread, joined by bounded buffers:

- the **renderer** reads the current song from its position and runs it through a ``StreamProcessor``, trimmed of
  its latency so that the stems line up with the song; it reads ahead of the playback clock (up to
  ``READ_AHEAD_SECONDS``), which gives ``play`` a look-ahead preset's quality with no wait, and goes on with the
  next song when one ends (gapless), or when one cannot be read (``state.skipped`` says why);
- the **mixer** takes the stems a few blocks ahead of playback and runs them through the key change
  (``KeyShift``, both stems alike, so they stay in tune), keeping ``MIXER_AHEAD_SECONDS`` ready;
- the **audio callback** only moves samples: it mixes ``accompaniment + gain * voice`` with the gain ramped over
  ``RAMP_SECONDS`` to its target, measures the levels, and plays silence (counting an underrun) when nothing is
  ready. It never waits on a lock: controls are plain values it reads once per block.

Controls (``PlayerControls``) change those values from the terminal or the web page: pause, seek, next/previous
song, guide-voice level, key. A seek or a change of song bumps a generation number; the renderer and the mixer skip
what they meet of older generations, the callback drops the older chunks that are ready, and the renderer starts
again from the new position.
"""
from __future__ import annotations

import math
import queue
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..audio import AudioSource, InputError
from ..keyshift import AlignedKeyShift
from ..options import KEY_RANGE, SeparationOptions
from ..readers import open_source
from ..resample import Resampler
from ..stages import Aligner
from ..stream import StreamProcessor

READ_AHEAD_SECONDS = 8.0  # separated audio the renderer keeps ahead of playback
MIXER_AHEAD_SECONDS = 0.25  # key-shifted audio ready for the callback (how soon a key change is heard)
PREROLL_SECONDS = 0.2  # what must be ready before a song (or a seek) starts playing
RENDER_BLOCK = 2048  # frames separated at a time
RAMP_SECONDS = 0.005  # a voice-level change ramps over this long: no click
VOICE_STEP_DB, KEY_STEP = 3.0, 1.0
VOICE_MAX_DB = 6.0
VOICE_OFF_DB = -60.0  # at or below this the voice is off (gain 0)
VOICE_ON_DB = -30.0  # where the guide voice comes back in when it is turned up from off
RESTART_SECONDS = 3.0  # "previous" past this point of a song starts it again


def voice_gain(db: float) -> float:
    """Linear gain of the guide voice at ``db`` (0 at or below ``VOICE_OFF_DB``)."""
    return 0.0 if db <= VOICE_OFF_DB else float(10.0 ** (db / 20.0))


@dataclass
class Chunk:
    """Stems ``(samples, 2 * channels)`` (voice, then accompaniment) of song ``song`` from ``position`` (samples at
    the output rate), made for ``generation``; ``end`` marks the end of the song (no samples)."""

    generation: int
    song: int
    position: int
    stems: np.ndarray
    end: bool = False


@dataclass
class PlayerState:
    """What the player is doing: written by the audio path and the controls, read by the user interfaces."""

    songs: list[str]
    sample_rate: int
    song: int = 0
    position: int = 0  # samples of the current song played
    durations: dict = field(default_factory=dict)  # song -> samples at the output rate
    paused: bool = False
    voice_db: float = VOICE_OFF_DB
    key: float = 0.0
    underruns: int = 0
    underrun_at: list = field(default_factory=list)  # (song, seconds into it) of the first underruns
    voice_level: float = 0.0  # RMS of the last block played, voice and accompaniment
    backing_level: float = 0.0
    latency_ms: float = 0.0
    render_seconds: float = 0.0  # the renderer's work
    mix_seconds: float = 0.0  # the mixer's work
    rendered_seconds: float = 0.0  # audio rendered
    skipped: list = field(default_factory=list)  # (song, one line saying why) of the songs that could not play
    error: str | None = None  # what made the audio path stop, if anything
    finished: bool = False

    @property
    def real_time_factor(self) -> float:
        return (self.render_seconds + self.mix_seconds) / max(self.rendered_seconds, 1e-9)

    def snapshot(self) -> dict:
        """The state as plain values (seconds, dB), for a status line or the web page."""
        duration = self.durations.get(self.song)
        return {"songs": self.songs, "song": self.song, "title": self.songs[self.song] if self.songs else "",
                "position": self.position / self.sample_rate,
                "duration": None if duration is None else duration / self.sample_rate,
                "paused": self.paused, "voice_db": self.voice_db, "voice_off": self.voice_db <= VOICE_OFF_DB,
                "key": self.key, "underruns": self.underruns, "latency_ms": self.latency_ms,
                "real_time_factor": self.real_time_factor, "voice_level": self.voice_level,
                "backing_level": self.backing_level, "finished": self.finished, "error": self.error}


class PlayerControls:
    """The commands of the terminal keys and of the web page; each only sets values the audio path reads."""

    def __init__(self, player: Player):
        self.player, self.state = player, player.state

    def toggle_pause(self) -> None:
        self.state.paused = not self.state.paused

    def set_paused(self, paused: bool) -> None:
        self.state.paused = bool(paused)

    def seek(self, seconds: float) -> None:
        """Move by ``seconds`` in the current song (clamped to it)."""
        self.seek_to(self.state.position / self.state.sample_rate + seconds)

    def seek_to(self, seconds: float) -> None:
        duration = self.state.durations.get(self.state.song)
        target = max(0, int(seconds * self.state.sample_rate))
        if duration is not None:
            target = min(target, max(0, duration - 1))
        self.player.request(self.state.song, target)

    def next(self) -> None:
        if self.state.song + 1 < len(self.state.songs):
            self.player.request(self.state.song + 1, 0)

    def previous(self) -> None:
        if self.state.position > RESTART_SECONDS * self.state.sample_rate or self.state.song == 0:
            self.player.request(self.state.song, 0)
        else:
            self.player.request(self.state.song - 1, 0)

    def play_song(self, index: int) -> None:
        if 0 <= index < len(self.state.songs):
            self.player.request(index, 0)

    def set_voice(self, db: float) -> None:
        """The guide voice's level in dB (``VOICE_OFF_DB`` or less, -inf included: off; at most
        ``VOICE_MAX_DB``)."""
        if not math.isnan(db):
            self.state.voice_db = float(min(max(db, VOICE_OFF_DB), VOICE_MAX_DB))

    def voice_up(self) -> None:
        voice = self.state.voice_db
        self.set_voice(voice + VOICE_STEP_DB if voice > VOICE_OFF_DB else VOICE_ON_DB)

    def voice_down(self) -> None:
        voice = self.state.voice_db
        self.set_voice(voice - VOICE_STEP_DB if voice > VOICE_ON_DB else VOICE_OFF_DB)

    def set_key(self, semitones: float) -> None:
        if math.isfinite(semitones):
            self.state.key = float(min(max(semitones, -KEY_RANGE), KEY_RANGE))

    def key_up(self) -> None:
        self.set_key(self.state.key + KEY_STEP)

    def key_down(self) -> None:
        self.set_key(self.state.key - KEY_STEP)

    def quit(self) -> None:
        self.player.stop()


class Player:
    """The audio path of the module docstring, for ``paths`` played at ``sample_rate`` with ``channels``; the
    separation as ``options`` say (their ``key`` and ``vocal_gain_db`` are the controls' starting values)."""

    def __init__(self, options: SeparationOptions, paths: list[Path], sample_rate: int, channels: int = 2,
                 shuffle: bool = False):
        self.paths = list(paths)
        if shuffle:
            random.shuffle(self.paths)
        self.sample_rate, self.channels = sample_rate, channels
        self.state = PlayerState([p.name for p in self.paths], sample_rate, key=options.key)
        self.controls = PlayerControls(self)
        if options.vocal_gain_db is not None:
            self.controls.set_voice(options.vocal_gain_db)
        self.processor = StreamProcessor(None, sample_rate, channels, options.changed(key=0.0, vocal_gain_db=None,
                                                                                      keep="accompaniment"))
        self.shift = AlignedKeyShift(sample_rate, 2 * channels, self.state.key)
        self.state.latency_ms = 1000.0 * self.shift.shift.latency_samples / sample_rate  # the stems line up
        self.rendered: queue.Queue = queue.Queue(maxsize=max(2, int(READ_AHEAD_SECONDS * sample_rate / RENDER_BLOCK)))
        self.ready: deque = deque()  # key-shifted chunks for the callback
        self.produced = self.consumed = 0  # samples put into ``ready`` (by the mixer) and taken (by the callback)
        self.ends_queued = self.ends_taken = 0  # end markers put into ``ready`` and taken out of it
        self.played_generation = -1  # the generation of the last sample played
        self.generation, self.wanted = 0, (0, 0)  # (song, position) the renderer should play from
        self.requests = threading.Lock()  # the controls' threads and the renderer change these two together
        self.sources: dict[int, AudioSource] = {}  # songs opened, kept for seeks
        self.changed = threading.Event()
        self.stopping = threading.Event()
        self.voice_now = voice_gain(self.state.voice_db)  # the callback's current gain (ramped towards the target)
        self.offset = 0  # how far the callback is into the first ready chunk
        self.callbacks = 0
        self.preroll = int(PREROLL_SECONDS * sample_rate)
        self.threads = [threading.Thread(target=self._guard, args=(self._render,), name="stream-dc renderer",
                                         daemon=True),
                        threading.Thread(target=self._guard, args=(self._mix,), name="stream-dc mixer", daemon=True)]

    # -- control --------------------------------------------------------------------------------------------
    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.changed.set()

    def join(self, timeout: float = 5.0) -> None:
        for thread in self.threads:
            thread.join(timeout)

    def request(self, song: int, position: int) -> None:
        """Play ``song`` from ``position`` (samples) next: everything already made is dropped."""
        with self.requests:
            self.wanted = (song, position)
            self.generation += 1
        self.state.song, self.state.position = song, position
        self.changed.set()

    @property
    def done(self) -> bool:
        return self.state.finished or self.stopping.is_set() or self.state.error is not None

    def _guard(self, work) -> None:
        try:
            work()
        except BaseException as error:  # reported by the session, which then stops
            self.state.error = str(error) if isinstance(error, (InputError, OSError)) else \
                f"{type(error).__name__}: {error}"
            self.stopping.set()

    # -- renderer -------------------------------------------------------------------------------------------
    def _render(self) -> None:
        while not self.stopping.is_set():
            self.changed.clear()  # before reading the request, so that a newer one is never missed
            generation = self.generation
            song, position = self.wanted
            if song >= len(self.paths):  # the queue is rendered: wait for a request
                self.changed.wait()
                continue
            try:
                finished = self._render_song(generation, song, position)
            except InputError as error:  # a song that cannot be read or separated: say so and go on
                self.state.skipped.append((song, str(error)))
                self._put(Chunk(generation, song, position, np.zeros((0, 2 * self.channels), np.float32), end=True))
                finished = True
            with self.requests:
                if finished and generation == self.generation:
                    self.wanted = (song + 1, 0)  # gapless: on to the next song (not a new generation)

    def _render_song(self, generation: int, song: int, position: int) -> bool:
        """Separate ``song`` from ``position`` into the rendered queue; False when interrupted by a request."""
        source = self._open(song)
        rate_ratio = source.sample_rate / self.sample_rate
        start = int(position * rate_ratio)
        resampler = None if source.sample_rate == self.sample_rate else Resampler(source.sample_rate,
                                                                                  self.sample_rate, self.channels)
        processor = self.processor
        processor.reset()
        aligner = Aligner(processor.latency_samples)
        made = position
        for block in _blocks(source, start, RENDER_BLOCK):
            if generation != self.generation or self.stopping.is_set():
                return False
            self._yield_to_the_mixer()
            block = _fit_channels(block, self.channels)
            if resampler is not None:
                block = resampler.process(block)
            made = self._separate(generation, song, made, block, processor, aligner)
            if made is None:
                return False
        tail = resampler.flush() if resampler is not None else np.zeros((0, self.channels), np.float32)
        made = self._separate(generation, song, made, tail, processor, aligner, final=True)
        if made is None:
            return False
        self.state.durations[song] = made
        return self._put(Chunk(generation, song, made, np.zeros((0, 2 * self.channels), np.float32), end=True))

    def _separate(self, generation, song, made, block, processor, aligner, final=False) -> int | None:
        started = time.perf_counter()
        vocals, accompaniment = processor.process_stems(block) if len(block) else (block, block)
        if final:
            tail = processor.flush_stems()
            vocals, accompaniment = np.concatenate([vocals, tail[0]]), np.concatenate([accompaniment, tail[1]])
        stems = np.concatenate(aligner.trim(vocals, accompaniment), axis=1)
        self.state.render_seconds += time.perf_counter() - started
        self.state.rendered_seconds += len(block) / self.sample_rate
        # in pieces of a block at most: the song's last latency's worth comes from one flush, and the mixer, which
        # works a fraction of a second ahead of playback, must never meet seconds of work at once
        for start in range(0, len(stems), RENDER_BLOCK):
            piece = stems[start:start + RENDER_BLOCK]
            if not self._put(Chunk(generation, song, made, piece)):
                return None
            made += len(piece)
        return made

    def _yield_to_the_mixer(self) -> None:
        """The renderer is seconds ahead, the mixer only a fraction of a second: while the mixer's reserve is under
        half its target and it has work waiting, the renderer waits for it (both are Python threads, and the
        renderer's long runs would otherwise keep it from the interpreter)."""
        low = MIXER_AHEAD_SECONDS * self.sample_rate / 2
        while (self.produced - self.consumed < low and not self.rendered.empty() and not self.state.paused
               and not self.stopping.is_set()):
            time.sleep(0.002)

    def _open(self, song: int) -> AudioSource:
        if song not in self.sources:
            self.sources[song], _ = open_source(self.paths[song])
            self.state.durations.setdefault(song, int(self.sources[song].frames * self.sample_rate
                                                      / self.sources[song].sample_rate))
        return self.sources[song]

    def _put(self, chunk: Chunk) -> bool:
        """Queue ``chunk`` for the mixer, waiting while the read-ahead is full; False when a request or the stop
        came first."""
        while True:
            if chunk.generation != self.generation or self.stopping.is_set():
                return False
            try:
                self.rendered.put(chunk, timeout=0.05)
                return True
            except queue.Full:
                continue

    # -- mixer ----------------------------------------------------------------------------------------------
    def _mix(self) -> None:
        ahead = int(MIXER_AHEAD_SECONDS * self.sample_rate)
        segment, emitted, start = None, 0, 0  # the run of chunks (generation, song) the key change is in
        while not self.stopping.is_set():
            if self.produced - self.consumed >= ahead:
                time.sleep(0.005)
                continue
            try:
                chunk = self.rendered.get(timeout=0.05)
            except queue.Empty:
                continue
            if chunk.generation != self.generation:
                continue
            if segment != (chunk.generation, chunk.song):  # a seek or a new song: the key change starts afresh
                segment, emitted, start = (chunk.generation, chunk.song), 0, chunk.position
                self.shift.reset()
            started = time.perf_counter()
            self.shift.semitones = self.state.key
            stems = self.shift.flush() if chunk.end else self.shift.process(chunk.stems)
            self.state.mix_seconds += time.perf_counter() - started
            if len(stems):
                self.ready.append(Chunk(chunk.generation, chunk.song, start + emitted, stems))
                self.produced += len(stems)
                emitted += len(stems)
            if chunk.end:
                self.ready.append(Chunk(chunk.generation, chunk.song, start + emitted, stems[:0], end=True))
                self.ends_queued += 1
                segment = None

    # -- audio callback (PortAudio's thread: no waiting, no locks) --------------------------------------------
    def callback(self, outdata, frames, time_info, status) -> None:
        self.callbacks += 1
        try:
            self._play(outdata, frames)
        except Exception as error:  # never a traceback from PortAudio's thread: the session reports it and stops
            outdata.fill(0.0)
            self.state.error = f"audio callback failed: {type(error).__name__}: {error}"

    def _play(self, outdata, frames: int) -> None:
        state, channels = self.state, self.channels
        if state.paused or self.done:
            outdata.fill(0.0)
            return
        generation = self.generation
        stems = self._take(frames, generation)
        if len(stems) < frames:
            if self.played_generation == generation and not state.finished:
                state.underruns += 1  # the song was playing and its next samples were not ready
                if len(state.underrun_at) < 10:
                    state.underrun_at.append((state.song, state.position / self.sample_rate))
            stems = np.concatenate([stems, np.zeros((frames - len(stems), 2 * channels), np.float32)])
        voice, accompaniment = stems[:, :channels], stems[:, channels:]
        target = voice_gain(state.voice_db)
        if self.voice_now == target == 0.0:  # the voice off, as it stays: nothing to mix in
            outdata[:] = accompaniment
            state.voice_level = 0.0
        else:
            gain = np.full(frames, target, np.float32)
            if self.voice_now != target:  # a linear ramp over a few ms: no click
                ramp = min(frames, max(1, int(RAMP_SECONDS * self.sample_rate)))
                gain[:ramp] = np.linspace(self.voice_now, target, ramp + 1, dtype=np.float32)[1:]
                self.voice_now = target
            guide = gain[:, None] * voice
            outdata[:] = accompaniment + guide
            state.voice_level = float(np.sqrt(np.mean(np.square(guide))))
        state.backing_level = float(np.sqrt(np.mean(np.square(accompaniment))))

    def _take(self, frames: int, generation: int) -> np.ndarray:
        """Up to ``frames`` samples of stems from the ready chunks of ``generation``, advancing the song position
        (and the song, at an end marker); chunks of older generations are dropped."""
        parts, needed, state = [], frames, self.state
        if self.played_generation != generation and self.produced - self.consumed < self.preroll and \
                self.ends_queued == self.ends_taken:
            return np.zeros((0, 2 * self.channels), np.float32)  # a song or a seek starts once enough is ready
        while needed and self.ready:
            chunk = self.ready[0]
            if chunk.generation != generation or chunk.end:
                self.ready.popleft()
                self.consumed += len(chunk.stems) - self.offset
                self.ends_taken += chunk.end
                self.offset = 0
                if chunk.end and chunk.generation == generation:
                    self._song_ended(chunk)
                continue
            piece = chunk.stems[self.offset:self.offset + needed]
            parts.append(piece)
            self.offset += len(piece)
            needed -= len(piece)
            self.consumed += len(piece)
            state.song, state.position = chunk.song, chunk.position + self.offset
            self.played_generation = generation
            if self.offset >= len(chunk.stems):
                self.ready.popleft()
                self.offset = 0
        if not parts:
            return np.zeros((0, 2 * self.channels), np.float32)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _song_ended(self, chunk: Chunk) -> None:
        self.state.durations[chunk.song] = chunk.position
        if chunk.song + 1 >= len(self.paths):
            self.state.finished = True
        else:
            self.state.song, self.state.position = chunk.song + 1, 0


def _blocks(source: AudioSource, start: int, size: int):
    """``source``'s blocks from ``start``, cut into ``size``-frame pieces (the renderer checks for requests
    between them)."""
    for block in source.blocks(start):
        for i in range(0, len(block), size):
            yield block[i:i + size]


def _fit_channels(block: np.ndarray, channels: int) -> np.ndarray:
    """``block`` with ``channels`` channels: mono repeated, extra channels dropped."""
    if block.shape[1] == channels:
        return block
    if block.shape[1] == 1:
        return np.repeat(block, channels, axis=1)
    if block.shape[1] > channels:
        return np.ascontiguousarray(block[:, :channels])
    return np.concatenate([block, np.repeat(block[:, -1:], channels - block.shape[1], axis=1)], axis=1)
