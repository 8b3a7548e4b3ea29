"""DFH — Push for Quantization: Deep Fisher Hashing (Yunqiang Li, Wenjie Pei, Yufei Zha, Jan van
Gemert; BMVC 2019, arXiv 1909.00206).

The network outputs real values u_i (no squashing). Besides them DFH keeps binary codes b_i in
{-1, +1}^K for the batch and binary class centres c_1..c_C in {-1, +1}^K, and optimises them in
turn at every step:

- pairs with a margin (the "push"): with Omega_ij = 1/2 u_i . u_j and s_ij in {0, 1},

      p(s_ij = 1) = sigmoid(Omega_ij - m),   p(s_ij = 0) = 1 - sigmoid(Omega_ij + m)
      l_ij = s_ij * log(1 + exp(m - Omega_ij)) + (1 - s_ij) * log(1 + exp(m + Omega_ij))

  so similar pairs are pushed beyond +m and dissimilar ones below -m (m = 0 is DPSH's likelihood);
- Fisher's criterion in the binary space: each code should be close to the centre of its class
  (within-class term ||B - C Y||^2) and the centres far apart (between-class term
  nu * sum_{k != l} c_k . c_l);
- quantisation: eta * ||b_i - u_i||^2 ties the outputs to the binary codes.

One step on a batch (the released code, ``Main.py``, in this order):

1. B-step: ``b_i = sgn(u_i + mu * C ybar_i)`` with the centres as they are;
2. C-step: one discrete cyclic coordinate descent sweep over the classes (``center.py``,
   ``Discretecenter``) on the batch: for k = 1..C,
   ``c_k = sgn(q_k - sum_{l != k} G_lk c_l - nu * sum_{l != k} c_l)`` with ``q_k = sum_i ybar_ik b_i``
   and ``G = Ybar^T Ybar``; each update minimises ``||B - Ybar C||^2 + nu sum_{k != l} c_k . c_l``
   over c_k with the others fixed, so the sweep never increases it (:func:`dcc_centres`);
3. U-step, the network's loss with b fixed: ``mean_j l_ij + eta * mean_k (b_ik - u_ik)^2`` per
   anchor i, the batch loss the mean over anchors (``reduction="sum"`` sums).

sgn gives +1 where its argument is > 0 and -1 elsewhere (the encoding threshold). In the C-step an
argument within 1e-9 of zero is a tie (both values give the same objective): the bit keeps its
value (-1 if it has none yet), so that the update does not depend on the order of the batch —
every process of a distributed run, and one process on the same global batch, get the same centres.

Pairs (``pairs``): ``"dataset"`` (default, the released code's): each batch item against the last
output of every other training sample (a bank, :class:`~hashbench.methods.dpsh.TrainingSetBank`,
written with the batch's outputs first); the bank is constant, so the gradient flows through the
batch side only, as in the release; mean over the n - 1 partners (the release averages over all n,
itself included). ``"batch"``: the ordered in-batch pairs i != j.

Multi-label data, as the authors' released code does it for MS-COCO: s_ij = 1 when the two images
share a label (the shared ``binary`` similarity), and the class term uses each item's label vector
divided by its label count, ybar_i = y_i / |y_i|_1 ("multi-label process" in ``Main.py``), so an
image's code is pulled towards the mean of its classes' centres.

The centres are a buffer of the method (saved in checkpoints), zero until the first C-step (the
release starts them at zero), and a deterministic function of the global batches seen, so
distributed training keeps them identical on every process. No random state is used.

Constants:

- margin m = 3: the paper's pairwise loss has a margin; the authors' own release (MS-COCO) keeps the
  margin line commented out and sets ``margin = 0`` (``method.margin=0`` gives that), and
  m = 3 is the value of the re-implementation the authors' README points to as training code
  (swuxyj/DeepHash-pytorch, ``DFH.py``), which the paper's margin formulation is written for;
- eta = 0.5: weight of the quantisation term (released code, and the re-implementation);
- mu = 1: weight of the class centres in the B-step (released code; the re-implementation 0.1);
- nu = 1: weight of the between-class term in the C-step (``vul`` in both);
- the C-step is the released code's discrete one (its relaxed alternative, gradient descent on
  real centres, is commented out there and not provided);
- linear outputs (identity relaxation), no bypass, one learning rate for all layers (the release
  trains AlexNet and its hash layer with one SGD rate).

log(1 + exp(x)) is computed as softplus(x) (the release clamps Omega to [-100, 50] instead).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from hashbench.errors import HashbenchError
from hashbench.losses import HashLoss, not_self, reduce, self_mask, unit_similarity
from hashbench.method import DeepMethod
from hashbench.methods.dpsh import TrainingSetBank
from hashbench.params import Interval, Options
from hashbench.registry import LOSSES, METHODS

PAIRS = ("dataset", "batch")
TIE = 1e-9  # |argument| below this in the C-step: a tie, the bit keeps its value

_CONSTRAINTS = {
    "margin": [Interval(float, 0, None)],
    "eta": [Interval(float, 0, None)],
    "mu": [Interval(float, 0, None)],
    "nu": [Interval(float, 0, None)],
    "reduction": [Options("mean", "sum")],
}


def _sgn(x: torch.Tensor) -> torch.Tensor:
    """+1 where x > 0, -1 elsewhere."""
    return torch.where(x > 0, 1.0, -1.0).to(x.dtype)


def class_weights(labels: torch.Tensor) -> torch.Tensor:
    """ybar_i = y_i / |y_i|_1 (rows of zeros stay zero); shape of ``labels``."""
    return labels / labels.sum(dim=1, keepdim=True).clamp_min(1)


def centre_objective(ybar: torch.Tensor, b: torch.Tensor, centres: torch.Tensor, nu: float) -> torch.Tensor:
    """||B - Ybar C||_F^2 + nu * sum_{k != l} c_k . c_l, the C-step's objective (a scalar)."""
    within = (b - ybar @ centres).pow(2).sum()
    total = centres.sum(dim=0)
    between = total.pow(2).sum() - centres.pow(2).sum()  # sum over k != l of c_k . c_l
    return within + nu * between


