"""Training losses: the deep clustering loss ``||V V^T - Y Y^T||_F^2`` in its low-rank form, and the error of the
voice mask that clustering the embeddings makes (``clustered_mask_loss``).

The deep clustering loss.

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


def two_means_assignment(points: torch.Tensor, iterations: int = 10) -> torch.Tensor:
    """Hard two-means of ``(n, dim)`` points, without gradient: ``(n,)`` bool, True for the second cluster.

    Seeded deterministically by farthest points (the point farthest from the mean, then the point farthest from
    it), then Lloyd iterations."""
    with torch.no_grad():
        first = points[torch.argmax((points - points.mean(0)).pow(2).sum(1))]
        second = points[torch.argmax((points - first).pow(2).sum(1))]
        centroids = torch.stack([first, second])
        for _ in range(iterations):
            second_nearer = torch.cdist(points, centroids).argmin(1).bool()
            for k, members in enumerate((~second_nearer, second_nearer)):
                if members.any():
                    centroids[k] = points[members].mean(0)
        return torch.cdist(points, centroids).argmin(1).bool()


def clustered_mask_loss(embeddings: torch.Tensor, magnitude: torch.Tensor, voice_share: torch.Tensor,
                        weights: torch.Tensor, softness: float) -> torch.Tensor:
    """The error of the voice mask that inference would make from these embeddings, against the voice's share.

    Per example: two-means on the active bins (``weights > 0``) picks the clusters (no gradient through the
    choice); the centroids are their members' means and the mask is the soft assignment
    ``softmax(-softness * distance)`` to one cluster, as in ``stream_dc.masks.cluster_voice_mask``. Whichever
    cluster makes the smaller error is the voice (inference names it from the references). The error is that of
    the voice's mel magnitude, ``sum m^2 (mask - share)^2 / sum m^2`` over the active bins with ``m`` the mixture's
    mel magnitude, so loud bins count as they do in the separated signals.

    embeddings ``(batch, frames, n_mels, dim)``; magnitude, voice_share, weights ``(batch, frames, n_mels)``.
    Returns the mean over the examples with at least two active bins (0 when none has)."""
    losses = []
    for e, m, share, w in zip(embeddings, magnitude, voice_share, weights):
        active = w > 0
        if active.sum() < 2:
            continue
        points, energy, share = e[active].float(), m[active].float().pow(2), share[active].float()
        second = two_means_assignment(points.detach())
        members = torch.stack([~second, second], 1).float()
        centroids = (members.T @ points) / members.sum(0).clamp_min(1.0)[:, None]
        distance = (points[:, None, :] - centroids[None]).pow(2).sum(2).clamp_min(1e-12).sqrt()
        posterior = torch.softmax(-softness * distance, dim=1)
        errors = (energy[:, None] * (posterior - share[:, None]).pow(2)).sum(0) / energy.sum().clamp_min(1e-12)
        losses.append(errors.min())
    if not losses:
        return embeddings.sum() * 0.0
    return torch.stack(losses).mean()


def mask_inference_loss(mask: torch.Tensor, magnitude: torch.Tensor, target_share: torch.Tensor,
                        weights: torch.Tensor) -> torch.Tensor:
    """The mask head's loss (Chimera++'s truncated phase-sensitive approximation, L1, on the mel scale): per example
    ``sum w |mask * m - share * m| / sum w m`` with ``m`` the mixture's mel magnitude and ``share`` the voice's
    truncated phase-sensitive share of it, so the error is that of the voice's mel magnitude, relative to the
    mixture's, over the bins with ``w > 0``.

    mask, magnitude, target_share, weights ``(batch, frames, n_mels)``. Returns the mean over the batch."""
    active = (weights > 0).float()
    m = magnitude.float() * active
    per_example = (m * (mask.float() - target_share.float()).abs()).sum((1, 2)) / m.sum((1, 2)).clamp_min(1e-12)
    return per_example.mean()
