"""DPN — Deep Polarized Network (Lixin Fan, Kam Woh Ng, Ce Ju, Tianyu Zhang, Chee Seng Chan; IJCAI 2020,
"Deep Polarized Network for Supervised Learning of Accurate Binary Hashing Codes", IJCAI proceedings
2020/115, pp. 825-831; no arXiv version).

Each class c gets a fixed target code t_c in {-1, +1}^K; the network's real outputs v_i (no
squashing; the binary code is sign(v_i)) are pushed bit by bit to the far side of zero that their
class's target code names, by the *polarisation loss*

    L_p(v, t) = sum_k max(m - v_k * t_k, 0)

a hinge on every bit with margin m: zero once v_k has t_k's sign and |v_k| >= m. The paper shows
this point-wise loss bounds from above the pairwise Hamming-distance losses, so random target codes
suffice.

Multi-label items (``targets``). With labels y_i (multi-hot, C classes):

- ``targets="per_label"`` (default; the authors' released code, kamwoh/DPN
  ``scripts/train_hashing.py``, ``calculate_loss`` with ``multiclass``, and the same group's FIRe
  ``functions/loss/dpn.py``): the item is polarised towards the target code of every one of its
  labels, L_i = sum_c y_ic * L_p(v_i, t_c). Where two of its labels' codes disagree on a bit, the
  two hinges pull that bit both ways.
- ``targets="combined"`` (swuxyj/DeepHash-pytorch ``DPN.py``, which takes it from CSQ): one target
  per item, t_i = sign(sum_c y_ic t_c), a bit where the sum is 0 taken from a fixed random code r
  (drawn with the class codes); L_i = L_p(v_i, t_i).

For single-label items both are the paper's L_p(v_i, t_{y_i}). An item with no label contributes
0 with ``per_label`` and is pulled to r with ``combined``.

The batch loss is the mean over items (``reduction="sum"`` sums) of L_i + reg * (1/K) sum_k v_ik^2.

Target codes (``codebook``), drawn once in ``begin`` from torch's global RNG (the trainer seeds it
with the run seed, the same on every process) and kept as a buffer (saved in checkpoints):

- ``"bernoulli"`` (default): every bit +1 or -1 with probability 1/2, independently — the authors'
  code's default ``--centroid-method N`` (sign of a standard normal draw), the same distribution as
  its ``B`` (Bernoulli(0.5)); the paper's random assignment.
- ``"maxhd"``: the authors' code's ``O`` (``get_centroid``): random codes accepted only if their
  normalised Hamming distance to every code accepted before is at least d, d starting at 0.61 and
  lowered by 0.01 after each 10,000 rejected draws (refused below 0.2), rows shuffled at the end.

Constants and defaults:

- margin m = 1: the authors' released code (``main.py``, ``--margin`` default 1.0; its README: the
  defaults are those that give the paper's figures); OrthoHash's supplementary Table 1 (same
  group) lists DPN with m = 1.
- sum over the K bits, mean over the batch: the authors' code (DeepHash-pytorch averages over bits
  too, a rescaling by 1/K).
- reg = 0: weight of the output regulariser mean_k v_k^2, the authors' code's ``--reg`` default 0.0
  (FIRe's DPN template sets 0.1: ``method.reg=0.1``).
- identity relaxation (v is the hash layer's linear output, as in the authors' code), no bypass,
  one learning rate for every layer (the authors' code puts all parameters in one SGD group).

Not included: the authors' code's optional softmax/BCE classifier on the backbone features
(``--ce``, default 0), its adaptive re-estimation of the target codes (``--centroid-update-time``,
default 0, i.e. off) and the paper's ternary encoding (a third state 0 for |v_k| < m), which has
no place in binary codes.

The loss keeps no state but its fixed codes, so data-parallel training needs nothing more: the
codes are the same on every process and the loss is computed on the global batch.
"""
from __future__ import annotations

import torch

from hashbench.errors import HashbenchError
from hashbench.losses import HashLoss, reduce
from hashbench.method import DeepMethod
from hashbench.params import Interval, Options
from hashbench.registry import LOSSES, METHODS

