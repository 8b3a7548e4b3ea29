"""Family 1 of the contract proof: a memory bank over the whole training set, kept by the loss.

The loss pairs every batch item with the bank of every training sample's last relaxed code (a
pairwise cross-entropy on 1/2 u_i . U_j against s_ij = shares a label), writes the batch into the
bank and excludes each item's own row. It needs the items' training-set rows, the training labels
up front (``begin``) and its bank saved in checkpoints — nothing in hashbench knows it.
"""
import torch
import torch.nn.functional as F

from hashbench.losses import HashLoss
from hashbench.method import DeepMethod
from hashbench.registry import LOSSES, METHODS


@LOSSES.register_module(name="plugin_bank_loss")
class BankLoss(HashLoss):
    """Pairwise cross-entropy of the batch against a bank of the whole training set."""

    def begin(self, labels, n_bits):
        self.register_buffer("bank", torch.zeros(len(labels), n_bits))
        self.register_buffer("bank_labels", labels.clone())
        self.register_buffer("seen", torch.zeros(len(labels), dtype=torch.bool))

    def forward(self, codes, labels, indices=None, tuples=None, ref=None):
        self.bank[indices] = codes.detach()
        self.seen[indices] = True
        theta = 0.5 * codes @ self.bank.T
        s = (labels @ self.bank_labels.T > 0).to(codes.dtype)
        pair = F.softplus(theta) - s * theta
        mask = self.seen[None, :] & (indices[:, None] != torch.arange(len(self.bank), device=codes.device)[None, :])
        loss = (pair * mask).sum() / mask.sum().clamp_min(1)
        return dict(loss=loss, pairs=mask.sum().detach())


@METHODS.register_module(name="plugin_bank")
class PluginBank(DeepMethod):
    """Test plugin: pairwise loss against a memory bank of the whole training set."""

    def __init__(self, n_bits: int, *, relaxation: str = "tanh"):
        super().__init__(n_bits, loss=dict(type="plugin_bank_loss"), relaxation=relaxation, bypass=False)
