"""Clustering the embeddings: k-means, which clusters are the voice (and the thresholds that decide it), and the
online centroids of the streaming processor."""
import numpy as np

from stream_dc.cluster import OnlineCentroids, kmeans, voice_clusters


def test_kmeans_and_labels():
    rng = np.random.default_rng(0)
    a = rng.normal([1, 0, 0], 0.05, (200, 3))
    b = rng.normal([0, 1, 0], 0.05, (300, 3))
    centroids = kmeans(np.concatenate([a, b]).astype(np.float32), 2, seed=1)
    labels = voice_clusters(centroids, np.array([1, 0, 0.0]), np.array([0, 1, 0.0]))
    assert sorted(labels.tolist()) == [False, True]
    assert np.allclose(centroids[labels][0], [1, 0, 0], atol=0.02)
    # two clusters both near the accompaniment reference are both accompaniment
    c = rng.normal([0, 1, 0.3], 0.05, (100, 3))
    centroids = kmeans(np.concatenate([b, c]).astype(np.float32), 2, seed=1)
    assert not voice_clusters(centroids, np.array([1, 0, 0.0]), np.array([0, 1, 0.0])).any()


def test_voice_labelling_thresholds_decide_the_weak_cluster():
    """The weak rule names the more voice-like cluster voice above ``weak_voice`` only; the clear rule names any
    cluster voice above ``clear_voice``."""
    voice_ref, accompaniment_ref = np.array([1, 0, 0.0]), np.array([0, 1, 0.0])
    weak = np.array([[0.45, 0.55, 0.7], [0.0, 1.0, 0.0]], np.float32)  # score about -0.1 and -1
    assert voice_clusters(weak, voice_ref, accompaniment_ref).tolist() == [True, False]
    assert voice_clusters(weak, voice_ref, accompaniment_ref, 0.0, 0.0).tolist() == [False, False]
    both = np.array([[1.0, 0.2, 0.0], [0.8, 0.5, 0.0]], np.float32)  # both nearer the voice reference
    assert voice_clusters(both, voice_ref, accompaniment_ref).tolist() == [True, True]
    assert voice_clusters(both, voice_ref, accompaniment_ref, 0.5, -0.3).tolist() == [True, False]


def test_online_centroids_ignore_silence_and_follow_data():
    tracker = OnlineCentroids(np.array([1, 0, 0], np.float32), np.array([0, 1, 0], np.float32))
    tracker.update(np.zeros((3, 3), np.float32))  # too few active bins: nothing changes
    assert not tracker.fitted and np.all(np.isfinite(tracker.centroids))
    rng = np.random.default_rng(1)
    points = np.concatenate([rng.normal([0.9, 0.1, 0], 0.02, (100, 3)), rng.normal([0.1, 0.9, 0], 0.02, (100, 3))])
    tracker.update(points.astype(np.float32))
    assert tracker.fitted and tracker.voice_labels().tolist() == [True, False]
    for _ in range(20):  # the voice drifts; its centroid follows and keeps its label
        points[:100, 2] += 0.02
        tracker.update(points.astype(np.float32))
    assert tracker.centroids[0, 2] > 0.3 and tracker.voice_labels().tolist() == [True, False]


def test_online_update_moves_each_centroid_by_its_share_of_the_decayed_counts():
    """One update, computed by hand: with forgetting f, a centroid whose past count c decays to f * c and that gets
    n new points moves the fraction n / (f * c + n) of the way to their mean, and its count becomes f * c + n."""
    voice, accompaniment = np.array([1, 0, 0], np.float32), np.array([0, 1, 0], np.float32)
    tracker = OnlineCentroids(voice, accompaniment, forgetting=0.5, min_points=4, min_update=1)
    rng = np.random.default_rng(3)
    first = np.concatenate([rng.normal(voice, 0.01, (10, 3)), rng.normal(accompaniment, 0.01, (30, 3))])
    tracker.update(first.astype(np.float32))
    centroids, counts = tracker.centroids.copy(), tracker.counts.copy()
    np.testing.assert_array_equal(counts, [10, 30])
    new = np.concatenate([rng.normal([0.8, 0.1, 0.5], 0.01, (6, 3)), rng.normal([0.1, 0.9, -0.2], 0.01, (2, 3))])
    tracker.update(new.astype(np.float32))
    for j, members in enumerate((new[:6], new[6:])):
        rate = len(members) / (0.5 * counts[j] + len(members))
        expected = centroids[j] + rate * (members.mean(axis=0) - centroids[j])
        np.testing.assert_allclose(tracker.centroids[j], expected, atol=1e-6)
    np.testing.assert_allclose(tracker.counts, [0.5 * 10 + 6, 0.5 * 30 + 2])


def test_nearest_centroid_is_the_brute_force_argmin():
    from stream_dc.cluster import nearest

    rng = np.random.default_rng(4)
    points = rng.standard_normal((500, 20)).astype(np.float32)
    centroids = rng.standard_normal((3, 20)).astype(np.float32)
    brute = np.array([np.argmin([np.sum((p - c) ** 2) for c in centroids]) for p in points])
    np.testing.assert_array_equal(nearest(points, centroids), brute)
