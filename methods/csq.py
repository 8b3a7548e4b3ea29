"""CSQ — Central Similarity Quantization (Li Yuan, Tao Wang, Xiaopeng Zhang, Francis E. H. Tay, Zequn
Jie, Wei Liu, Jiashi Feng; CVPR 2020, "Central Similarity Quantization for Efficient Image and Video
Retrieval", arXiv 1908.00347).

Every class c gets a fixed *hash centre* c_c in {-1, +1}^K, far from the other classes' centres in
Hamming space. The network's outputs h_i = tanh(z_i) in (-1, 1)^K are pulled bit by bit towards
their item's centre by a binary cross-entropy, plus a quantisation term pulling |h| towards 1:

    L = 1/(B K) sum_{i,k} BCE( (h_ik + 1)/2 , (c_ik + 1)/2 )  +  lambda * 1/(B K) sum_{i,k} q(h_ik)

    BCE(p, t) = -[ t log p + (1 - t) log(1 - p) ]     (each log clamped at -100, as torch's BCELoss)
    q(h) = log cosh(|h| - 1)      (``quantization="logcosh"``: the paper's L_Q, written there with
                                    h in [0, 1] as log cosh(|2h - 1| - 1))
    q(h) = (|h| - 1)^2            (``quantization="square"``: the authors' released code,
                                    yuanli2333/Hadamard-Matrix-for-hashing ``train.py``, ``Q_loss``)

Both terms are averaged over the B x K entries, as the released code does (``nn.BCELoss`` and
``torch.mean``).

Hash centres (``centres``), made once in ``begin`` and kept as a buffer (saved in checkpoints):

- ``"hadamard"``: rows of the Sylvester Hadamard matrix H_K and of -H_K. Two different rows of H_K
  differ in exactly K/2 bits, and a row of H_K and a row of -H_K in K/2 bits too, except a row and
  its own negation (K bits). hashbench takes rows ``first_row`` .. ``first_row`` + C - 1 of
  [H_K; -H_K]: with the default ``first_row=0`` the first C rows, as the authors' tutorial
  (``Tutorial_ hash_center_generation.ipynb``) and their shipped ImageNet 64-bit centres do; their
  shipped NUS-WIDE 32/64-bit centres are rows 1..21 of H_K (the all-ones row left out):
  ``method.first_row=1``. Needs K a power of 2 and ``first_row`` + C <= 2K.
- ``"random"``: the paper's fallback when the Hadamard construction cannot give C centres. The
  paper draws every bit from Bernoulli(0.5); the authors' tutorial (and every random centre file
  they ship) gives each centre exactly floor(K/2) bits of -1 at uniformly random positions
  (``random_bits="balanced"``, the default, following the code; ``random_bits="bernoulli"`` for
  the paper's independent bits). A draw of all C centres is kept only if its minimum pairwise
  Hamming distance is at least ``min_distance`` and its mean pairwise distance at least K/2 (the
  tutorial stops at minimum >= 20 and mean >= 32 for K = 64; DeepHash-pytorch generalises that
  to minimum > K/4, following the authors' advice of a minimum between K/4 and K/3, their issue
  #1). Default ``min_distance``: the smallest integer above K/4. At most ``tries`` draws (default
  10,000, the tutorial's loop bound); if none passes, the draw with the largest minimum distance
  is kept, with a warning.
- ``"auto"`` (default): ``hadamard`` when it can give the C centres, else ``random`` — the paper's
  rule (Hadamard when K is a power of 2 and 2K >= C). (DeepHash-pytorch instead keeps the 2K
  Hadamard rows and draws only the remaining centres at random; not reproduced here.)

Random draws use torch's global RNG (``torch.rand``/``torch.randint``), which the trainer seeds with
the run seed before ``begin``: the centres are the same on every process of a DDP run.

Multi-label items: the item's centre is the sign of the sum of its labels' centres (the paper's
centroid of the centres, binarised; the released code's ``Hash_center_multilables`` takes the mean,
whose sign is the same); bits where that sum is 0 (a tie) take the bits of one random ±1 vector
drawn once in ``begin`` and used for every item and step (the released code's ``random_center``,
drawn once at start-up; DeepHash-pytorch does the same). An item of one label gets its label's
centre; an item with no label gets the tie vector (the released code would divide by zero there).

Constants and defaults:

- lambda = 1e-4 with ``quantization="logcosh"``: the paper's (the value DeepHash-pytorch's CSQ
  configuration uses alongside the paper's results; the paper's text could not be re-read in this
  environment). The released code's README commands use ``--lambda2 0.05`` with ResNet-50 (and
  0.001 or 0.0001 with AlexNet) on its squared term: ``method.quantization=square
  method.quant_weight=0.05``.
- The released code's optional pairwise term (``--lambda1``, HashNet-style) is 0 in every command
  of its README and absent from the paper's final loss: not included.
- tanh relaxation (the released hash layer ends in ``nn.Tanh``), no bypass connection.
- learning rates: the released code trains the backbone at ``multi_lr`` x the hash layer's rate,
  with ``--multi_lr 0.05`` in its README commands for the multi-label datasets (COCO, NUS-WIDE)
  and the default 0.01 otherwise; hashbench's base rate is the backbone's, so the hash layer gets
  ``lr_mult={"head.": 20.0}`` (1 / 0.05; ``method.lr_mult="{'head.': 100.0}"`` for 0.01). The
  code's optimiser (Adam, lr 1e-3 for the hash layer, x0.7 every 10 epochs) is hashbench's
  ``train`` section.

The loss's state is its fixed centres and tie vector only, and it is computed on the global batch
under DDP, so data-parallel training needs nothing more.
"""
from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F
from scipy.linalg import hadamard

