"""Work shared among threads gives what one thread gives: the slice pool itself, and offline synthesis's refiner,
Wiener step and STFTs with a pool of two threads against none."""
import numpy as np
import pytest

from stream_dc.parallel import SERIAL, SlicePool
from tests.test_refine import spectra


@pytest.fixture
def pool():
    pool = SlicePool(2)
    yield pool
    pool.close()


def test_every_slice_runs_once_and_an_error_reaches_the_caller(pool):
    seen = np.zeros(103, int)

    def count(part):
        seen[part] += 1

    pool.run(count, 103, 10)
    assert np.all(seen == 1)
    SERIAL.run(count, 103, 7)
    assert np.all(seen == 2)

    def fail(part):
        if part.start == 40:
            raise ValueError("slice 40")

    with pytest.raises(ValueError, match="slice 40"):
        pool.run(fail, 103, 10)
    pool.run(count, 0, 10)  # nothing to do, and the pool still works after an error
    pool.run(count, 103, 50)
    assert np.all(seen == 3)


def test_the_refiner_and_the_wiener_step_give_the_same_with_threads(pool):
    from stream_dc.options import SeparationOptions
    from stream_dc.refine import bin_frequencies
    from stream_dc.wiener import wiener_voice

    refiner = SeparationOptions().resolve(None).refiner
    x = spectra(frames=150, bins=300, channels=2, seed=4)
    masks = np.random.default_rng(5).uniform(0, 1, x.shape[:2]).astype(np.float32)
    frequencies = bin_frequencies(44100, 598)
    np.testing.assert_array_equal(refiner.refine(masks, x, frequencies, pool), refiner.refine(masks, x, frequencies))
    np.testing.assert_array_equal(wiener_voice(x, masks, pool), wiener_voice(x, masks))


def test_the_stft_and_overlap_add_give_the_same_with_threads(pool):
    from stream_dc.stft import FrameAnalyzer, OverlapAdd, StftGeometry

    geometry = StftGeometry.for_rate(44100, 8)
    signal = np.random.default_rng(6).standard_normal((44100, 2)).astype(np.float32)
    results = []
    for chosen in (SERIAL, pool):
        analyzer = FrameAnalyzer(geometry, 2, geometry.first_frame, chosen)
        first, spectra_now = analyzer.process(signal)
        _, rest = analyzer.flush(geometry.frames_covering(len(signal)))
        out = OverlapAdd(geometry, 2, chosen).add(np.concatenate([spectra_now, rest]))
        results.append((spectra_now, out))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_allclose(results[1][1][:len(signal)], signal, atol=1e-5)  # and it reconstructs the signal