CODEBOOKS = ("bernoulli", "maxhd")
TARGETS = ("per_label", "combined")

# MaxHD search (the authors' ``get_centroid``): start, floor and step of the distance threshold
# (as fractions of K) and the number of rejected draws before each step down.
MAXHD_START, MAXHD_FLOOR, MAXHD_STEP, MAXHD_TRIES = 0.61, 0.2, 0.01, 10000


def random_signs(*shape: int) -> torch.Tensor:
    """A float tensor of independent ±1 entries, each +1 with probability 1/2 (torch's global RNG)."""
    return torch.randint(0, 2, shape).to(torch.float32).mul_(2).sub_(1)


def maxhd_codes(n_classes: int, n_bits: int, *, start: float = MAXHD_START, floor: float = MAXHD_FLOOR,
                step: float = MAXHD_STEP, tries: int = MAXHD_TRIES, chunk: int = 4096) -> torch.Tensor:
    """(C, K) ±1 codes with a large minimum pairwise Hamming distance, by greedy random search.

    A random code is kept if its Hamming distance / K to every code kept so far is at least d;
    d starts at ``start`` and drops by ``step`` after every ``tries`` rejected draws; below
    ``floor`` the search gives up. Candidates are drawn ``chunk`` at a time (torch's global RNG)
    and taken in order. The rows are shuffled at the end.
    """
    codes = torch.empty(n_classes, n_bits)
    filled, rejected, threshold = 0, 0, start
    while filled < n_classes:
        candidates = random_signs(chunk, n_bits)
        if filled == 0:
            ok = torch.ones(chunk, dtype=torch.bool)
        else:
            distance = 0.5 * (n_bits - candidates @ codes[:filled].T) / n_bits  # (chunk, filled)
            ok = (distance >= threshold - 1e-9).all(dim=1)
        first = int(ok.to(torch.int8).argmax()) if bool(ok.any()) else chunk
        budget = tries - rejected
        if first < budget and first < chunk:
            rejected += first
            codes[filled] = candidates[first]
            filled += 1
        else:
            rejected += min(first, budget)
            if rejected >= tries:
                rejected, threshold = 0, threshold - step
                if threshold < floor - 1e-9:
                    raise HashbenchError(
                        f"codebook 'maxhd': found no {n_classes} codes of {n_bits} bits at normalised Hamming "
                        f"distance >= {floor:g}; use codebook=bernoulli or more bits")
    return codes[torch.randperm(n_classes)]


def class_codewords(n_classes: int, n_bits: int, codebook: str) -> torch.Tensor:
    """(C, K) float ±1 codes, one per class, drawn from torch's global RNG."""
    if codebook == "bernoulli":
        return random_signs(n_classes, n_bits)
    if codebook == "maxhd":
        return maxhd_codes(n_classes, n_bits)
    raise HashbenchError(f"unknown codebook {codebook!r}; valid: {', '.join(CODEBOOKS)}")


def _check_option(owner: str, name: str, value, valid: tuple) -> None:
    if value not in valid:
        raise HashbenchError(f"{owner}: unknown {name} {value!r}; valid: {', '.join(valid)}")


