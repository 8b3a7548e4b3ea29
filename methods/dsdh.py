"""DSDH — Deep Supervised Discrete Hashing (Qi Li, Zhenan Sun, Ran He, Tieniu Tan; NeurIPS 2017,
arXiv 1705.10999).

The network's hash layer outputs real values u_i (no squashing); training keeps binary codes
B = [b_1..b_n] in {-1, +1}^(n x K) of the n training images and a linear classifier W (K x C) on
them. With pairwise labels s_ij in {0, 1} and labels y_i (multi-hot, C classes) the objective is

    L = - sum_{i != j} ( s_ij * theta_ij - log(1 + exp(theta_ij)) )        theta_ij = 1/2 * u_i . u_j
        + mu  * sum_i || y_i - W^T b_i ||^2  +  nu * ||W||_F^2
        + eta * sum_i || b_i - u_i ||^2

— DPSH's pairwise likelihood over all training pairs, a classifier that must read the labels off
the binary codes, and a term tying the codes to the network. It is minimised alternately:

1. the network, with B and W fixed: the likelihood and eta ||b_i - u_i||^2 (the only terms in u);
2. W, with B fixed, in closed form: W = (B^T B + (nu / mu) I)^(-1) B^T Y (ridge regression);
3. B, with U and W fixed, discretely: min_B ||B W||^2 - 2 tr(B^T P) with P = Y W^T + (eta / mu) U,
   by discrete cyclic coordinate descent: bit k of every item at once, the others fixed, has the
   closed form  B[:, k] = sign(P[:, k] - sum_{l != k} B[:, l] (W_l . W_k))  (W_l: row l of W).
   Each bit's update minimises the objective over that bit exactly, so no update increases
   mu ||Y - B W||^2 + eta ||B - U||^2; sweeps over the K bits repeat until none changes a bit
   or ``dcc_iter`` sweeps have run. Where the argument is exactly 0 the bit keeps its value.

Step 1 is hashbench's training loop; steps 2 and 3 run in ``on_epoch_end``, once per epoch: an
epoch is the paper's outer iteration (its Algorithm 1 updates W and B after a pass of mini-batch
updates of the network). U is the last output of every training image, kept by DPSH's
:class:`~hashbench.methods.dpsh.TrainingSetBank` (which also supplies the likelihood's pairs: every
batch item against every other training image). Before the first discrete step a training image
takes b_i = sign(u_i) when first seen (as the released code sets ``B(ix,:) = sign(U0)``), and the
first W is fitted on the rows seen so far. B and W are buffers: saved in checkpoints, identical
on every process under DDP (the bank and B's first rows come from the gathered global batch, and
the epoch step is a deterministic function of them, computed in float64).

The network's loss for anchor i is, as DPSH's in hashbench,
(2 sum_{j != i} [softplus(theta_ij) - s_ij theta_ij] + eta ||b_i - u_i||^2) / n over the batch
(mean; ``reduction="sum"`` sums): its gradient is the paper's
sum_j (sigmoid(theta_ij) - s_ij) u_j + 2 eta (u_i - b_i), divided by n (and the batch size), as in
the released code (``train.m``: ``dJdU = (S - A) * U - 2*eta*(U0 - batchB)``; ``update.m`` divides
by batch size x N).

Constants and their sources:

- mu = 1, nu = 0.1, eta = 55: the paper's experiments (mu, nu, eta set to 1, 0.1 and 55); the
  released code (liqi-casia/DSDH-HashingCode, MatConvNet) has ``eta=55`` (``main.m``), nu / mu = 0.1
  (``lambda=0.1`` of the ridge regression ``RRC.m``) and mu = 1 (``Q = eta*U0 + batchY*Wg'``).
- dcc_iter = 10: the released code's DCC sweeps (``for time = 1:10``), which stop early when B
  no longer changes (relative Frobenius change below 1e-6; for {-1, +1} matrices of fewer than
  4e12 entries that is "no bit changed", the test used here).
- s_ij = 1 when two images share at least one label (``binary``); identity relaxation (u is the
  hash layer's linear output, as the released VGG-F's last layer); no bypass; one learning rate.

Multi-label data: Y is the multi-hot label matrix (n x C) — the regression target for the
classifier, as the paper uses it for NUS-WIDE — and s_ij = 1 for images sharing a label. Nothing
takes an argmax over labels.

Paper and released code differ on when B and W are updated; hashbench follows the paper
(``update="epoch"``). The released code (``train.m``) instead, for every mini-batch, fits W by ridge
regression on the *batch's* sign(u) and labels, runs DCC on the batch's rows only (starting from
zeros, ``batchB = zeros(...)``) and uses that batch B at once as the target of eta ||b_i - u_i||^2;
no B is carried between batches. ``update="batch"`` does that (on the global batch under DDP).

Reimplementations: TreezzZ/DSDH_PyTorch updates W and B once per epoch (one DCC sweep, B
initialised at random) with mu = 1e-2, nu = 1, eta = 1e-2 and a loss averaged so that eta weighs
a mean over bits against a mean over training pairs. swuxyj/DeepHash-pytorch (``DSDH.py``) runs
10 rounds of (W-step, DCC sweep) at the start of every epoch from B = 0 (so its first W and B are
0), uses nu = 1, and its network loss has no eta ||b_i - u_i||^2 term — its classifier terms do
not depend on the network, so the network never sees B (it trains as DPSH without quantisation).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hashbench.errors import HashbenchError
from hashbench.losses import HashLoss, reduce, self_mask, unit_similarity
from hashbench.method import DeepMethod
from hashbench.methods.dpsh import TrainingSetBank
from hashbench.params import Interval, Options
from hashbench.registry import LOSSES, METHODS

UPDATES = ("epoch", "batch")


# ------------------------------------------------------------------------------ the discrete steps
def _sign(x: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """sign(x) in {-1, +1}; where x == 0, ``previous`` (or +1 where that is 0 too)."""
    keep = torch.where(previous < 0, -1.0, 1.0).to(x.dtype)
    return torch.where(x > 0, 1.0, torch.where(x < 0, -1.0, keep)).to(x.dtype)


def fit_classifier(B: torch.Tensor, Y: torch.Tensor, mu: float, nu: float) -> torch.Tensor:
    """The W-step: argmin_W mu ||Y - B W||^2 + nu ||W||^2 = (B^T B + (nu/mu) I)^(-1) B^T Y.

    ``B`` (n, K) in {-1, +1}, ``Y`` (n, C). Returns W (K, C) in ``B``'s dtype.
    """
    k = B.shape[1]
    gram = B.T @ B + (nu / mu) * torch.eye(k, dtype=B.dtype, device=B.device)
    return torch.linalg.solve(gram, B.T @ Y.to(B.dtype))


def update_bit(B: torch.Tensor, P: torch.Tensor, G: torch.Tensor, k: int) -> bool:
    """One DCC step, in place: bit k of every row of ``B`` (n, K) becomes
    sign(P[:, k] - sum_{l != k} B[:, l] G[l, k]), the exact minimiser of ||B W||^2 - 2 tr(B^T P)
    over that bit with the others fixed (G = W W^T). Returns whether any bit changed."""
    old = B[:, k].clone()
    r = P[:, k] - B @ G[:, k] + old * G[k, k]  # the sum over l != k: bit k's own term taken out
    B[:, k] = _sign(r, old)
    return not torch.equal(B[:, k], old)


def dcc(B: torch.Tensor, P: torch.Tensor, W: torch.Tensor, sweeps: int) -> tuple[torch.Tensor, int]:
    """The B-step: discrete cyclic coordinate descent on min_B ||B W||^2 - 2 tr(B^T P).

    ``B`` (n, K) the starting codes (in {-1, +1}, or 0 for "none yet"), ``P`` (n, K), ``W`` (K, C).
    :func:`update_bit` for k = 0..K-1, repeated until a sweep changes no bit or ``sweeps`` sweeps
    have run. Returns the new codes (a new tensor, values in {-1, +1}) and the number of sweeps run.
    """
    B = B.clone()
    G = W @ W.T
    done = 0
    for done in range(1, sweeps + 1):
        changed = [update_bit(B, P, G, k) for k in range(B.shape[1])]
        if not any(changed):
            break
    return B, done


def b_objective(B, U, Y, W, mu: float, eta: float) -> torch.Tensor:
    """The terms of L in B: mu ||Y - B W||^2 + eta ||B - U||^2 (rows = items)."""
    return mu * (Y - B @ W).pow(2).sum() + eta * (B - U).pow(2).sum()


def w_objective(B, Y, W, mu: float, nu: float) -> torch.Tensor:
    """The terms of L in W: mu ||Y - B W||^2 + nu ||W||^2."""
    return mu * (Y - B @ W).pow(2).sum() + nu * W.pow(2).sum()


def discrete_step(B, U, Y, mu: float, nu: float, eta: float, sweeps: int, rows=None):
    """One outer iteration's W-step then B-step, in float64: returns (B, W, sweeps run).

    ``B`` (n, K) current codes, ``U`` (n, K) network outputs, ``Y`` (n, C) labels; ``rows``
    (bool (n,) or None) restricts the W fit to those rows (the rows that have a code yet).
    """
    B64, U64, Y64 = B.double(), U.double(), Y.double()
    fit = (B64, Y64) if rows is None else (B64[rows], Y64[rows])
    W = fit_classifier(*fit, mu, nu)
    P = Y64 @ W.T + (eta / mu) * U64
    new, run = dcc(B64, P, W, sweeps)
    return new, W, run


# ------------------------------------------------------------------------------ the loss
@LOSSES.register_module(name="dsdh")
class DSDHLoss(HashLoss):
    """DSDH's network loss: DPSH's likelihood against a reference set plus eta ||b_i - u_i||^2,
    with b_i the item's row of the discrete codes B this loss keeps (and W, the classifier).

    Parameters
    ----------
    mu, nu, eta : float
        The weights of the classifier's fit, of ||W||^2 and of ||B - U||^2.
    dcc_iter : int
        At most this many DCC sweeps per B-step.
    update : {"epoch", "batch"}
        When B and W are updated: by :meth:`discrete_step` once per epoch over the whole training
        set (the paper), or in every call from the batch alone (the released code).
    similarity : str
        How labels become s_ij; must give values in [0, 1] (``binary``, ``cosine``).
    reduction : {"mean", "sum"}
        Over anchors of the batch.

    ``begin(labels, n_bits)`` allocates B (n, K) (+1 until a row is first seen), ``coded`` (n,)
    and W (K, C) = 0. Called with ``ref`` (the bank of every training output; see the module
    docstring) and the batch's training-set rows ``indices``. Returns ``loss`` and the detached
    terms ``likelihood``, ``quantization`` (``loss = likelihood + eta * quantization``) and
    ``classification``, ||y_i - W^T b_i||^2 / n reduced the same way (not part of ``loss``: it does
    not depend on the network).
    """

    takes = frozenset({"ref"})
    _parameter_constraints = {
        "mu": [Interval(float, 0, None, closed="neither")], "nu": [Interval(float, 0, None, closed="neither")],
        "eta": [Interval(float, 0, None)], "dcc_iter": [Interval(int, 1, None)], "update": [Options(*UPDATES)],
        "reduction": [Options("mean", "sum")],
    }

    def __init__(self, *, mu: float = 1.0, nu: float = 0.1, eta: float = 55.0, dcc_iter: int = 10,
                 update: str = "epoch", similarity: str = "binary", reduction: str = "mean"):
        super().__init__()
        if update not in UPDATES:
            raise HashbenchError(f"dsdh: unknown update {update!r}; valid: {', '.join(UPDATES)}")
        self.mu, self.nu, self.eta, self.dcc_iter = float(mu), float(nu), float(eta), int(dcc_iter)
        self.update, self.reduction = update, reduction
        self.similarity_name = similarity
        self.similarity = unit_similarity(similarity, "dsdh")

    def begin(self, labels: torch.Tensor, n_bits: int) -> None:
        labels = torch.as_tensor(labels, dtype=torch.float32)
        self.register_buffer("B", labels.new_ones(len(labels), n_bits))
        self.register_buffer("coded", torch.zeros(len(labels), dtype=torch.bool))
        self.register_buffer("W", labels.new_zeros(n_bits, labels.shape[1]))

    def _targets(self, codes: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """The batch's b_i (B, K), updating the state as ``update`` says."""
        u = codes.detach()
        if self.update == "batch":  # released code: W and B from this batch alone, B from zeros
            W = fit_classifier(_sign(u.double(), torch.ones_like(u, dtype=torch.float64)), labels.double(),
                               self.mu, self.nu)
            P = labels.double() @ W.T + (self.eta / self.mu) * u.double()
            new, _ = dcc(torch.zeros_like(P), P, W, self.dcc_iter)
            self.W.copy_(W.to(self.W.dtype))
            self.B[indices] = new.to(self.B.dtype)
            self.coded[indices] = True
            return new.to(codes.dtype)
        fresh = indices[~self.coded[indices]]
        if len(fresh):  # before the first discrete step: b_i = sign(u_i) when first seen
            first = ~self.coded[indices]
            self.B[fresh] = _sign(u[first], torch.ones_like(u[first])).to(self.B.dtype)
            self.coded[fresh] = True
        return self.B[indices].to(codes.dtype)

    def forward(self, codes, labels, indices=None, tuples=None, ref=None) -> dict[str, torch.Tensor]:
        if ref is None or indices is None or not hasattr(self, "B"):
            raise HashbenchError("the dsdh loss needs begin(train_labels, n_bits) first, the batch's "
                                 "training-set rows and the bank of training outputs (ref)")
        b = self._targets(codes, labels, indices)
        s = self.similarity(labels, ref.labels).to(codes.dtype)
        theta = 0.5 * codes @ ref.codes.T
        nll = F.softplus(theta) - s * theta
        others = self_mask(indices, ref.indices)
        n = len(ref.codes)
        pairs = 2.0 * torch.where(others, nll, torch.zeros_like(nll)).sum(dim=1) / n
        quant = (b - codes).pow(2).sum(dim=1) / n
        fit = (labels.to(codes.dtype) - b @ self.W.to(codes.dtype)).pow(2).sum(dim=1) / n
        likelihood, quantization = reduce(pairs, self.reduction), reduce(quant, self.reduction)
        return dict(loss=likelihood + self.eta * quantization, likelihood=likelihood.detach(),
                    quantization=quantization.detach(), classification=reduce(fit, self.reduction).detach())

    @torch.no_grad()
    def discrete_step(self, U: torch.Tensor, Y: torch.Tensor) -> int:
        """The paper's W-step then B-step over the whole training set (``U``, ``Y``: (n, K), (n, C));
        the first one fits W on the rows seen so far. Returns the number of DCC sweeps run."""
        rows = None if bool(self.coded.all()) else self.coded
        if rows is not None and not bool(rows.any()):
            return 0  # nothing seen yet: no codes to fit W on
        B, W, run = discrete_step(self.B, U, Y, self.mu, self.nu, self.eta, self.dcc_iter, rows=rows)
        self.B.copy_(B.to(self.B.dtype))
        self.W.copy_(W.to(self.W.dtype))
        self.coded.fill_(True)
        return run


