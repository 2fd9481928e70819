"""The network: folded batch norm against explicit batch norm, the paper's preset, and batch-norm calibration."""
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from training.loss import deep_clustering_loss  # noqa: E402
from training.model import PRESETS, DeepClusteringNet, ModelConfig, inference_weights  # noqa: E402


def explicit_blstm(layer, x, mean=None, var=None):
    """Reference: explicit batch norm of W_ih x, then an LSTM written step by step."""
    z = torch.einsum("dgi,bti->bdtg", layer.weight_ih, x)  # (batch, 2, frames, 4H)
    if mean is None:
        mean, var = z.mean(dim=(0, 2)), z.var(dim=(0, 2), unbiased=False)
    z = layer.gamma[None, :, None] * (z - mean[None, :, None]) / torch.sqrt(var[None, :, None] + layer.eps) \
        + layer.beta[None, :, None]
    hidden = layer.hidden
    outputs = []
    for direction in range(2):
        h = x.new_zeros(x.shape[0], hidden)
        c = x.new_zeros(x.shape[0], hidden)
        steps = range(x.shape[1]) if direction == 0 else reversed(range(x.shape[1]))
        out = [None] * x.shape[1]
        for t in steps:
            gates = z[:, direction, t] + h @ layer.weight_hh[direction].T + layer.bias_hh[direction]
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            out[t] = h
        outputs.append(torch.stack(out, dim=1))
    return torch.cat(outputs, dim=-1)


def test_folded_batch_norm_equals_explicit_batch_norm():
    torch.manual_seed(0)
    model = DeepClusteringNet(ModelConfig(n_mels=6, hidden=5, layers=1, embedding_dim=3, dropout=0.0))
    layer = model.blstms[0]
    with torch.no_grad():
        layer.gamma.uniform_(0.5, 1.5)
        layer.beta.uniform_(-0.5, 0.5)
    x = torch.randn(3, 7, 6) * 2 + 0.5
    layer.train()
    torch.testing.assert_close(layer(x), explicit_blstm(layer, x), rtol=1e-4, atol=1e-5)
    layer.eval()  # running statistics, folded into the weights
    torch.testing.assert_close(layer(x), explicit_blstm(layer, x, layer.running_mean, layer.running_var),
                               rtol=1e-4, atol=1e-5)


def trained_tiny_model(seed=0):
    torch.manual_seed(seed)
    model = DeepClusteringNet(ModelConfig(n_mels=150, hidden=16, layers=2, embedding_dim=20))
    model.train()
    for _ in range(3):  # give the running statistics non-trivial values
        model(torch.randn(4, 50, 150) * 1.5 + 0.3)
    return model.eval()


def test_paper_preset_trains():
    """The paper's 4 x 500 network runs a training step and its loss goes down on a fixed batch."""
    torch.manual_seed(0)
    model = DeepClusteringNet(PRESETS["paper"])
    assert sum(p.numel() for p in model.parameters()) > 20_000_000
    features = torch.randn(2, 20, 150)
    voice = torch.rand(2, 20, 150) > 0.5
    weights = torch.ones(2, 20, 150)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4)
    losses = []
    for _ in range(3):
        loss = deep_clustering_loss(model(features), voice, weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_batch_norm_calibration_keeps_the_network_and_trains_from_data_statistics():
    from training.model import model_with_folded_weights

    folded = model_with_folded_weights(ModelConfig(n_mels=150, hidden=16, layers=2), inference_weights(
        trained_tiny_model(4)))
    x = torch.randn(6, 80, 150) * 2.0 + 0.5
    with torch.no_grad():
        before = folded(x)
    folded.calibrate_batch_norm(x)
    with torch.no_grad():
        assert torch.allclose(folded(x), before, atol=1e-5)
        folded.train()
        folded.dropout.p = 0.0
        assert torch.allclose(folded(x), before, atol=1e-4)  # batch statistics are the calibrated ones
