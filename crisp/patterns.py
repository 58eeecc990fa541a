"""Sparsity patterns as pure functions: scores in, boolean keep-mask out.

Every function takes a layer's weight scores as a 2-D ``[C_out, K]`` tensor, K ordered as PyTorch
flattens a conv weight (``(C_in/groups, kh, kw)``, kw fastest), and returns a bool mask of the same
shape (True = weight kept). The pruner and the simulator's synthetic masks both use these, so a
pattern means the same thing everywhere: the simulator uses their torch-free core,
`crisp.pattern_core` (numpy; the N:M kernel, the checks and the block arithmetic live there
and are re-exported here), and never imports torch.

- **N:M** (`nm_mask`): in every group of M consecutive weights along K, keep the N with the
  highest score. A tail group shorter than M (K not a multiple of M) keeps at most N.
- **Block** (`block_mask`): tile ``[C_out, K]`` into B x B blocks (edge blocks partial); a
  block's score is the sum of its weights' scores; every block-row (B consecutive output channels)
  keeps the same number of blocks, its top ones by score (balanced block sparsity).
- **Hybrid** (`hybrid_mask`): block mask AND N:M mask.

Ties are broken by position (the lower index wins), so masks are deterministic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from crisp import pattern_core
from crisp.errors import UserError
from crisp.pattern_core import check_block, check_nm

__all__ = [
    "bitmap_of", "block_bitmap", "block_mask", "block_scores", "blocks_to_keep", "check_block",
    "check_nm", "expand_blocks", "hybrid_mask", "nm_mask", "rank_scores",
]


def _as_matrix(scores: torch.Tensor) -> torch.Tensor:
    if scores.dim() != 2:
        raise UserError(f"scores must be a [C_out, K] matrix, got shape {tuple(scores.shape)}")
    return scores.detach().to(torch.float64)


def _top_k_mask(values: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask keeping the ``k`` largest entries of each row (ties: lower index first)."""
    # A stable descending sort gives lower indices precedence among equal scores.
    order = torch.sort(values, dim=-1, descending=True, stable=True).indices
    keep = torch.zeros_like(values, dtype=torch.bool)
    keep.scatter_(-1, order[..., :k], True)
    return keep


def nm_mask(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the N highest-scoring weights in every M consecutive weights along K.

    Args:
        scores: ``[C_out, K]`` non-negative saliency (higher = more important).
        n: kept weights per group, ``1 <= n < m``.
        m: group size along K, a power of two <= 16.

    Returns:
        bool ``[C_out, K]``; each full group has exactly N True, a tail group at most N.
    """
    check_nm(n, m)
    s = scores if scores.dtype in (torch.float32, torch.float64) else _as_matrix(scores)
    if s.dim() != 2:
        _as_matrix(s)  # raises the shape error
    keep = pattern_core.nm_keep(s.detach().cpu().contiguous().numpy(), n, m)
    return torch.from_numpy(keep)


def block_scores(scores: torch.Tensor, b: int) -> torch.Tensor:
    """Sum of scores per B x B block: ``[ceil(C_out/B), ceil(K/B)]`` (edge blocks partial)."""
    check_block(b)
    s = _as_matrix(scores)
    rows, k = s.shape
    padded = F.pad(s, (0, (-k) % b, 0, (-rows) % b))
    br, bc = padded.shape[0] // b, padded.shape[1] // b
    return padded.reshape(br, b, bc, b).sum(dim=(1, 3))


def expand_blocks(bitmap: torch.Tensor, b: int, shape: tuple[int, int]) -> torch.Tensor:
    """Element mask of ``shape`` from a ``[ceil(C_out/B), ceil(K/B)]`` block bitmap."""
    full = bitmap.repeat_interleave(b, dim=0).repeat_interleave(b, dim=1)
    return full[: shape[0], : shape[1]].clone()


def _allowed_block_scores(
    scores: torch.Tensor, b: int, allowed: torch.Tensor | None
) -> torch.Tensor:
    """Block scores with blocks outside ``allowed`` (a block bitmap) set to -inf."""
    bs = block_scores(scores, b)
    if allowed is None:
        return bs
    if tuple(allowed.shape) != tuple(bs.shape):
        raise UserError(
            f"allowed block bitmap has shape {tuple(allowed.shape)}, expected {tuple(bs.shape)}"
        )
    return bs.masked_fill(~allowed.to(torch.bool), -math.inf)


def block_bitmap(
    scores: torch.Tensor, b: int, keep: int, allowed: torch.Tensor | None = None
) -> torch.Tensor:
    """Balanced block bitmap: every block-row keeps its ``keep`` top-scoring blocks.

    Args:
        scores: ``[C_out, K]`` saliency.
        b: block size B.
        keep: blocks kept per block-row.
        allowed: optional bool ``[ceil(C_out/B), ceil(K/B)]`` bitmap of blocks that may be kept
            (the previous round's blocks, so masks only shrink); it must allow ``keep`` per row.

    Raises:
        UserError: ``keep`` outside ``1..blocks per row`` or more than ``allowed`` leaves a row.
    """
    bs = _allowed_block_scores(scores, b, allowed)
    if not 1 <= keep <= bs.shape[1]:
        raise UserError(f"blocks kept per block-row = {keep}: allowed 1..{bs.shape[1]}")
    if allowed is not None:
        fewest = int(allowed.to(torch.int64).sum(dim=1).min())
        if keep > fewest:
            raise UserError(f"blocks kept per block-row = {keep}: allowed 1..{fewest}")
    return _top_k_mask(bs, keep)


def block_mask(
    scores: torch.Tensor, b: int, keep: int, allowed: torch.Tensor | None = None
) -> torch.Tensor:
    """Element mask of balanced B x B block sparsity keeping ``keep`` blocks per block-row."""
    return expand_blocks(block_bitmap(scores, b, keep, allowed), b, tuple(scores.shape))


def hybrid_mask(
    scores: torch.Tensor, b: int, keep: int, n: int, m: int, allowed: torch.Tensor | None = None
) -> torch.Tensor:
    """Balanced block mask AND N:M mask: N:M inside the kept blocks."""
    return block_mask(scores, b, keep, allowed) & nm_mask(scores, n, m)


def rank_scores(scores: torch.Tensor, b: int, allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Score of each block *rank*: the k-th best block of every block-row, summed over block-rows.

    Entry k (0-based) is what keeping k+1 blocks per row instead of k adds to the layer. It is
    non-increasing in k, so one global threshold across layers decides how many blocks each layer
    keeps: the ranks whose score is at or above the threshold. Ranks that ``allowed`` (see
    `block_bitmap`) rules out in some block-row score -inf.
    """
    bs = _allowed_block_scores(scores, b, allowed)
    return torch.sort(bs, dim=1, descending=True).values.sum(dim=0)


def bitmap_of(mask: torch.Tensor, b: int) -> torch.Tensor:
    """Block bitmap ``[ceil(C_out/B), ceil(K/B)]`` of a mask: True where a block keeps a weight."""
    return block_scores(mask.to(torch.float64), b) > 0


def blocks_to_keep(scores: torch.Tensor, b: int, density: float) -> int:
    """Blocks per block-row that keep at least ``density`` of the block columns (at least one)."""
    return pattern_core.blocks_per_row(scores.shape[1], b, density)