# ------------------------------------------------------------------------------ the method
@METHODS.register_module(name="dsdh")
class DSDH(DeepMethod):
    """Deep Supervised Discrete Hashing (NeurIPS 2017): pairwise likelihood + classifier on discrete codes (DCC)."""

    family = "pairwise"

    def __init__(self, n_bits: int, *, mu: float = 1.0, nu: float = 0.1, eta: float = 55.0, dcc_iter: int = 10,
                 update: str = "epoch", similarity: str = "binary", reduction: str = "mean",
                 relaxation: str = "identity", bypass: bool = False, lr_mult: dict | None = None,
                 head_lr_drop: float | None = None):
        super().__init__(
            n_bits, loss=dict(type="dsdh", mu=mu, nu=nu, eta=eta, dcc_iter=dcc_iter, update=update,
                              similarity=similarity, reduction=reduction),
            relaxation=relaxation, bypass=bypass, lr_mult=lr_mult, head_lr_drop=head_lr_drop)
        self.loss = TrainingSetBank(self.loss)  # every sample against the whole training set
        self.sweeps = 0  # DCC sweeps of the last discrete step (for inspection)

    @property
    def discrete(self) -> DSDHLoss:
        """The loss that keeps B and W (inside the bank)."""
        return self.loss.inner

    def begin(self, split) -> None:
        super().begin(split)  # the bank of outputs
        self.discrete.begin(torch.as_tensor(split.labels, dtype=torch.float32), self.n_bits)

    def on_epoch_end(self, epoch: int, epochs: int) -> None:
        """The paper's outer iteration: W by its closed form, then B by DCC (``update="epoch"``)."""
        if self.discrete.update == "epoch":
            self.sweeps = self.discrete.discrete_step(self.loss.bank, self.loss.bank_labels)
