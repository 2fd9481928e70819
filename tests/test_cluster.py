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