def dcc_centres(ybar: torch.Tensor, b: torch.Tensor, centres: torch.Tensor, nu: float) -> torch.Tensor:
    """One discrete cyclic coordinate descent sweep over the class centres (the C-step).

    ``ybar`` (B, C) class weights of the batch, ``b`` (B, K) its binary codes, ``centres`` (C, K)
    in {-1, 0, +1} (0: not yet set). Returns new centres (C, K) in {-1, +1}, same dtype; computed
    in float64. Class k, in order, takes ``sgn(q_k - sum_{l != k} G_lk c_l - nu sum_{l != k} c_l)``
    with the classes before it already updated; a tie keeps the bit (or -1 if it was 0).
    """
    y, codes = ybar.double(), b.double()
    c = centres.double().clone()
    q = y.T @ codes  # (C, K): sum_i ybar_ik b_i
    g = y.T @ y  # (C, C)
    for k in range(len(c)):
        rest = torch.ones(len(c), dtype=torch.bool, device=c.device)
        rest[k] = False
        arg = q[k] - g[rest, k] @ c[rest] - nu * c[rest].sum(dim=0)
        keep = torch.where(c[k] != 0, c[k], torch.full_like(c[k], -1.0))
        c[k] = torch.where(arg > TIE, 1.0, torch.where(arg < -TIE, -1.0, keep))
    return c.to(centres.dtype)


