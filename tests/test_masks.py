"""From clusters to masks: soft cluster masks, the projection of mel-band masks onto an STFT, and the inverse mel
reconstruction."""
import numpy as np


def test_soft_masks_sum_with_their_complement_to_one():
    from stream_dc.masks import cluster_voice_mask

    rng = np.random.default_rng(5)
    embeddings = rng.standard_normal((30, 150, 3)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=-1, keepdims=True)
    centroids = np.array([[1, 0, 0], [0, 1, 0]], np.float32)
    flags = np.array([True, False])
    for softness in (0.0, 2.0, 8.0):
        voice_mask = cluster_voice_mask(embeddings, centroids, flags, softness)
        accompaniment_mask = cluster_voice_mask(embeddings, centroids, ~flags, softness)
        np.testing.assert_allclose(voice_mask + accompaniment_mask, 1.0, atol=1e-6)
    binary, soft = cluster_voice_mask(embeddings, centroids, flags), cluster_voice_mask(embeddings, centroids, flags, 2)
    assert set(np.unique(binary)) == {0.0, 1.0}
    assert 0 < soft.min() and soft.max() < 1 and np.all((soft > 0.5) == (binary > 0.5))
    sharper = cluster_voice_mask(embeddings, centroids, flags, 50.0)
    assert np.mean(np.abs(sharper - binary)) < np.mean(np.abs(soft - binary))


def test_mask_projector_interpolates_between_band_centres():
    from stream_dc.features import FeatureConfig, band_centres
    from stream_dc.masks import MaskProjector

    features = FeatureConfig()
    projector = MaskProjector(features, 44100, 1440, 360)
    centres = band_centres(features)
    masks = np.zeros((2, features.n_mels), np.float32)
    masks[0, 40] = 1.0  # one band on
    masks[1] = np.linspace(0, 1, features.n_mels)  # a ramp over the bands
    projected = projector.project(masks)
    freqs = np.arange(1440 // 2 + 1) * 44100 / 1440
    assert projected.shape == (2, 721)
    expected = np.interp(freqs, centres, masks[0])
    np.testing.assert_allclose(projected[0], expected, atol=1e-6)
    above = freqs > centres[-1]
    np.testing.assert_allclose(projected[1, above], 1.0, atol=1e-6)  # the top band's mask holds to 22 kHz
    assert np.all(np.diff(projected[1]) >= -1e-6)
    # native frames centred every 360/44100 s read the 8 ms analysis grid at the same instants
    positions = projector.analysis_positions(0, 5)
    np.testing.assert_allclose(positions, np.arange(5) * 360 / 44100 * 125, atol=1e-9)


def test_inverse_mel_recovers_a_magnitude_that_the_filterbank_maps_back():
    from stream_dc.features import FeatureConfig, mel_filterbank
    from stream_dc.masks import InverseMel

    features = FeatureConfig()
    inverse = InverseMel(features, iterations=200)
    filterbank = mel_filterbank(features)
    magnitude = np.abs(np.random.default_rng(3).standard_normal((4, 257))).astype(np.float32) + 0.1
    mel = magnitude @ filterbank.T
    estimate = inverse.magnitude(mel)
    assert estimate.shape == magnitude.shape and np.all(estimate >= 0)
    np.testing.assert_allclose(estimate @ filterbank.T, mel, rtol=0.05)  # consistent with the mel spectrum
    # a zero mask removes everything, a unit mask keeps the mixture's phase
    spectra = (magnitude * np.exp(1j * np.random.default_rng(4).uniform(0, 6.3, magnitude.shape)))[:, :, None]
    assert not np.any(inverse.apply(spectra.astype(np.complex64), np.zeros((4, features.n_mels), np.float32)))
    kept = inverse.apply(spectra.astype(np.complex64), np.ones((4, features.n_mels), np.float32))
    np.testing.assert_allclose(np.angle(kept[:, 2:-2]), np.angle(spectra[:, 2:-2]), atol=1e-4)


def test_soft_masks_of_two_clusters_are_the_posterior_over_any_number_of_clusters():
    """Two clusters take a shortcut (a logistic function of the distances' difference): it is the softmax posterior
    that three clusters get, and a third centroid far away changes nothing."""
    from stream_dc.masks import cluster_voice_mask

    rng = np.random.default_rng(9)
    embeddings = rng.standard_normal((20, 40, 4)).astype(np.float32)
    centroids = rng.standard_normal((2, 4)).astype(np.float32)
    far = np.concatenate([centroids, np.full((1, 4), 1e4, np.float32)])
    for flags in ([True, False], [False, True]):
        two = cluster_voice_mask(embeddings, centroids, np.array(flags), 3.0)
        three = cluster_voice_mask(embeddings, far, np.array(flags + [False]), 3.0)
        np.testing.assert_allclose(two, three, atol=1e-6)
        distances = np.linalg.norm(embeddings[..., None, :] - centroids, axis=-1)  # (frames, bands, 2)
        weights = np.exp(-3.0 * distances)
        np.testing.assert_allclose(two, weights[..., flags.index(True)] / weights.sum(-1), atol=1e-6)
