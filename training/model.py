"""The deep clustering network: stacked BLSTM layers and a feed-forward embedding layer.

Each BLSTM layer normalises its input-to-hidden transform ``W_ih x`` with sequence-wise batch normalisation
(statistics over batch and time). Because that transform is linear, the normalisation is folded into ``W_ih`` and
``b_ih`` on every step: in training from the batch statistics of ``W_ih x`` (computed from the input's mean and
covariance), in evaluation from the running statistics. The fused LSTM kernel (cuDNN on a GPU) therefore runs in
both, and the exported graph is a plain ONNX LSTM.

Shapes: features ``(batch, frames, n_mels)`` -> embeddings ``(batch, frames, n_mels, embedding_dim)``, unit length.

With ``mask_head`` the network is a Chimera network (Luo et al., ICASSP 2017; Wang, Le Roux & Hershey, ICASSP 2018):
a second head on the same BLSTM output gives a voice mask per bin, ``(batch, frames, n_mels)`` in (0, 1), trained by
mask inference beside the deep clustering loss.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class ModelConfig:
    """Every constructor argument of the network; saved with the weights and in the bundle."""

    n_mels: int = 150
    hidden: int = 500
    layers: int = 4
    embedding_dim: int = 20
    dropout: float = 0.2
    bn_momentum: float = 0.05
    bn_eps: float = 1e-5
    mask_head: bool = False  # a second, mask-inference head (Chimera)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        return cls(**values)


PRESETS = {
    "paper": ModelConfig(hidden=500, layers=4),  # 4 x 500 BLSTM, 150 x 20 embeddings
    "compact": ModelConfig(hidden=300, layers=4),  # the shipped model: 3x less compute, real time with overlap
    "tiny": ModelConfig(hidden=32, layers=2),  # tests
}


class BatchNormBLSTM(nn.Module):
    """One bidirectional LSTM layer with sequence-wise batch norm on the input-to-hidden transform.

    Parameters are stored per direction in PyTorch's gate order (i, f, g, o): ``weight_ih (2, 4H, in)``,
    ``weight_hh (2, 4H, H)``, ``bias_hh (2, 4H)``; the batch norm has ``gamma``/``beta (2, 4H)`` and running
    statistics of ``W_ih x``. ``forward``: ``(batch, frames, in)`` -> ``(batch, frames, 2H)``.
    """

    def __init__(self, input_size: int, hidden: int, momentum: float, eps: float):
        super().__init__()
        self.input_size, self.hidden, self.momentum, self.eps = input_size, hidden, momentum, eps
        bound = hidden ** -0.5
        self.weight_ih = nn.Parameter(torch.empty(2, 4 * hidden, input_size).uniform_(-bound, bound))
        self.weight_hh = nn.Parameter(torch.empty(2, 4 * hidden, hidden).uniform_(-bound, bound))
        self.bias_hh = nn.Parameter(torch.zeros(2, 4 * hidden))
        self.gamma = nn.Parameter(torch.ones(2, 4 * hidden))
        beta = torch.zeros(2, 4 * hidden)
        beta[:, hidden:2 * hidden] = 1.0  # forget-gate bias of 1
        self.beta = nn.Parameter(beta)
        self.register_buffer("running_mean", torch.zeros(2, 4 * hidden))
        self.register_buffer("running_var", torch.ones(2, 4 * hidden))

    def transform_statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and (biased) variance of ``W_ih x`` over batch and time, each ``(2, 4H)``."""
        flat = x.reshape(-1, self.input_size).float()
        mean_x = flat.mean(dim=0)
        centred = flat - mean_x
        covariance = centred.T @ centred / flat.shape[0]  # (in, in)
        mean = self.weight_ih @ mean_x  # (2, 4H)
        var = torch.einsum("dgi,ij,dgj->dg", self.weight_ih, covariance, self.weight_ih).clamp_min(0.0)
        return mean, var

    def folded_input_weights(self, mean: torch.Tensor | None = None, var: torch.Tensor | None = None):
        """``W_ih`` and ``b_ih`` with the batch norm folded in, ``(2, 4H, in)`` and ``(2, 4H)``."""
        if mean is None:
            mean, var = self.running_mean, self.running_var
        scale = self.gamma / torch.sqrt(var + self.eps)
        return self.weight_ih * scale.unsqueeze(-1), self.beta - scale * mean

    @torch.no_grad()
    def calibrate(self, x: torch.Tensor) -> None:
        """Re-express the layer so that its batch norm starts from the statistics of ``x`` ``(batch, frames, in)``
        without changing what it computes in evaluation mode: ``W_ih`` becomes the folded weight ``W``, the running
        statistics become the mean ``m`` and variance ``v`` of ``W x``, ``gamma = sqrt(v + eps)`` and
        ``beta = b + m``. A network read back from a bundle (batch norm folded away) can then train again, its
        batch statistics close to the running ones from the first step."""
        weight, bias = self.folded_input_weights()
        self.weight_ih.copy_(weight)
        mean, var = self.transform_statistics(x)
        self.running_mean.copy_(mean)
        self.running_var.copy_(var)
        self.gamma.copy_(torch.sqrt(var + self.eps))
        self.beta.copy_(bias + mean)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean, var = self.transform_statistics(x)
            with torch.no_grad():
                n = x.shape[0] * x.shape[1]
                unbiased = var * n / max(n - 1, 1)
                self.running_mean.lerp_(mean.detach(), self.momentum)
                self.running_var.lerp_(unbiased.detach(), self.momentum)
            weight_ih, bias_ih = self.folded_input_weights(mean, var)
        else:
            weight_ih, bias_ih = self.folded_input_weights()
        params = []
        for direction in range(2):
            params += [weight_ih[direction], self.weight_hh[direction], bias_ih[direction], self.bias_hh[direction]]
        zeros = x.new_zeros(2, x.shape[0], self.hidden)
        output, _, _ = torch._VF.lstm(x, (zeros, zeros), params, True, 1, 0.0, self.training, True, True)
        return output


