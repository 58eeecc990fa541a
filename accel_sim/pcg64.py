"""Uniform float32 scores from numpy's PCG64 stream, bit for bit, about twice as fast.

Synthetic masks (`accel_sim.sparsity`) draw one float32 score per weight: 138 M per VGG-16
mask set, most of a sweep's mask drawing. numpy draws them one 32-bit half of a PCG64 word at a
time through a function pointer and a 128-bit multiply it builds from 64-bit halves;
`random_f32` computes the same numbers in a Numba kernel whose 128-bit multiply is LLVM's
own (one machine multiply for the upper half).

The result is exactly ``rng.random(out=out, dtype=np.float32)``: the same floats, and the
Generator left in the same state (the 128-bit LCG state and numpy's buffered upper half of a
word), so draws before and after it, of any dtype, are unchanged. A Generator on another bit
generator, or an array of another layout, is passed to numpy.

numpy's definitions (``numpy/random/src/pcg64``, ``distributions.c``): a step is ``state =
state * MULT + inc (mod 2**128)``, the word is ``rotr64(hi ^ lo, hi >> 58)`` of the new state;
``next_uint32`` returns a buffered upper half if there is one, else the lower half of a new word
and buffers its upper half; a float32 is ``(next_uint32 >> 8) * 2**-24``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

_MULT = (2549297995355413924 << 64) + 4865540595714422341  # PCG64's 128-bit LCG multiplier
_WORD = (1 << 64) - 1


def random_f32(rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    """Fill the C-contiguous float32 array ``out`` as ``rng.random(out=out, dtype=np.float32)``
    would, advancing ``rng`` the same way, and return it."""
    bits = rng.bit_generator
    if not isinstance(bits, np.random.PCG64) or out.dtype != np.float32 \
            or not out.flags.c_contiguous:
        return rng.random(out=out, dtype=np.float32)
    with bits.lock:  # as numpy's own draws: no other thread's draw in between
        full = bits.state
        state, inc = full["state"]["state"], full["state"]["inc"]
        high, low, waits, upper = _fill(
            out.reshape(-1), *_halves(state), *_halves(_MULT), *_halves(inc),
            bool(full["has_uint32"]), np.uint64(full["uinteger"]))
        full["state"]["state"] = (int(high) << 64) | int(low)
        full["has_uint32"], full["uinteger"] = int(waits), int(upper)
        bits.state = full
    return out


def _halves(value: int) -> tuple[np.uint64, np.uint64]:
    return np.uint64(value >> 64), np.uint64(value & _WORD)


@intrinsic
def _mulhi(typingctx, a, b):  # pragma: no cover - compiled
    """The upper 64 bits of the 128-bit product of two uint64 (one machine multiply)."""
    def codegen(context, builder, signature, args):
        wide = ir.IntType(128)
        product = builder.mul(builder.zext(args[0], wide), builder.zext(args[1], wide))
        return builder.trunc(builder.lshr(product, ir.Constant(wide, 64)), ir.IntType(64))
    return types.uint64(types.uint64, types.uint64), codegen


@njit(cache=True, inline="always")
def _score(half):  # pragma: no cover - compiled
    """numpy's float32 of a 32-bit half (in a uint64): its upper 24 bits over 2**24."""
    return np.float32(np.int64(half >> np.uint64(8))) * np.float32(1.0 / 16777216.0)


@njit(cache=True, inline="always")
def _next(hi, lo, mult_hi, mult_lo, inc_hi, inc_lo):  # pragma: no cover - compiled
    """The next state ``hi:lo * MULT + inc (mod 2**128)`` and its output word (XSL-RR)."""
    low = lo * mult_lo
    high = _mulhi(lo, mult_lo) + hi * mult_lo + lo * mult_hi
    lo = low + inc_lo
    hi = high + inc_hi + (np.uint64(1) if lo < low else np.uint64(0))
    x = hi ^ lo
    rot = hi >> np.uint64(58)
    return hi, lo, (x >> rot) | (x << ((np.uint64(64) - rot) & np.uint64(63)))


@njit(cache=True)
def _fill(out, hi, lo, mult_hi, mult_lo, inc_hi, inc_lo, has, upper):  # pragma: no cover
    """Scores into ``out`` from the state ``hi:lo``; returns the state after the last word
    drawn and numpy's buffer after the last score: whether an upper half waits, and the
    upper half of the last word (numpy's state keeps it even once used)."""
    n = out.shape[0]
    k = 0
    if has and n > 0:
        out[0] = _score(upper)
        k, has = 1, False
    m32, s32 = np.uint64(0xFFFFFFFF), np.uint64(32)
    while k + 2 <= n:  # a word per two scores, lower half first
        hi, lo, word = _next(hi, lo, mult_hi, mult_lo, inc_hi, inc_lo)
        upper = word >> s32
        out[k], out[k + 1] = _score(word & m32), _score(upper)
        k += 2
    if k < n:  # an odd count: the last word's upper half waits for the next draw
        hi, lo, word = _next(hi, lo, mult_hi, mult_lo, inc_hi, inc_lo)
        upper = word >> s32
        out[k] = _score(word & m32)
        has = True
    return hi, lo, has, upper
