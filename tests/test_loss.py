"""The training losses: deep clustering against brute force, the clustered-mask loss and the mask-inference loss."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from training.loss import (  # noqa: E402
    clustered_mask_loss,
    deep_clustering_loss,
    mask_inference_loss,
    two_means_assignment,
)


def brute_force_loss(embeddings, voice, weights):
    """Build the affinity matrices bin by bin with explicit (frame, band) indices."""
    batch, frames, bands, _ = embeddings.shape
    total = 0.0
    for b in range(batch):
        bins = [(t, f) for t in range(frames) for f in range(bands)]
        v = torch.stack([embeddings[b, t, f] for t, f in bins])
        y = torch.stack([torch.tensor([1.0, 0.0]) if voice[b, t, f] else torch.tensor([0.0, 1.0]) for t, f in bins])
        w = torch.tensor([float(weights[b, t, f]) for t, f in bins])
        difference = v @ v.T - y @ y.T
        total = total + (w[:, None] * w[None, :] * difference ** 2).sum() / w.sum() ** 2
    return total / batch


@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (1, 5, 3, 2)])
def test_low_rank_loss_equals_brute_force(shape):
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(*shape, generator=generator), dim=-1)
    voice = torch.rand(shape[:3], generator=generator) > 0.5
    weights = (torch.rand(shape[:3], generator=generator) > 0.3).float()
    expected = brute_force_loss(embeddings, voice, weights)
    assert torch.allclose(deep_clustering_loss(embeddings, voice, weights), expected, rtol=1e-5, atol=1e-6)


def test_loss_sees_a_time_frequency_mix_up():
    """Labels flattened in (band, frame) order against embeddings in (frame, band) order must change the loss."""
    generator = torch.Generator().manual_seed(1)
    embeddings = torch.nn.functional.normalize(torch.randn(1, 4, 6, 3, generator=generator), dim=-1)
    voice = torch.rand(1, 4, 6, generator=generator) > 0.5
    weights = torch.ones(1, 4, 6)
    swapped = voice.transpose(1, 2).reshape(1, 4, 6)
    assert not torch.allclose(deep_clustering_loss(embeddings, voice, weights),
                              deep_clustering_loss(embeddings, swapped, weights))
    # perfect embeddings (one direction per class) give zero loss
    perfect = torch.zeros(1, 4, 6, 3)
    perfect[..., 0] = voice.float()
    perfect[..., 1] = (~voice).float()
    assert deep_clustering_loss(perfect, voice, weights).item() < 1e-6


def two_class_example(generator, separation):
    """``(1, 6, 8, 3)`` embeddings: voice bins near one point, accompaniment bins near another ``separation``
    away; the voice pattern ``(1, 6, 8)`` bool and mixture magnitudes ``(1, 6, 8)``."""
    voice = torch.rand(1, 6, 8, generator=generator) > 0.5
    centre = torch.where(voice[..., None], torch.tensor([separation, 0.0, 0.0]), torch.tensor([0.0, 0.0, 0.0]))
    embeddings = centre + 0.01 * torch.randn(1, 6, 8, 3, generator=generator)
    return embeddings, voice, 0.5 + torch.rand(1, 6, 8, generator=generator)


def test_clustered_mask_loss_scores_the_soft_mask_that_two_means_makes():
    generator = torch.Generator().manual_seed(2)
    embeddings, voice, magnitude = two_class_example(generator, separation=4.0)
    weights = torch.ones(1, 6, 8)
    share = voice.half()
    found = two_means_assignment(embeddings.reshape(-1, 3))
    assert torch.equal(found, voice.flatten()) or torch.equal(found, ~voice.flatten())
    separated = clustered_mask_loss(embeddings, magnitude, share, weights, softness=4.0)
    assert separated.item() < 1e-6  # posterior exp(-16) off the own cluster
    # either cluster may be the voice: the complementary share scores the same
    assert clustered_mask_loss(embeddings, magnitude, (~voice).half(), weights, 4.0).item() == pytest.approx(
        separated.item(), abs=1e-7)
    # clusters close together give soft masks, hence an error; the gradient pulls them apart
    close, _, _ = two_class_example(torch.Generator().manual_seed(2), separation=0.2)
    close.requires_grad_(True)
    loss = clustered_mask_loss(close, magnitude, share, weights, softness=4.0)
    assert loss.item() > 0.1
    loss.backward()
    gap = close.grad[voice].mean(0) - close.grad[~voice].mean(0)
    assert gap[0] < 0  # descending the gradient moves the voice bins further along +x, away from the others
    # the error is that of the magnitudes: silent (zero-weight) bins and quiet bins count less
    quiet = magnitude.clone()
    quiet[~voice] = 1e-3
    assert clustered_mask_loss(close.detach(), quiet, share, weights, 4.0) != pytest.approx(loss.item())
    assert clustered_mask_loss(close.detach(), magnitude, share, torch.zeros(1, 6, 8), 4.0).item() == 0.0


def test_mask_inference_loss_is_the_magnitude_weighted_error_of_the_voice():
    """Brute force, bin by bin: sum over active bins of |mask m - share m| over the sum of their m, per example."""
    generator = torch.Generator().manual_seed(5)
    mask, share = torch.rand(2, 4, 6, generator=generator), torch.rand(2, 4, 6, generator=generator)
    magnitude = torch.rand(2, 4, 6, generator=generator) * 3
    weights = (torch.rand(2, 4, 6, generator=generator) > 0.3).float()
    expected = 0.0
    for b in range(2):
        error = total = 0.0
        for t in range(4):
            for f in range(6):
                if weights[b, t, f] > 0:
                    error += abs(float(mask[b, t, f]) * float(magnitude[b, t, f])
                                 - float(share[b, t, f]) * float(magnitude[b, t, f]))
                    total += float(magnitude[b, t, f])
        expected += error / total / 2
    assert mask_inference_loss(mask, magnitude, share, weights).item() == pytest.approx(expected, rel=1e-5)
    assert mask_inference_loss(share, magnitude, share, weights).item() == 0.0
    # the gradient pulls the mask towards the target
    mask.requires_grad_(True)
    mask_inference_loss(mask, magnitude, share, weights).backward()
    active = weights > 0
    assert torch.all(torch.sign(mask.grad[active]) == torch.sign((mask - share).detach()[active]))