class DeepClusteringNet(nn.Module):
    """BLSTM stack + feed-forward layer of ``n_mels * embedding_dim`` units, tanh, unit-normalised per bin; with
    ``config.mask_head`` also a feed-forward layer of ``n_mels`` sigmoid units, the voice mask."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        sizes = [config.n_mels] + [2 * config.hidden] * config.layers
        self.blstms = nn.ModuleList(
            BatchNormBLSTM(sizes[i], config.hidden, config.bn_momentum, config.bn_eps) for i in range(config.layers))
        self.dropout = nn.Dropout(config.dropout)
        self.embedding = nn.Linear(2 * config.hidden, config.n_mels * config.embedding_dim)
        self.mask = nn.Linear(2 * config.hidden, config.n_mels) if config.mask_head else None

    @torch.no_grad()
    def calibrate_batch_norm(self, features: torch.Tensor) -> None:
        """``BatchNormBLSTM.calibrate`` every layer on ``features`` ``(batch, frames, n_mels)``; the evaluation-mode
        output stays the same."""
        was_training = self.training
        self.eval()
        x = features
        for blstm in self.blstms:
            blstm.calibrate(x)
            x = blstm(x)
        self.train(was_training)

    def forward(self, features: torch.Tensor, with_mask: bool = False):
        """``(batch, frames, n_mels)`` -> embeddings ``(batch, frames, n_mels, dim)``; with ``with_mask`` the pair
        (embeddings, voice mask ``(batch, frames, n_mels)``), the mask None without a mask head."""
        x = features
        for blstm in self.blstms:
            x = self.dropout(blstm(x))
        return self.heads(x, with_mask)

    def heads(self, x: torch.Tensor, with_mask: bool = False):
        """The output layers on the last BLSTM layer's output ``(batch, frames, 2H)``; see ``forward``."""
        batch, frames, _ = x.shape
        v = torch.tanh(self.embedding(x)).reshape(batch, frames, self.config.n_mels, self.config.embedding_dim)
        embeddings = F.normalize(v, dim=-1, eps=1e-8)
        if not with_mask:
            return embeddings
        return embeddings, (torch.sigmoid(self.mask(x)) if self.mask is not None else None)


# PyTorch orders LSTM gates (i, f, g, o); ONNX orders them (i, o, f, c).
TORCH_TO_ONNX_GATES = (0, 3, 1, 2)


def _onnx_gate_order(tensor: torch.Tensor, hidden: int) -> torch.Tensor:
    blocks = tensor.reshape(tensor.shape[0], 4, hidden, *tensor.shape[2:])
    return blocks[:, list(TORCH_TO_ONNX_GATES)].reshape(tensor.shape)


@torch.no_grad()
def inference_weights(model: DeepClusteringNet) -> dict:
    """The evaluation-mode network as plain arrays for an ONNX graph (batch norm folded, ONNX gate order).

    Returns ``{"layers": [{"W": (2, 4H, in), "R": (2, 4H, H), "B": (2, 8H)}, ...], "output_weight": (2H, n_mels*dim),
    "output_bias": (n_mels*dim,)}`` as float32 numpy arrays, and with a mask head ``"mask_weight": (2H, n_mels)`` and
    ``"mask_bias": (n_mels,)``.
    """
    layers = []
    for blstm in model.blstms:
        weight_ih, bias_ih = blstm.folded_input_weights()
        hidden = blstm.hidden
        layers.append({
            "W": _onnx_gate_order(weight_ih, hidden).float().cpu().numpy(),
            "R": _onnx_gate_order(blstm.weight_hh, hidden).float().cpu().numpy(),
            "B": torch.cat([_onnx_gate_order(bias_ih, hidden), _onnx_gate_order(blstm.bias_hh, hidden)], dim=1)
            .float().cpu().numpy(),
        })
    weights = {
        "layers": layers,
        "output_weight": model.embedding.weight.T.float().cpu().numpy().copy(),
        "output_bias": model.embedding.bias.float().cpu().numpy().copy(),
    }
    if model.mask is not None:
        weights["mask_weight"] = model.mask.weight.T.float().cpu().numpy().copy()
        weights["mask_bias"] = model.mask.bias.float().cpu().numpy().copy()
    return weights


