"""The offline multichannel Wiener post-filter: what it does to a stereo mix, that it is norbert's step, that it
leaves one channel as the masks left it, and that offline separation applies it, segment by segment, and nothing
else does. norbert comes with the ``dev`` extra."""
import norbert
import numpy as np
import pytest

from stream_dc.audio import BLOCK
from stream_dc.evaluation.oracles import whole_stft
from stream_dc.separator import Separator
from stream_dc.stft import StftGeometry
from stream_dc.wiener import SEGMENT_FRAMES, wiener_voice
from tests.test_refine import spectra


def error_db(estimate: np.ndarray, target: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(np.abs(target) ** 2) / np.sum(np.abs(target - estimate) ** 2)))


def test_the_filter_separates_a_centred_voice_from_panned_accompaniment():
    """Equal-level voice in the centre and accompaniment on the left, with masks that only lean the right way
    (0.25 + half the true voice share): the spatial filter recovers the voice far better than the masks do."""
    rng = np.random.default_rng(0)
    shape = (200, 65)
    voice = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * rng.uniform(0, 2, shape)
    left = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) * rng.uniform(0, 2, shape)
    voice_stereo = np.stack([voice, voice], axis=2)
    mixture = voice_stereo + np.stack([left, 0.2 * left], axis=2)
    share = np.abs(voice) ** 2 / (np.abs(voice) ** 2 + np.abs(left) ** 2)
    masks = (0.25 + 0.5 * share).astype(np.float32)
    masked = error_db(mixture * masks[:, :, None], voice_stereo)
    filtered = error_db(wiener_voice(mixture.astype(np.complex64), masks), voice_stereo)
    assert filtered > masked + 2.0, (masked, filtered)


@pytest.mark.parametrize("channels", [2])
def test_the_filter_is_norberts_wiener_step(channels):
    """The same step as norbert's ``wiener`` (one iteration, magnitudes ``mask**0.5 * |X|``), the maintained
    reference it replaces."""
    x = spectra(frames=30, bins=17, channels=channels, seed=7) * 3
    masks = np.random.default_rng(8).uniform(0, 1, x.shape[:2]).astype(np.float32)
    magnitude = np.abs(x).astype(np.float64)
    m = masks[:, :, None].astype(np.float64)
    sources = np.stack([m ** 0.5 * magnitude, (1 - m) ** 0.5 * magnitude], axis=-1)
    reference = norbert.wiener(sources, x.astype(np.complex128), iterations=1)[..., 0]
    np.testing.assert_allclose(wiener_voice(x, masks), reference, rtol=1e-4, atol=1e-5)


def test_on_one_channel_the_filter_gives_back_the_masks():
    """With one channel norbert's filter (mask**0.5 magnitudes, one step) equals the masks, which is why mono input
    skips it."""
    x = spectra(frames=40, bins=33, channels=1, seed=3)
    masks = np.random.default_rng(4).uniform(0.02, 0.98, x.shape[:2])
    magnitude = np.abs(x).astype(np.float64)
    sources = np.stack([masks[:, :, None] ** 0.5 * magnitude, (1 - masks[:, :, None]) ** 0.5 * magnitude], axis=-1)
    filtered = norbert.wiener(sources, x.astype(np.complex128), iterations=1)[..., 0]
    np.testing.assert_allclose(filtered, x * masks[:, :, None], atol=1e-5)  # norbert's eps aside
    np.testing.assert_allclose(wiener_voice(x, masks.astype(np.float32)), x * masks[:, :, None], rtol=1e-6)