from hashbench.errors import HashbenchError
from hashbench.losses import HashLoss
from hashbench.method import DeepMethod
from hashbench.params import Interval, Options, check
from hashbench.registry import LOSSES, METHODS

logger = logging.getLogger("hashbench.methods.csq")

CENTRES = ("auto", "hadamard", "random")
RANDOM_BITS = ("balanced", "bernoulli")
QUANTIZATIONS = ("logcosh", "square")
CONSTRAINTS = {
    "quant_weight": [Interval(float, 0, None)], "quantization": [Options(*QUANTIZATIONS)],
    "centres": [Options(*CENTRES)], "random_bits": [Options(*RANDOM_BITS)],
    "min_distance": [Interval(int, 0, None), None], "tries": [Interval(int, 1, None)],
    "first_row": [Interval(int, 0, None)],
}


def _checked(**values) -> dict:
    return {k: check(f"csq: {k}", v, CONSTRAINTS[k]) for k, v in values.items()}


def is_power_of_two(k: int) -> bool:
    return k >= 1 and k & (k - 1) == 0


def hadamard_centres(n_classes: int, n_bits: int, first_row: int = 0) -> torch.Tensor:
    """Rows ``first_row`` .. ``first_row + n_classes - 1`` of [H_K; -H_K] (Sylvester), as float ±1 (C, K)."""
    if not is_power_of_two(n_bits) or first_row + n_classes > 2 * n_bits:
        raise HashbenchError(
            f"csq: Hadamard centres need K a power of 2 and first_row + C <= 2K; got K={n_bits}, C={n_classes}, "
            f"first_row={first_row}; use centres=random (or auto)")
    h = torch.as_tensor(hadamard(n_bits), dtype=torch.float32)
    return torch.cat([h, -h])[first_row:first_row + n_classes].clone()


def pairwise_hamming(codes: torch.Tensor) -> torch.Tensor:
    """(C, C) Hamming distances between the ±1 rows of ``codes``."""
    return 0.5 * (codes.shape[1] - codes @ codes.T)


