"""Family 4 of the contract proof: asymmetric database codes, learned directly, updated per epoch.

The method keeps V (n_train, K) in {-1, +1} as a buffer and the network's last outputs U of every
training item; the loss fits u_i . V_j to K s_ij over the whole training set (as ADSH's does) and
pulls u towards its own V row. Once per epoch (``on_epoch_end``) V becomes sign(U + V / 2) — a
discrete update from the stored outputs. At encoding, database items that are training items
(the same ``ids``) get their learned V codes; any other image gets the network's.
"""
import numpy as np
import torch

from hashbench.losses import HashLoss
from hashbench.method import DeepMethod
from hashbench.registry import LOSSES, METHODS


@LOSSES.register_module(name="plugin_asym_loss")
class AsymLoss(HashLoss):
    """(u_i . V_j - K s_ij)^2 over the training set, plus gamma ||V_i - u_i||^2."""

    def __init__(self, *, gamma: float = 1.0):
        super().__init__()
        self.gamma = gamma

    def begin(self, labels, n_bits):
        g = torch.Generator().manual_seed(1)
        self.register_buffer("V", torch.where(torch.rand(len(labels), n_bits, generator=g) > 0.5, 1.0, -1.0))
        self.register_buffer("U", torch.zeros(len(labels), n_bits))
        self.register_buffer("train_labels", labels.clone())

    def forward(self, codes, labels, indices=None, tuples=None, ref=None):
        self.U[indices] = codes.detach()
        k = codes.shape[1]
        s = (labels @ self.train_labels.T > 0).to(codes.dtype)
        fit = (codes @ self.V.T - k * s).pow(2).mean() / k
        pull = (self.V[indices] - codes).pow(2).sum(1).mean()
        return dict(loss=fit + self.gamma * pull, fit=fit.detach(), pull=pull.detach())


@METHODS.register_module(name="plugin_asym")
class PluginAsym(DeepMethod):
    """Test plugin: database codes learned directly and updated once per epoch (ADSH-like)."""

    def __init__(self, n_bits: int, *, gamma: float = 1.0):
        super().__init__(n_bits, loss=dict(type="plugin_asym_loss", gamma=gamma), relaxation="tanh", bypass=False)
        self.updates = 0

    def begin(self, split):
        super().begin(split)
        self.train_ids = np.asarray(split.ids)

    def on_epoch_end(self, epoch, epochs):
        self.loss.V.copy_(torch.where(self.loss.U + 0.5 * self.loss.V > 0, 1.0, -1.0))
        self.updates += 1

    def encode(self, name, split, network):
        codes = network(split)
        if name != "database":
            return codes
        row = {i: r for r, i in enumerate(self.train_ids)}
        learned = (self.loss.V.cpu().numpy() > 0).astype(np.uint8)
        for i, item in enumerate(split.ids):
            if item in row:
                codes[i] = learned[row[item]]
        return codes
