"""StreamProcessor: block-size invariance, exact length and latency, agreement with offline, smooth joins."""
import numpy as np
import pytest

from stream_dc.audio import AudioSource
from stream_dc.separator import Separator
from stream_dc.stft import HOP_MS, STREAM_WINDOW_HOPS
from stream_dc.stream import PRESETS, LatencyPreset, StreamProcessor, crossfade_weights
from tests.conftest import noise, tone
from tests.synthetic import accompaniment, voice


class FeatureRuleEmbeddings:
    """A bin is voice when its normalised feature is above zero: masks depend on the bin alone, not on context."""

    provider = "test"

    def __init__(self, bundle):
        config = bundle.config
        self.voice = config.voice_centroid / np.linalg.norm(config.voice_centroid)
        self.accompaniment = config.accompaniment_centroid / np.linalg.norm(config.accompaniment_centroid)

    def embed(self, features, chunk=None):
        """Windows ``(batch, frames, n_mels)``, or one chunk and its look-ahead ``(frames, n_mels)``."""
        if chunk is not None:
            features = features[:chunk]
        return np.where((features > 0)[..., None], self.voice, self.accompaniment).astype(np.float32)

    def reset(self):
        pass


def run_blocks(processor, audio, sizes):
    out, i, k = [], 0, 0
    while i < len(audio):
        n = sizes[k % len(sizes)]
        out.append(processor.process(audio[i:i + n]))
        i, k = i + n, k + 1
    out.append(processor.flush())
    return np.concatenate(out)


def mixture(seconds, rate, seed=0):
    rng = np.random.default_rng(seed)
    v, a = voice(seconds, rate, rng), accompaniment(seconds, rate, rng)
    return np.stack([v + a, 0.7 * v + 1.2 * a], axis=1).astype(np.float32)


def test_output_does_not_depend_on_block_size(bundle):
    audio = mixture(5.0, 44100)
    reference = run_blocks(StreamProcessor(bundle, 44100, 2, device="cpu"), audio, [len(audio)])
    rng = np.random.default_rng(1)
    sizes = [int(s) for s in rng.integers(1, 6000, 200)] + [1] * 50 + [7, 1, 3]
    cut = run_blocks(StreamProcessor(bundle, 44100, 2, device="cpu"), audio, sizes)
    assert cut.shape == reference.shape == (len(audio) + StreamProcessor(bundle, 44100, 2).latency_samples, 2)
    np.testing.assert_allclose(cut, reference, atol=1e-6)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("rate", [16000, 44100, 48000])