def _lstm_direction(blstm: BatchNormBLSTM, direction: int, x: torch.Tensor, state=None):
    """One direction of an evaluation-mode layer over ``x`` ``(batch, frames, in)`` (reversed in time for
    direction 1) from ``state`` ``(h, c)``, each ``(batch, H)`` (zeros when None). Returns the outputs
    ``(batch, frames, H)`` in the input's time order and the final state."""
    weight_ih, bias_ih = blstm.folded_input_weights()
    params = [weight_ih[direction], blstm.weight_hh[direction], bias_ih[direction], blstm.bias_hh[direction]]
    if state is None:
        zeros = x.new_zeros(1, x.shape[0], blstm.hidden)
        state = (zeros, zeros)
    else:
        state = (state[0][None], state[1][None])
    inputs = x.flip(1) if direction else x
    output, h, c = torch._VF.lstm(inputs, state, params, True, 1, 0.0, False, False, True)
    return (output.flip(1) if direction else output), (h[0], c[0])


@torch.no_grad()
def chunked_embeddings(model: DeepClusteringNet, features: torch.Tensor, chunk: int, lookahead: int,
                       with_mask: bool = False):
    """The latency-controlled BLSTM: the reference for the exported chunked graph.

    Frames are processed ``chunk`` at a time. In every layer the forward LSTM carries its state from chunk to chunk
    (it sees the whole past, as offline), and the backward LSTM runs from a fresh state over the chunk and
    ``lookahead`` further frames; each layer feeds the next over chunk + look-ahead, and only the chunk's frames
    are emitted. Frames past the end of ``features`` are silence as the caller gives them: here the signal simply
    ends. ``features (batch, frames, n_mels)`` -> embeddings ``(batch, frames, n_mels, dim)``, or with ``with_mask``
    the pair of embeddings and voice masks ``(batch, frames, n_mels)`` (None without a mask head).
    """
    model.eval()
    frames = features.shape[1]
    states = [None] * len(model.blstms)
    outputs, masks = [], []
    for start in range(0, frames, chunk):
        x = features[:, start:start + chunk + lookahead]
        decided = min(chunk, frames - start)
        for index, blstm in enumerate(model.blstms):
            head, state = _lstm_direction(blstm, 0, x[:, :decided], states[index])
            tail, _ = _lstm_direction(blstm, 0, x[:, decided:], state) if x.shape[1] > decided else (head[:, :0], None)
            backward, _ = _lstm_direction(blstm, 1, x)
            states[index] = state
            x = torch.cat([torch.cat([head, tail], dim=1), backward], dim=-1)
        embeddings, mask = model.heads(x[:, :decided], with_mask=True)
        outputs.append(embeddings)
        masks.append(mask)
    embeddings = torch.cat(outputs, dim=1)
    if not with_mask:
        return embeddings
    return embeddings, (torch.cat(masks, dim=1) if model.mask is not None else None)


def _torch_gate_order(array: np.ndarray, hidden: int) -> torch.Tensor:
    """Inverse of the ONNX gate reordering along axis 1."""
    inverse = np.argsort(TORCH_TO_ONNX_GATES)
    blocks = array.reshape(array.shape[0], 4, hidden, *array.shape[2:])
    return torch.from_numpy(np.ascontiguousarray(blocks[:, inverse].reshape(array.shape)))


def model_with_folded_weights(config: ModelConfig, weights: dict) -> DeepClusteringNet:
    """A network in evaluation mode whose batch norm is the identity and whose weights are ``weights``."""
    model = DeepClusteringNet(config).eval()
    with torch.no_grad():
        for blstm, layer in zip(model.blstms, weights["layers"]):
            hidden = blstm.hidden
            blstm.weight_ih.copy_(_torch_gate_order(layer["W"], hidden))
            blstm.weight_hh.copy_(_torch_gate_order(layer["R"], hidden))
            blstm.beta.copy_(_torch_gate_order(layer["B"][:, :4 * hidden], hidden))
            blstm.bias_hh.copy_(_torch_gate_order(layer["B"][:, 4 * hidden:], hidden))
            blstm.gamma.fill_(1.0)
            blstm.running_mean.zero_()
            blstm.running_var.fill_(1.0 - blstm.eps)
        model.embedding.weight.copy_(torch.from_numpy(weights["output_weight"].T.copy()))
        model.embedding.bias.copy_(torch.from_numpy(weights["output_bias"]))
        if model.mask is not None and "mask_weight" in weights:  # else the fresh head's initial weights stay
            model.mask.weight.copy_(torch.from_numpy(weights["mask_weight"].T.copy()))
            model.mask.bias.copy_(torch.from_numpy(weights["mask_bias"]))
    return model