def test_offline_separation_filters_stereo_by_segments_and_keeps_the_mixture(bundle, monkeypatch):
    """A stereo signal of 2.5 segments read in blocks: the filter sees whole segments (at least ``SEGMENT_FRAMES``
    frames but the last, at most a block more) that cover every frame once; the stems sum to the mixture and the
    vocals differ from the unfiltered ones."""
    from stream_dc import synthesis
    from tests.synthetic import accompaniment, voice

    rate, rng = 16000, np.random.default_rng(5)
    hop = StftGeometry.for_rate(rate).hop  # samples per native STFT frame
    seconds = 2.5 * SEGMENT_FRAMES * hop / rate
    v, a = voice(seconds, rate, rng), accompaniment(seconds, rate, rng)
    mix = np.stack([v + a, v + 0.3 * a], axis=1).astype(np.float32)
    vocals_plain, _ = Separator(bundle, device="cpu", wiener=False).separate(mix, rate)
    vocals, accompaniment_out = Separator(bundle, device="cpu").separate(mix, rate)
    np.testing.assert_allclose(vocals + accompaniment_out, mix, atol=1e-5)
    assert error_db(vocals, vocals_plain) < 40  # the filter changed the vocals

    segments = []
    monkeypatch.setattr(synthesis, "wiener_voice",
                        lambda x, m, pool: segments.append(len(x)) or wiener_voice(x, m, pool))
    again, _ = Separator(bundle, device="cpu").separate(mix, rate)
    np.testing.assert_array_equal(again, vocals)
    block_frames = -(-BLOCK // hop)  # frames in one block read
    assert len(segments) == 3 and sum(segments) == len(whole_stft(mix, rate)[1])
    assert all(SEGMENT_FRAMES <= n <= SEGMENT_FRAMES + block_frames for n in segments[:-1])


def test_streaming_and_mono_do_not_filter(bundle):
    rate = 16000
    rng = np.random.default_rng(6)
    mono = rng.standard_normal(rate * 3).astype(np.float32) * 0.1
    np.testing.assert_allclose(Separator(bundle, device="cpu").separate(mono, rate)[0],
                               Separator(bundle, device="cpu", wiener=False).separate(mono, rate)[0], atol=1e-8)
    stereo = np.stack([mono, 0.5 * mono + 0.05 * rng.standard_normal(len(mono)).astype(np.float32)], axis=1)
    streamed = [Separator(bundle, device="cpu", mode="stream", wiener=w).separate(stereo, rate)[0]
                for w in (True, False)]
    np.testing.assert_allclose(*streamed, atol=1e-8)


def test_more_than_two_channels_keep_their_masks_and_cost_what_the_channels_do(bundle):
    """The filter's general form costs channels^3 per bin (16 channels of 0.5 s once took 2.6 GB): beyond stereo the
    masks apply as they are, the same as without the filter."""
    rng = np.random.default_rng(9)
    audio = (0.1 * rng.standard_normal((16000 * 2, 4))).astype(np.float32)
    with_filter = Separator(bundle, device="cpu").separate(audio, 16000)[0]
    without = Separator(bundle, device="cpu", wiener=False).separate(audio, 16000)[0]
    np.testing.assert_array_equal(with_filter, without)
    with pytest.raises(ValueError, match="one or two channels"):
        wiener_voice(spectra(frames=3, bins=5, channels=3, seed=1), np.zeros((3, 5), np.float32))


def test_a_stereo_mix_with_equal_channels_gets_the_voices_share_of_it():
    """Equal channels (a mono recording saved as stereo) make the mixture's spatial model singular but for its
    regularising diagonal: the filter still gives each bin the voice's power share of the first estimates,
    ``g^2 / (g^2 + (1 - g)^2)`` with ``g = m^0.5 / (m^0.5 + (1 - m)^0.5)``, on both channels."""
    x = spectra(frames=40, bins=33, channels=1, seed=11)
    stereo = np.concatenate([x, x], axis=2)
    masks = np.random.default_rng(12).uniform(0, 1, x.shape[:2]).astype(np.float32)
    share = np.sqrt(masks) / (np.sqrt(masks) + np.sqrt(1 - masks))
    expected = share ** 2 / (share ** 2 + (1 - share) ** 2)
    filtered = wiener_voice(stereo, masks)
    np.testing.assert_allclose(filtered, stereo * expected[:, :, None], rtol=1e-4, atol=1e-6)
