"""Voice labelling thresholds measured on the training data."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")


def test_label_threshold_separates_voice_clusters_from_accompaniment_alone():
    from training.calibrate import best_threshold

    voice_scores = np.array([0.1, 0.3, 0.5, 0.6])
    alone_scores = np.array([-0.6, -0.4, -0.2])
    assert best_threshold(voice_scores, alone_scores) == pytest.approx((-0.2 + 0.1) / 2, abs=0.02)
    overlapping = best_threshold(np.array([-0.3, 0.2, 0.4]), np.array([-0.5, -0.25, -0.4]))
    assert min(abs(overlapping - cut) for cut in (-0.35, -0.025)) < 1e-9  # either misses one of six mixtures
