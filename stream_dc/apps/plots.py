"""Pictures of an offline separation (``stream-dc separate --plot``): the mixture's mel spectrogram, the voice
mask, and the embeddings projected on their two principal axes, coloured by cluster. Needs matplotlib."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..files import replaced_on_success
from ..separator import Analysis

MAX_SECONDS = 30.0  # the spectrogram panels show the start of long inputs


def plot_analysis(analysis: Analysis, frame_rate: float, title: str, path: str | Path) -> Path:
    """Write the picture of ``analysis`` to ``path`` (PNG, written to a temporary file and renamed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = min(len(analysis.log_mel), int(MAX_SECONDS * frame_rate))
    extent = (0, frames / frame_rate, 0, analysis.log_mel.shape[1])
    figure = plt.figure(figsize=(12, 7))
    grid = figure.add_gridspec(2, 2, width_ratios=(2.2, 1))
    top, bottom, right = figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[1, 0]), figure.add_subplot(grid[:, 1])
    spectrogram = 20 / np.log(10) * analysis.log_mel[:frames].T  # dB
    top.imshow(spectrogram, origin="lower", aspect="auto", extent=extent, cmap="magma",
               vmin=spectrogram.max() - 80, vmax=spectrogram.max())
    top.set_title("mixture: log-mel magnitude (dB)", fontsize=10)
    top.set_ylabel("mel band")
    bottom.imshow(analysis.masks[:frames].T, origin="lower", aspect="auto", extent=extent, cmap="Blues", vmin=0, vmax=1)
    bottom.set_title("voice mask (dark = voice)", fontsize=10)
    bottom.set_xlabel("time (s)")
    bottom.set_ylabel("mel band")

    sample = analysis.sample
    mean = sample.mean(axis=0)
    _, _, axes_ = np.linalg.svd(sample - mean, full_matrices=False)
    projected = (sample - mean) @ axes_[:2].T
    centroids = (analysis.centroids - mean) @ axes_[:2].T
    for cluster, colour in ((0, "tab:orange"), (1, "tab:blue")):
        chosen = analysis.sample_labels == cluster
        name = "voice" if analysis.voice_flags[cluster] else "accompaniment"
        right.scatter(projected[chosen, 0], projected[chosen, 1], s=2, alpha=0.35, color=colour,
                      label=f"cluster {cluster}: {name}")
        right.scatter(*centroids[cluster], marker="X", s=140, color=colour, edgecolor="black")
    right.set_title("embeddings of active bins (PCA), k-means clusters", fontsize=10)
    right.legend(fontsize=8, markerscale=4)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    try:
        with replaced_on_success(path) as temporary:
            figure.savefig(temporary, dpi=100, format="png")
    finally:
        plt.close(figure)
    return Path(path)
