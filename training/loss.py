"""The deep clustering loss ``||V V^T - Y Y^T||_F^2`` in its low-rank form.

With the bins of one example flattened in (frame, band) order, ``V (N, D)`` the embeddings and ``Y (N, 2)`` the
one-hot voice/accompaniment labels, both rows scaled by the square root of each bin's weight (0 for silent
bins, which therefore drop out):

    ||V^T V||_F^2 - 2 ||V^T Y||_F^2 + ||Y^T Y||_F^2

which never builds the ``N x N`` affinity matrices. Each example's loss is divided by the squared number of
weighted bins (the number of affinity entries), then averaged over the batch.
"""
from __future__ import annotations

import torch


def deep_clustering_loss(embeddings: torch.Tensor, voice: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """embeddings ``(batch, frames, n_mels, dim)``; voice ``(batch, frames, n_mels)`` bool (True = voice);
    weights ``(batch, frames, n_mels)`` >= 0. Returns the mean loss over the batch (a scalar)."""
    batch, frames, bands, dim = embeddings.shape
    root = weights.reshape(batch, frames * bands, 1).float().sqrt()
    v = embeddings.reshape(batch, frames * bands, dim).float() * root
    labels = voice.reshape(batch, frames * bands).long()
    y = torch.nn.functional.one_hot(labels, 2).float() * root
    vv = torch.einsum("bnd,bne->bde", v, v)
    vy = torch.einsum("bnd,bnc->bdc", v, y)
    yy = torch.einsum("bnc,bne->bce", y, y)
    per_example = vv.pow(2).sum((1, 2)) - 2 * vy.pow(2).sum((1, 2)) + yy.pow(2).sum((1, 2))
    count = weights.reshape(batch, -1).float().sum(1).clamp_min(1.0)
    return (per_example / count.pow(2)).mean()