def _check_at_least(owner: str, name: str, value, low: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low or value != value:
        raise HashbenchError(f"{owner}: {name} must be a number >= {low:g}; got {value!r}")
    return float(value)


@LOSSES.register_module(name="dpn")
class DPNLoss(HashLoss):
    """DPN's bit-wise polarisation hinge towards fixed per-class target codes, plus reg * mean v^2.

    Parameters
    ----------
    margin : float
        m of the hinge max(m - v_k t_k, 0), >= 0.
    reg : float
        Weight of the output regulariser (1/K) sum_k v_k^2, >= 0.
    targets : {"per_label", "combined"}
        Multi-label handling (module docstring).
    codebook : {"bernoulli", "maxhd"}
        How :meth:`begin` draws the class codes.
    reduction : {"mean", "sum"}
        Over the items of the batch.

    ``codes`` (B, K) are the real outputs v; ``labels`` (B, C) multi-hot, C the number of classes
    seen in :meth:`begin`. Returns ``loss`` and the detached terms ``polarization`` and
    ``regularizer`` (reduced the same way, so ``loss = polarization + reg * regularizer``).
    """

    _parameter_constraints = {"margin": [Interval(float, 0, None)], "reg": [Interval(float, 0, None)],
                              "targets": [Options(*TARGETS)], "codebook": [Options(*CODEBOOKS)],
                              "reduction": [Options("mean", "sum")]}

    def __init__(self, *, margin: float = 1.0, reg: float = 0.0, targets: str = "per_label",
                 codebook: str = "bernoulli", reduction: str = "mean"):
        super().__init__()
        self.margin = _check_at_least("dpn", "margin", margin, 0.0)
        self.reg = _check_at_least("dpn", "reg", reg, 0.0)
        _check_option("dpn", "targets", targets, TARGETS)
        _check_option("dpn", "codebook", codebook, CODEBOOKS)
        _check_option("dpn", "reduction", reduction, ("mean", "sum"))
        self.targets, self.codebook, self.reduction = targets, codebook, reduction

    def begin(self, labels: torch.Tensor, n_bits: int) -> None:
        """Draw the (C, K) class codes (and the tie-break code r) from torch's global RNG."""
        self.register_buffer("codewords", class_codewords(int(labels.shape[1]), n_bits, self.codebook))
        if self.targets == "combined":
            self.register_buffer("tie_break", random_signs(n_bits))

    def item_targets(self, labels: torch.Tensor) -> torch.Tensor:
        """``combined`` targets (B, K): sign(y_i @ T), zero bits taken from the tie-break code r."""
        total = labels @ self.codewords.to(labels.dtype)
        total = torch.where(total == 0, self.tie_break.to(labels.dtype).expand_as(total), total)
        return torch.where(total > 0, 1.0, -1.0).to(labels.dtype)

    def forward(self, codes, labels, indices=None, tuples=None, ref=None) -> dict[str, torch.Tensor]:
        if not hasattr(self, "codewords"):
            raise HashbenchError("dpn: the class target codes are made in begin(train_labels, n_bits); call it first")
        if labels.shape[1] != self.codewords.shape[0] or codes.shape[1] != self.codewords.shape[1]:
            raise HashbenchError(f"dpn: got {labels.shape[1]} labels and {codes.shape[1]} bits; the target codes "
                                 f"are for {self.codewords.shape[0]} classes of {self.codewords.shape[1]} bits")
        labels = labels.to(codes.dtype)
        if self.targets == "per_label":
            t = self.codewords.to(codes.dtype)  # (C, K)
            hinge = torch.relu(self.margin - codes[:, None, :] * t[None, :, :]).sum(dim=2)  # (B, C)
            polar = (hinge * labels).sum(dim=1)
        else:
            polar = torch.relu(self.margin - codes * self.item_targets(labels)).sum(dim=1)
        regular = codes.pow(2).mean(dim=1)
        polarization, regularizer = reduce(polar, self.reduction), reduce(regular, self.reduction)
        return dict(loss=polarization + self.reg * regularizer, polarization=polarization.detach(),
                    regularizer=regularizer.detach())


@METHODS.register_module(name="dpn")
class DPN(DeepMethod):
    """Deep Polarized Network (IJCAI 2020): bit-wise hinge max(m - v t, 0) towards random per-class codes."""

    family = "pointwise"
    _parameter_constraints = {"margin": [Interval(float, 0, None)], "reg": [Interval(float, 0, None)],
                              "targets": [Options(*TARGETS)], "codebook": [Options(*CODEBOOKS)],
                              "reduction": [Options("mean", "sum")]}

    def __init__(self, n_bits: int, *, margin: float = 1.0, reg: float = 0.0, targets: str = "per_label",
                 codebook: str = "bernoulli", reduction: str = "mean", relaxation: str = "identity",
                 bypass: bool = False, lr_mult: dict | None = None, head_lr_drop: float | None = None):
        super().__init__(n_bits, loss=dict(type="dpn", margin=margin, reg=reg, targets=targets, codebook=codebook,
                                           reduction=reduction),
                         relaxation=relaxation, bypass=bypass, lr_mult=lr_mult, head_lr_drop=head_lr_drop)