def default_min_distance(n_bits: int) -> int:
    """The smallest integer above K/4."""
    return n_bits // 4 + 1


def random_centres(n_classes: int, n_bits: int, *, bits: str = "balanced", min_distance: int | None = None,
                   tries: int = 10000) -> torch.Tensor:
    """(C, K) float ±1 centres drawn from torch's global RNG (module docstring, ``"random"``).

    ``bits="balanced"``: each row has exactly floor(K/2) bits -1 at random positions;
    ``"bernoulli"``: independent bits, -1 with probability 1/2. A draw is accepted when its minimum
    pairwise Hamming distance is >= ``min_distance`` (None: the smallest integer above K/4) and its
    mean pairwise distance >= K/2; otherwise draw again, at most ``tries`` times, then keep the draw
    with the largest minimum distance (then mean).
    """
    need = default_min_distance(n_bits) if min_distance is None else int(min_distance)
    best, best_key = None, None
    upper = torch.triu(torch.ones(n_classes, n_classes, dtype=torch.bool), diagonal=1)
    for _ in range(tries):
        if bits == "balanced":
            ranks = torch.rand(n_classes, n_bits).argsort(dim=1).argsort(dim=1)  # a random permutation per row
            codes = torch.where(ranks < n_bits // 2, -1.0, 1.0)
        else:
            codes = torch.randint(0, 2, (n_classes, n_bits)).to(torch.float32).mul_(2).sub_(1)
        if n_classes < 2:
            return codes
        d = pairwise_hamming(codes)[upper]
        low, mean = float(d.min()), float(d.mean())
        if low >= need and mean >= n_bits / 2:
            return codes
        if best_key is None or (low, mean) > best_key:
            best, best_key = codes, (low, mean)
    logger.warning("csq: no draw of %d random %d-bit centres in %d had minimum distance >= %d and mean >= %g; "
                   "keeping the best (minimum %g, mean %.2f)", n_classes, n_bits, tries, need, n_bits / 2,
                   best_key[0], best_key[1])
    return best


def hash_centres(n_classes: int, n_bits: int, *, centres: str = "auto", random_bits: str = "balanced",
                 min_distance: int | None = None, tries: int = 10000, first_row: int = 0) -> torch.Tensor:
    """The (C, K) float ±1 hash centres (module docstring)."""
    if centres == "auto":
        fits = is_power_of_two(n_bits) and first_row + n_classes <= 2 * n_bits
        centres = "hadamard" if fits else "random"
    if centres == "hadamard":
        return hadamard_centres(n_classes, n_bits, first_row)
    return random_centres(n_classes, n_bits, bits=random_bits, min_distance=min_distance, tries=tries)


def log_cosh(x: torch.Tensor) -> torch.Tensor:
    """log(cosh(x)), computed as |x| + softplus(-2|x|) - log 2 (finite for any x)."""
    a = x.abs()
    return a + F.softplus(-2 * a) - math.log(2.0)


@LOSSES.register_module(name="csq")
class CSQLoss(HashLoss):
    """CSQ's bit-wise cross-entropy towards each item's hash centre, plus lambda * quantisation.

    Parameters
    ----------
    quant_weight : float
        lambda, the weight of the quantisation term, >= 0.
    quantization : {"logcosh", "square"}
        q(h) = log cosh(|h| - 1) (the paper) or (|h| - 1)^2 (the released code).
    centres, random_bits, min_distance, tries, first_row
        How :meth:`begin` makes the hash centres (module docstring).

    ``codes`` (B, K) are relaxed codes h in [-1, 1] (tanh outputs); ``labels`` (B, C) multi-hot, C
    the number of labels seen in :meth:`begin`. Returns ``loss`` and the detached terms ``central``
    and ``quantization`` (so ``loss = central + quant_weight * quantization``).
    """

    _parameter_constraints = CONSTRAINTS

    def __init__(self, *, quant_weight: float = 1e-4, quantization: str = "logcosh", centres: str = "auto",
                 random_bits: str = "balanced", min_distance: int | None = None, tries: int = 10000,
                 first_row: int = 0):
        super().__init__()
        values = _checked(quant_weight=quant_weight, quantization=quantization, centres=centres,
                          random_bits=random_bits, min_distance=min_distance, tries=tries, first_row=first_row)
        self.quant_weight = float(values["quant_weight"])
        self.quantization, self.centre_kind = values["quantization"], values["centres"]
        self.random_bits, self.min_distance = values["random_bits"], values["min_distance"]
        self.tries, self.first_row = values["tries"], values["first_row"]

    def begin(self, labels: torch.Tensor, n_bits: int) -> None:
        """Make the (C, K) hash centres and the ±1 tie vector (torch's global RNG), as buffers."""
        centres = hash_centres(int(labels.shape[1]), n_bits, centres=self.centre_kind, random_bits=self.random_bits,
                               min_distance=self.min_distance, tries=self.tries, first_row=self.first_row)
        self.register_buffer("centres", centres)
        self.register_buffer("tie_bits", torch.randint(0, 2, (n_bits,)).to(torch.float32).mul_(2).sub_(1))

    def item_centres(self, labels: torch.Tensor) -> torch.Tensor:
        """(B, K) ±1 centres of items with multi-hot ``labels`` (B, C): sign of the sum of their labels'
        centres, zero sums taking the tie vector's bits."""
        total = labels.to(self.centres.dtype) @ self.centres
        total = torch.where(total == 0, self.tie_bits.expand_as(total), total)
        return torch.where(total > 0, 1.0, -1.0).to(self.centres.dtype)

    def forward(self, codes, labels, indices=None, tuples=None, ref=None) -> dict[str, torch.Tensor]:
        if not hasattr(self, "centres"):
            raise HashbenchError("csq: the hash centres are made in begin(train_labels, n_bits); call it first")
        if labels.shape[1] != self.centres.shape[0] or codes.shape[1] != self.centres.shape[1]:
            raise HashbenchError(f"csq: got {labels.shape[1]} labels and {codes.shape[1]} bits; the hash centres "
                                 f"are for {self.centres.shape[0]} labels of {self.centres.shape[1]} bits")
        target = (self.item_centres(labels).to(codes.dtype) + 1) / 2
        central = F.binary_cross_entropy((codes + 1) / 2, target)
        excess = codes.abs() - 1
        q = log_cosh(excess) if self.quantization == "logcosh" else excess.pow(2)
        quantization = q.mean()
        return dict(loss=central + self.quant_weight * quantization, central=central.detach(),
                    quantization=quantization.detach())


@METHODS.register_module(name="csq")
class CSQ(DeepMethod):
    """Central Similarity Quantization (CVPR 2020): bit-wise BCE towards Hadamard hash centres + quantisation."""

    family = "pointwise"
    _parameter_constraints = CONSTRAINTS

    def __init__(self, n_bits: int, *, quant_weight: float = 1e-4, quantization: str = "logcosh",
                 centres: str = "auto", random_bits: str = "balanced", min_distance: int | None = None,
                 tries: int = 10000, first_row: int = 0, bypass: bool = False, lr_mult: dict | None = None,
                 head_lr_drop: float | None = None):
        super().__init__(
            n_bits, loss=dict(type="csq", quant_weight=quant_weight, quantization=quantization, centres=centres,
                              random_bits=random_bits, min_distance=min_distance, tries=tries,
                              first_row=first_row),
            relaxation="tanh", bypass=bypass, lr_mult={"head.": 20.0} if lr_mult is None else lr_mult,
            head_lr_drop=head_lr_drop)
        if centres == "hadamard" and (not is_power_of_two(n_bits)):
            raise HashbenchError(f"csq: centres=hadamard needs n_bits a power of 2; got {n_bits}; "
                                 "use centres=random (or auto)")
