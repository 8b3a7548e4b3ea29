"""Checking and converting what users pass to the metrics: codes, labels, tie policies.

Codes arrive as numpy arrays or torch tensors of shape (n, bits) with values in {0, 1}, {-1, +1}
or bool; labels as multi-hot (n, classes) with values in {0, 1}. Everything here turns them into
bits (bool arrays, bit 1 where the code is positive) and, for the CPU path, into little-endian
uint64 words so that a Hamming distance is ``popcount(a ^ b)`` and a shared-label count is
``popcount(a & b)``. Mistakes are reported as one-line :class:`HashbenchError` messages.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from hashbench.errors import HashbenchError, suggest

TIE_POLICIES = ("expected", "index", "random:SEED")


def is_torch(x) -> bool:
    """True for a torch tensor (checked without importing torch)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "device")


def is_cuda(x) -> bool:
    return is_torch(x) and x.device.type == "cuda"


def _shape(x) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


def _describe(x) -> str:
    kind = "tensor" if is_torch(x) else "array"
    return f"{kind} of shape {_shape(x)} and dtype {x.dtype}"


def as_array(x, what: str):
    """``x`` as a numpy array or torch tensor, refusing anything that is not 2-D."""
    if not is_torch(x) and not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception:  # pragma: no cover - numpy refuses very little
            raise HashbenchError(f"{what} must be an array or tensor; got {type(x).__name__}")
    if x.ndim != 2:
        raise HashbenchError(f"{what} must be 2-D (n, bits or classes); got {_describe(x)}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise HashbenchError(f"{what} is empty; got {_describe(x)}")
    return x


def code_bits(x, what: str):
    """Bits of a code matrix: bool of the same shape, True where the code is 1 (or +1).

    Accepts {0, 1}, {-1, +1} (any integer or float dtype) and bool; anything else is refused,
    naming the first offending value.
    """
    x = as_array(x, what)
    if is_torch(x):
        import torch

        if x.dtype == torch.bool:
            return x
        if x.is_complex():
            raise HashbenchError(f"{what} must hold {{0, 1}} or {{-1, +1}}; got {_describe(x)}")
        zero_one = ((x == 0) | (x == 1)).all().item()
        if not zero_one and not ((x == -1) | (x == 1)).all().item():
            bad = x[(x != 0) & (x != 1) & (x != -1)]
            shown = bad[0].item() if bad.numel() else "a mix of 0 and -1"
            raise HashbenchError(f"{what} must hold {{0, 1}} or {{-1, +1}} (or bool); found "
                                 f"{shown} in {_describe(x)}")
        return x > 0
    if x.dtype == bool:
        return x
    if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)):
        raise HashbenchError(f"{what} must hold {{0, 1}} or {{-1, +1}}; got {_describe(x)}")
    if np.issubdtype(x.dtype, np.unsignedinteger):
        if x.max() <= 1:
            return x.astype(bool)
        raise HashbenchError(
            f"{what} must hold {{0, 1}} or {{-1, +1}} (or bool); found {x.max()} in {_describe(x)}")
    else:
        zero_one = bool(((x == 0) | (x == 1)).all())
    if not zero_one and not bool(((x == -1) | (x == 1)).all()):
        bad = x[(x != 0) & (x != 1) & (x != -1)]
        shown = bad.flat[0] if bad.size else "a mix of 0 and -1"
        raise HashbenchError(
            f"{what} must hold {{0, 1}} or {{-1, +1}} (or bool); found {shown} in {_describe(x)}")
    return x > 0


def label_matrix(y, what: str):
    """A multi-hot label matrix, checked to hold only 0 and 1 (any integer, bool or float dtype)."""
    y = as_array(y, what)
    if is_torch(y):
        import torch

        if y.dtype == torch.bool:
            return y
        ok = ((y == 0) | (y == 1)).all().item()
    elif y.dtype == bool:
        return y
    elif np.issubdtype(y.dtype, np.unsignedinteger):
        ok = bool(y.max() <= 1)
    elif np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.floating):
        ok = bool(((y == 0) | (y == 1)).all())
    else:
        ok = False
    if not ok:
        raise HashbenchError(
            f"{what} must be multi-hot with values in {{0, 1}}; got {_describe(y)}")
    return y


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a bool matrix (n, b) into little-endian uint64 words of shape (n, ceil(b / 64))."""
    bits = np.ascontiguousarray(bits, dtype=bool)
    n, b = bits.shape
    words = -(-b // 64)
    packed = np.packbits(bits, axis=1, bitorder="little")
    out = np.zeros((n, words * 8), np.uint8)
    out[:, : packed.shape[1]] = packed
    return out.view("<u8").astype(np.uint64, copy=False)


def to_numpy(x) -> np.ndarray:
    if is_torch(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


@dataclass(frozen=True)
class Ties:
    """A parsed tie policy: ``expected``, ``index`` or ``random`` with its seed."""

    policy: str
    seed: int = 0

    def __str__(self) -> str:
        return f"random:{self.seed}" if self.policy == "random" else self.policy


def parse_ties(ties) -> Ties:
    """``"expected"``, ``"index"`` or ``"random:SEED"`` (SEED a non-negative integer)."""
    if isinstance(ties, Ties):
        return ties
    text = str(ties).strip().lower()
    if text in ("expected", "index"):
        return Ties(text)
    match = re.fullmatch(r"random:(\d+)", text)
    if match:
        return Ties("random", int(match.group(1)) & 0xFFFFFFFF)
    hint = " (give a seed, e.g. 'random:0')" if text.startswith("random") else ""
    raise HashbenchError(
        f"unknown tie policy {ties!r}{hint}; valid: {', '.join(suggest(text, TIE_POLICIES))}")


def check_choice(name: str, value, valid: tuple[str, ...]) -> str:
    if value not in valid:
        raise HashbenchError(
            f"unknown {name} {value!r}; valid: {', '.join(suggest(str(value), valid))}")
    return value