@LOSSES.register_module(name="dfh")
class DFHLoss(HashLoss):
    """DFH's step on a batch: B-step, C-step (the centres, a buffer) and the margin pair loss plus
    eta * quantisation for the network.

    Parameters
    ----------
    margin : float
        m: similar pairs are pushed to Omega > m, dissimilar ones to Omega < -m.
    eta : float
        Weight of the quantisation term mean_k (b_k - u_k)^2.
    mu : float
        Weight of the class centres in the B-step, b = sgn(u + mu * C ybar).
    nu : float
        Weight of the between-class term in the C-step.
    similarity : str
        How labels become s_ij; values in [0, 1] (``binary``, the released code's; ``cosine``).
    reduction : {"mean", "sum"}
        Over anchors of the batch.

    ``begin(labels, n_bits)`` makes the (C, K) centres (zero). Without ``ref``, every ordered
    in-batch pair; with a reference set (the bank of :class:`TrainingSetBank`), each batch item
    against every reference item that is not itself. Returns ``loss`` and the detached terms
    ``pairs`` and ``quantization`` (``loss = pairs + eta * quantization``).
    """

    takes = frozenset({"ref"})
    _parameter_constraints = dict(_CONSTRAINTS)

    def __init__(self, *, margin: float = 3.0, eta: float = 0.5, mu: float = 1.0, nu: float = 1.0,
                 similarity: str = "binary", reduction: str = "mean"):
        super().__init__()
        self.margin, self.eta, self.mu, self.nu = float(margin), float(eta), float(mu), float(nu)
        self.reduction = reduction
        self.similarity_name = similarity
        self.similarity = unit_similarity(similarity, "dfh")

    def begin(self, labels: torch.Tensor, n_bits: int) -> None:
        labels = torch.as_tensor(labels, dtype=torch.float32)
        self.register_buffer("centres", labels.new_zeros(labels.shape[1], n_bits))

    def binary_codes(self, codes: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The B-step: b = sgn(u + mu * C ybar) with the current centres; (B, K), no gradient."""
        ybar = class_weights(labels.to(codes.dtype))
        return _sgn(codes.detach() + self.mu * ybar @ self.centres.to(codes.dtype))

    def forward(self, codes, labels, indices=None, tuples=None, ref=None) -> dict[str, torch.Tensor]:
        if not hasattr(self, "centres"):
            raise HashbenchError("dfh's loss needs begin(train_labels, n_bits) first (it keeps class centres)")
        if labels.shape[1] != self.centres.shape[0] or codes.shape[1] != self.centres.shape[1]:
            raise HashbenchError(f"dfh: the batch has {labels.shape[1]} labels and {codes.shape[1]} bits; its "
                                 f"centres were made for {self.centres.shape[0]} labels and {self.centres.shape[1]}")
        with torch.no_grad():
            b = self.binary_codes(codes, labels)  # B-step
            # float64 weights: a tie in exact arithmetic stays a tie up to rounding of the sums
            self.centres.copy_(dcc_centres(class_weights(labels.double()), b, self.centres, self.nu))  # C-step
        # U-step
        if ref is None:
            partners, partner_labels = codes, labels
            others = not_self(len(codes), torch.arange(len(codes), device=codes.device))
        else:
            partners, partner_labels = ref.codes, ref.labels
            others = self_mask(indices, ref.indices)
        s = self.similarity(labels, partner_labels).to(codes.dtype)
        omega = 0.5 * codes @ partners.T
        pair = s * F.softplus(self.margin - omega) + (1 - s) * F.softplus(self.margin + omega)
        count = others.sum(dim=1).clamp_min(1).to(codes.dtype)
        pairs = torch.where(others, pair, torch.zeros_like(pair)).sum(dim=1) / count
        quant = (b - codes).pow(2).mean(dim=1)
        pairs, quantization = reduce(pairs, self.reduction), reduce(quant, self.reduction)
        return dict(loss=pairs + self.eta * quantization, pairs=pairs.detach(), quantization=quantization.detach())


class _FisherBank(TrainingSetBank):
    """The training-set bank of DPSH around DFH's loss, which also learns the labels (its centres)."""

    def begin(self, labels: torch.Tensor, n_bits: int) -> None:
        super().begin(labels, n_bits)
        self.inner.begin(labels, n_bits)


@METHODS.register_module(name="dfh")
class DFH(DeepMethod):
    """Deep Fisher Hashing (BMVC 2019): margin pairwise likelihood, binary class centres (Fisher), quantisation."""

    family = "pairwise"
    _parameter_constraints = dict(_CONSTRAINTS, pairs=[Options(*PAIRS)])

    def __init__(self, n_bits: int, *, margin: float = 3.0, eta: float = 0.5, mu: float = 1.0, nu: float = 1.0,
                 similarity: str = "binary", reduction: str = "mean", pairs: str = "dataset",
                 relaxation: str = "identity", bypass: bool = False, lr_mult: dict | None = None,
                 head_lr_drop: float | None = None):
        if pairs not in PAIRS:
            raise HashbenchError(f"dfh: unknown pairs {pairs!r}; valid: {', '.join(PAIRS)}")
        super().__init__(
            n_bits, loss=dict(type="dfh", margin=margin, eta=eta, mu=mu, nu=nu, similarity=similarity,
                              reduction=reduction),
            relaxation=relaxation, bypass=bypass, lr_mult=lr_mult, head_lr_drop=head_lr_drop)
        self.pairs = pairs
        if pairs == "dataset":  # the released code's: every sample against the whole training set
            self.loss = _FisherBank(self.loss)

    @property
    def fisher(self) -> DFHLoss:
        """DFH's own loss (inside the bank with ``pairs="dataset"``)."""
        return self.loss.inner if isinstance(self.loss, TrainingSetBank) else self.loss