def test_latency_is_the_delay_of_an_impulse(bundle, constant_model, preset, rate):
    # without the mask refiner, an all-voice mask is exactly the identity (the refiner reads one frame: no latency)
    processor = StreamProcessor(bundle, rate, 2, latency=preset, keep="vocals", model=constant_model(bundle),
                                mask_softness=0, refine=False)
    audio = np.zeros((3 * rate + 17, 2), np.float32)
    audio[rate // 3, 0], audio[rate // 2, 1] = 1.0, -0.5
    out = run_blocks(processor, audio, [997, 1, 4096])
    assert len(out) == len(audio) + processor.latency_samples
    assert np.argmax(np.abs(out[:, 0])) - rate // 3 == processor.latency_samples
    # an all-voice mask is the identity: the whole output is the input, delayed
    np.testing.assert_allclose(out[processor.latency_samples:], audio, atol=1e-5)
    assert processor.latency_ms == pytest.approx(1000 * processor.latency_samples / rate)


def test_presets_order_their_latency(bundle, constant_model):
    latency = {name: StreamProcessor(bundle, 44100, 2, latency=name, model=constant_model(bundle),
                                mask_softness=0).latency_ms
               for name in PRESETS}
    assert latency["live"] <= 250 < latency["low"] < latency["balanced"] < latency["paper"]
    assert latency["paper"] > 4000  # a whole 500-frame window


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_stream_mode_equals_offline_when_masks_do_not_depend_on_context(bundle, preset):
    """Offline without what streaming cannot apply (the Wiener post-filter, the analyses of each channel, the 64 ms
    synthesis window) and streaming give the same stems."""
    audio = mixture(6.0, 44100, seed=2)
    offline = Separator(bundle, device="cpu", mask_softness=0, wiener=False, channel_masks=False,
                        synthesis_window_ms=STREAM_WINDOW_HOPS * HOP_MS)
    streaming = Separator(bundle, device="cpu", mode="stream", latency=preset, mask_softness=0)
    offline.model = streaming.model = streaming.chunk_model = FeatureRuleEmbeddings(bundle)
    vocals_offline, accompaniment_offline = offline.separate(audio, 44100)
    vocals_stream, accompaniment_stream = streaming.separate(audio, 44100)
    assert vocals_stream.shape == audio.shape
    np.testing.assert_allclose(vocals_stream, vocals_offline, atol=2e-5)
    np.testing.assert_allclose(accompaniment_stream, accompaniment_offline, atol=2e-5)


class RecordingEmbeddings(FeatureRuleEmbeddings):
    """``FeatureRuleEmbeddings`` that keeps every window it is given."""

    def __init__(self, bundle):
        super().__init__(bundle)
        self.windows = []

    def embed(self, features, chunk=None):
        self.windows.extend(features if chunk is None else [features])  # windows come batched, chunks not
        return super().embed(features, chunk)


@pytest.mark.parametrize("mode, latency", [("offline", None), ("stream", "balanced"), ("stream", "paper"),
                                           ("stream", "live")])
@pytest.mark.parametrize("seconds", [2.0, 9.0])
def test_windows_read_no_silence_around_the_signal(bundle, mode, latency, seconds):
    """No window reads silence before the signal's first frame nor past its last: the last offline window ends on
    the last frame (a signal shorter than a window is one shorter window); a stream's first windows start on its
    first frame and, once it has ended, its last ones (the latency-controlled BLSTM's last chunks too) stop at its
    last."""
    audio = mixture(seconds, 16000, seed=4)
    separator = Separator(bundle, device="cpu", mode=mode, latency=latency or "balanced")
    separator.model = separator.chunk_model = RecordingEmbeddings(bundle)
    separator.separate(audio, 16000)
    windows = separator.model.windows
    assert windows
    silence = separator.log_mel.normalise(separator.log_mel.silence_log_mel())
    silent_frames = [np.all(np.abs(w - silence) < 1e-4, axis=1) for w in windows]  # (frames,) per window
    size, features = bundle.config.window_frames, bundle.config.features
    assert not any(silent.any() for silent in silent_frames)
    if mode == "offline":  # three analyses of the stereo input (downmix, left, right), each the same windows
        assert [len(w) for w in windows] == [min(size, len(windows[0]))] * len(windows)
        assert len(windows) % 3 == 0
        assert (len(windows) > 3) == (seconds > size * features.hop_length / features.sample_rate)
    else:
        preset, total = PRESETS[latency], len(separator.analyse(AudioSource.from_array(audio, 16000))[0])
        starts = [k * preset.hop for k in range(len(windows))]
        ends = [start + preset.hop + preset.lookahead for start in starts]
        firsts = starts if preset.chunked else [max(0, end - size) for end in ends]
        assert [len(w) for w in windows] == [min(end, total) - first for first, end in zip(firsts, ends)]


def test_stream_mode_close_to_offline_with_the_model(bundle):
    """With the real network, streaming differs from offline only by its online centroids and shorter context."""
    audio = mixture(8.0, 16000, seed=3)
    vocals_offline, _ = Separator(bundle, device="cpu").separate(audio, 16000)
    vocals_stream, _ = Separator(bundle, device="cpu", mode="stream", latency="paper").separate(audio, 16000)
    difference = 10 * np.log10(np.sum(vocals_offline ** 2) / np.sum((vocals_offline - vocals_stream) ** 2))
    assert difference > 10.0  # dB: the stream-mode vocals stay within -10 dB of the offline ones


@pytest.mark.parametrize("signal", ["tone", "noise"])
def test_window_joins_keep_the_level(bundle, constant_model, signal):
    """All-voice masks blended across overlapping windows: a steady signal passes without any dip."""
    rate = 16000
    audio = tone(6.0, rate) if signal == "tone" else noise(6.0, rate)
    processor = StreamProcessor(bundle, rate, 1, latency="low", keep="vocals", model=constant_model(bundle),
                                mask_softness=0)
    out = run_blocks(processor, audio, [512])[processor.latency_samples:]
    frame = rate // 100
    levels = np.sqrt(np.mean(out[:len(out) // frame * frame, 0].reshape(-1, frame) ** 2, axis=1))
    expected = np.sqrt(np.mean(audio[:len(levels) * frame, 0].reshape(-1, frame) ** 2, axis=1))
    np.testing.assert_allclose(levels[2:-2], expected[2:-2], rtol=1e-3)


def test_mask_changes_between_windows_are_crossfaded(bundle, constant_model):
    """Windows alternate between all-voice and all-accompaniment: the vocal level ramps, never jumps."""
    rate = 16000
    preset = PRESETS["low"]
    processor = StreamProcessor(bundle, rate, 1, latency="low", keep="vocals",
                                model=constant_model(bundle, pattern=lambda k: k % 2 == 0),
                                mask_softness=0)
    audio = tone(4.0, rate, freq=500.0)
    out = run_blocks(processor, audio, [512])[processor.latency_samples:, 0]
    frame = rate // 250  # 4 ms: two whole periods of the tone, so the level estimate has no ripple
    levels = np.sqrt(np.mean(out[:len(out) // frame * frame].reshape(-1, frame) ** 2, axis=1)) / 0.3 * np.sqrt(2)
    steps = np.abs(np.diff(levels[5:-5]))
    crossfade_ms = preset.crossfade * 8
    assert levels.max() > 0.9 and levels.min() < 0.1  # the mask does switch
    assert steps.max() < 4.0 / crossfade_ms * 2  # at most about twice the crossfade's mean slope per 4 ms


def test_crossfade_weights_sum_to_one():
    ramp = crossfade_weights(16)
    np.testing.assert_allclose(ramp + ramp[::-1], 1.0)
    assert np.all(np.diff(ramp) > 0)


def test_silence_then_music_and_reset(bundle):
    rate = 22050
    audio = np.concatenate([np.zeros((3 * rate, 2), np.float32), mixture(3.0, rate)])
    processor = StreamProcessor(bundle, rate, 2, device="cpu")
    first = run_blocks(processor, audio, [1500])
    assert np.all(np.isfinite(first)) and np.all(np.isfinite(processor.centroids.centroids))
    assert np.all(first[:processor.latency_samples + 2 * rate] == 0)  # silence stays silent
    processor.reset()
    np.testing.assert_allclose(run_blocks(processor, audio, [4000]), first, atol=1e-6)


def test_misuse_is_reported(bundle):
    processor = StreamProcessor(bundle, 16000, 2, device="cpu")
    with pytest.raises(ValueError, match=r"\(samples, 2\)"):
        processor.process(np.zeros((10, 3), np.float32))
    processor.flush()
    with pytest.raises(RuntimeError, match="reset"):
        processor.process(np.zeros((10, 2), np.float32))
    with pytest.raises(ValueError, match="unknown latency preset"):
        StreamProcessor(bundle, 16000, 2, latency="instant")
    with pytest.raises(ValueError, match="crossfade"):
        StreamProcessor(bundle, 16000, 2, latency=LatencyPreset("odd", hop=50, lookahead=10, crossfade=30))


def test_vocal_gain_mixes_the_guide_vocal_back(bundle):
    audio = mixture(3.0, 16000)
    plain = StreamProcessor(bundle, 16000, 2, device="cpu")
    stems = plain.process_stems(audio)
    guided = StreamProcessor(bundle, 16000, 2, device="cpu", vocal_gain_db=-6.0)
    out = guided.process(audio)
    np.testing.assert_allclose(out, stems[1] + 10 ** (-6 / 20) * stems[0], atol=1e-5)


@pytest.mark.parametrize("latency", ["balanced", "live"])
def test_threads_reach_onnxruntime(bundle, latency):
    processor = StreamProcessor(bundle, 44100, 2, latency=latency, threads=1)
    assert processor.model.session.get_session_options().intra_op_num_threads == 1


@pytest.mark.parametrize("preset", ["live", "low"])
@pytest.mark.parametrize("rate", [16000, 48000])
def test_the_latency_is_exact_with_one_sample_blocks(bundle, constant_model, preset, rate):
    """One-sample blocks for a quarter of a second from the moment the first separated sample is due: a latency one
    sample short makes the processor owe, at some block there, a sample it has not computed (at these rates and
    presets it did, 640 to 11136 samples in), and one too long delays the impulse."""
    processor = StreamProcessor(bundle, rate, 1, latency=preset, keep="vocals", model=constant_model(bundle),
                                mask_softness=0, refine=False)
    latency = processor.latency_samples
    audio = np.zeros((latency + rate // 2, 1), np.float32)
    audio[0, 0] = 1.0
    sizes = [latency - 10] + [1] * (rate // 4) + [len(audio)]
    out = run_blocks(processor, audio, sizes)
    assert np.argmax(np.abs(out[:, 0])) == latency
