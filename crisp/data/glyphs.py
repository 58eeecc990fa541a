"""glyph100 and glyph100-hard: deterministic 100-class data sets of 32x32 RGB character images.

The glyphs come from the fonts bundled with matplotlib (DejaVu Sans / Sans Mono / Serif and
STIX General, regular, bold, italic and bold italic), drawn with matplotlib's FreeType wrapper
(``matplotlib.ft2font.FT2Font``), then rotated, shifted, coloured and noised in numpy. See
`GLYPH100_CLASSES` for the classes and how look-alikes were removed, and
`render_glyph100` for the per-sample randomness.

Both sets share the classes and the renderer; a `GlyphStyle` (`GLYPH_STYLES`) says
how each is distorted. ``glyph100`` is the quick one (a small network reaches ~100 %);
``glyph100-hard`` adds elastic warps, blur, clutter strokes, occluders, a textured background,
lower contrast and more noise, so that pruning schemes differ in the accuracy they keep.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import unicodedata
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass
from pathlib import Path

import matplotlib
import numpy as np
import torch

from crisp.data.datasets import (
    _SPLITS,
    ImageDataset,
    _check_count,
    _check_seed,
    _check_split,
)
from crisp.errors import UserError

#: Bump when the rendering changes in any way: it is part of the cache file name.
FORMAT_VERSION = 1

#: The 100 classes of glyph100, grouped by script; class id = position in the concatenation
#: (digits 0-9, Latin capitals 10-33, Latin small 34-49, ..., Georgian 99).
#: Look-alikes are removed so that every class has a shape of its own:
#:
#: * cross-script twins keep one member: Latin A B C E H J K M N P S T X Y Z stand for their
#:   Greek/Cyrillic twins (no Greek Α Β Ε Ζ Η Ι Κ Μ Ν Ρ Τ Υ Χ, no Cyrillic А В Е Н К М Р С Т
#:   Х Ѕ Ј ...); Greek Γ Π Φ Λ stand for Cyrillic Г П Ф Л;
#: * the digit 0 stands for every O (Latin O o, Greek Ο ο, Cyrillic О о, Armenian Օ) and Θ θ Ѳ
#:   go too (DejaVu Sans Mono draws a dotted zero); the digit 1 stands for I l ı ι І Ӏ;
#:   3 for З Ʒ Յ; 6 for б;
#: * case pairs that differ in size only appear once, as glyphs are size-normalised: C P S U
#:   V W X Z keep the capital; all Cyrillic small letters go (small capitals, or italic
#:   look-alikes such as т/m, п/n, и/u);
#: * Greek small letters that copy another class go: α/a, γ/y, η/n, ι, κ, ν/V, ο, π/Π, ρ/P,
#:   ς/C, τ/T, υ/U, φ/Φ, χ/X, ψ/Ψ;
#: * letters that differ from a kept class by a small mark only go: Щ/Ш, Ђ/Ћ, Ь Ѣ/b, Ŋ/n,
#:   Ð/D, ð/δ, Ø/0, ß/β, Ł/L and all letters with diacritics (Ё Й Ї Ґ É ...);
#: * Armenian and Georgian letters that copy a Latin shape (Ս/U, Օ/O, Տ/S, Լ/L, Ո/n, Յ/3,
#:   ვ/3, ნ/6, ...) go; the ones kept have no twin among the other classes.
GLYPH100_SCRIPTS: dict[str, str] = {
    "digits": "0123456789",
    "latin_upper": "ABCDEFGHJKLMNPQRSTUVWXYZ",
    "latin_lower": "abdefghijkmnqrty",
    "latin_extra": "ÆŒÞ",
    "greek_upper": "ΓΔΛΞΠΣΦΨΩ",
    "greek_lower": "βδεζλμξσω",
    "greek_archaic": "ϞϠ",
    "cyrillic": "БДЖИЦЧШЪЫЭЮЯЋЉЊЄѪ",
    "armenian": "ԽՖՀՇՆՊՃԸՂ",
    "georgian": "ლ",
}

#: The class characters, in class-id order (exactly 100, all distinct).
GLYPH100_CLASSES: tuple[str, ...] = tuple("".join(GLYPH100_SCRIPTS.values()))

#: Unicode names of `GLYPH100_CLASSES`, e.g. ``"GREEK CAPITAL LETTER GAMMA"``.
GLYPH100_CLASS_NAMES: tuple[str, ...] = tuple(unicodedata.name(c) for c in GLYPH100_CLASSES)

#: Font files (in ``matplotlib.get_data_path()/fonts/ttf``) a glyph is drawn from. Each sample
#: draws uniformly among the ones that cover its character (16 for most classes; 12 for the
#: Armenian and Georgian ones and Ѫ, which STIX or DejaVu Sans Mono lack).
GLYPH100_FONTS: tuple[str, ...] = (
    "DejaVuSans.ttf",
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSansMono.ttf",
    "DejaVuSansMono-Bold.ttf",
    "DejaVuSansMono-Oblique.ttf",
    "DejaVuSansMono-BoldOblique.ttf",
    "DejaVuSerif.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralItalic.ttf",
    "STIXGeneralBolIta.ttf",
)

#: Default images per class of each glyph100 split (30 000 train, 10 000 test images).
DEFAULT_TRAIN_PER_CLASS = 300
DEFAULT_TEST_PER_CLASS = 100

_IMG = 32  # output side (pixels)
_CANVAS = 48  # side of the scratch canvas a glyph is drawn on before rotation (pixels)
_INK_MIN, _INK_MAX = 14.0, 26.0  # larger side of a glyph's ink box, before rotation (pixels)
_MAX_ANGLE = 15.0  # degrees, uniform in [-_MAX_ANGLE, _MAX_ANGLE]
_MAX_NOISE = 1.5  # noise amplitude factor; noise std = 6.5 * factor grey levels
_CHUNK = 2048  # samples per vectorised warp/compose step (does not change the output)

#: Per-channel mean and std (in [0, 1] units) used to normalise glyph100 images.
GLYPH100_MEAN = (0.5, 0.5, 0.5)
GLYPH100_STD = (0.31, 0.31, 0.31)  # measured on the default train split


@dataclass(frozen=True)
class GlyphStyle:
    """How one glyph set distorts its samples (every range is sampled uniformly per image).

    Attributes:
        name: the data set name (``load_dataset`` and cache files use it).
        key: mixed into the seed after (FORMAT_VERSION, seed, split); empty for glyph100.
        ink_min, ink_max: larger side of the glyph's ink box before rotation (pixels).
        max_angle: rotation range (degrees, +-).
        max_noise: additive triangular noise amplitude factor (std = 6.5 * factor grey levels).
        dark_max, light_min: dark colour channels are drawn in 0..dark_max-1, light ones in
            light_min..255 (ink dark on light or light on dark); closer means less contrast.
        elastic: largest amplitude (pixels) of a smooth random displacement field (4x4 control
            points, bilinear) added to the rotation's sampling grid; 0 = none.
        blur: largest Gaussian blur sigma (pixels) of the ink; 0 = none.
        strokes: largest number of clutter strokes (ink-coloured line segments 6..20 pixels
            long, 0.8..2 pixels wide) drawn with the glyph; 0 = none.
        occluder: probability of one rectangle (5..12 pixels a side, random colour) over the
            image centre region; 0 = none.
        texture: largest amplitude (grey levels) of the background texture (a smooth random
            field per channel plus stripes of random frequency and direction); 0 = none.
        mean, std: per-channel normalisation in [0, 1] units (measured on the train split).
    """

    name: str
    key: tuple[int, ...]
    ink_min: float
    ink_max: float
    max_angle: float
    max_noise: float
    dark_max: int
    light_min: int
    elastic: float = 0.0
    blur: float = 0.0
    strokes: int = 0
    occluder: float = 0.0
    texture: float = 0.0
    mean: tuple[float, float, float] = GLYPH100_MEAN
    std: tuple[float, float, float] = GLYPH100_STD


#: The glyph sets by name: glyph100 (the quick demo set) and glyph100-hard.
GLYPH_STYLES: dict[str, GlyphStyle] = {
    "glyph100": GlyphStyle("glyph100", (), _INK_MIN, _INK_MAX, _MAX_ANGLE, _MAX_NOISE, 100, 155),
    "glyph100-hard": GlyphStyle(
        "glyph100-hard", (1,), ink_min=12.0, ink_max=26.0, max_angle=20.0, max_noise=2.0,
        dark_max=110, light_min=146, elastic=1.5, blur=0.8, strokes=3, occluder=0.5,
        texture=35.0, mean=(0.5, 0.5, 0.5), std=(0.28, 0.28, 0.28),
    ),
}


def _style(name: str) -> GlyphStyle:
    try:
        return GLYPH_STYLES[name]
    except KeyError:
        raise UserError(f"unknown glyph set {name!r}: allowed {', '.join(GLYPH_STYLES)}") from None


def _font_dir() -> Path:
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _load_fonts() -> list:
    from matplotlib.ft2font import FT2Font

    out = []
    for f in GLYPH100_FONTS:
        p = _font_dir() / f
        if not p.is_file():
            raise UserError(f"font {p} not found: glyph100 needs the fonts bundled with matplotlib")
        out.append(FT2Font(str(p)))
    return out


def _glyph_tables(fonts: list) -> tuple[list[np.ndarray], np.ndarray]:
    """Per class: indices of fonts covering it; per (font, class): ink size per point."""
    from matplotlib.ft2font import LoadFlags

    ref = 64.0
    cover: list[np.ndarray] = []
    ink = np.zeros((len(fonts), len(GLYPH100_CLASSES)), np.float64)
    for f, ft in enumerate(fonts):
        ft.set_size(ref, 72.0)
        for c, ch in enumerate(GLYPH100_CLASSES):
            if ft.get_char_index(ord(ch)):
                x0, y0, x1, y1 = ft.load_char(ord(ch), LoadFlags.NO_HINTING).bbox
                ink[f, c] = max(x1 - x0, y1 - y0) / 64.0 / ref
    for c, ch in enumerate(GLYPH100_CLASSES):
        idx = np.flatnonzero(ink[:, c] > 0)
        if idx.size == 0:  # pragma: no cover - the bundled fonts cover every class
            raise UserError(f"no bundled font draws {ch!r} ({GLYPH100_CLASS_NAMES[c]})")
        cover.append(idx)
    return cover, ink


def _render_glyphs(labels: np.ndarray, font_u: np.ndarray, ink_px: np.ndarray, fonts: list,
                   tables: tuple[list[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Draw each label's glyph, unrotated, centred on a canvas.

    Returns (canvas uint8 [N, 48, 48], geometry float64 [N, 4] = ink centre x, y and ink
    width, height, all in canvas pixels, with pixel k covering [k, k+1)).
    """
    from matplotlib.ft2font import LoadFlags

    cover, ink = tables
    n = labels.shape[0]
    canvas = np.zeros((n, _CANVAS, _CANVAS), np.uint8)
    geom = np.zeros((n, 4), np.float64)
    flags = LoadFlags.NO_HINTING
    half = _CANVAS / 2.0
    for i in range(n):
        c = int(labels[i])
        cov = cover[c]
        f = int(cov[min(int(font_u[i] * cov.size), cov.size - 1)])
        ft = fonts[f]
        ft.set_size(float(ink_px[i] / ink[f, c]), 72.0)
        g = ft.load_char(ord(GLYPH100_CLASSES[c]), flags)
        x0, y0, x1, y1 = (v / 64.0 for v in g.bbox)
        w, h = x1 - x0, y1 - y0
        px = int(half - w / 2.0 - np.floor(x0))
        py = int(half - h / 2.0)
        ft.draw_glyph_to_bitmap(canvas[i], px, py, g)
        # the bitmap's left column is floor(x0) and its top row is ceil(y1) in glyph space
        geom[i] = (px + x0 + w / 2.0, py + (np.ceil(y1) - y1) + h / 2.0, w, h)
    return canvas, geom


def _warp(canvas: np.ndarray, geom: np.ndarray, angle_deg: np.ndarray,
          shift_u: np.ndarray, displace: np.ndarray | None = None) -> np.ndarray:
    """Rotate each canvas glyph about its ink centre, shift it, sample a 32x32 window.

    Bilinear sampling; the shift is uniform within the range that keeps the rotated ink box
    inside the image. ``displace`` (float32 [N, 2, 32, 32], pixels) is added to the source
    coordinates (an elastic warp). Returns float32 coverage in [0, 255], shape [N, 32, 32].
    """
    n = canvas.shape[0]
    th = np.deg2rad(angle_deg)
    c, s = np.cos(th), np.sin(th)
    w, h = geom[:, 2], geom[:, 3]
    rw = w * np.abs(c) + h * np.abs(s)
    rh = w * np.abs(s) + h * np.abs(c)
    lim_x = np.maximum(0.0, (_IMG - rw) / 2.0 - 0.5)
    lim_y = np.maximum(0.0, (_IMG - rh) / 2.0 - 0.5)
    dx = (2.0 * shift_u[:, 0] - 1.0) * lim_x
    dy = (2.0 * shift_u[:, 1] - 1.0) * lim_y
    grid = np.arange(_IMG, dtype=np.float32) + np.float32(0.5 - _IMG / 2.0)
    ax = grid[None, None, :] - dx.astype(np.float32)[:, None, None]  # [n, 1, 32]
    ay = grid[None, :, None] - dy.astype(np.float32)[:, None, None]  # [n, 32, 1]
    cc, ss = c.astype(np.float32)[:, None, None], s.astype(np.float32)[:, None, None]
    ox = (geom[:, 0] - 0.5).astype(np.float32)[:, None, None]
    oy = (geom[:, 1] - 0.5).astype(np.float32)[:, None, None]
    qx = cc * ax + ss * ay + ox  # source column (pixel-centre coordinates) [n, 32, 32]
    qy = cc * ay - ss * ax + oy  # source row
    if displace is not None:
        qx = qx + displace[:, 0]
        qy = qy + displace[:, 1]
    x0 = np.clip(np.floor(qx), 0, _CANVAS - 2)
    y0 = np.clip(np.floor(qy), 0, _CANVAS - 2)
    fx = np.clip(qx - x0, 0.0, 1.0)
    fy = np.clip(qy - y0, 0.0, 1.0)
    base = (np.arange(n, dtype=np.intp) * (_CANVAS * _CANVAS))[:, None, None]
    idx = base + y0.astype(np.intp) * _CANVAS + x0.astype(np.intp)
    flat = canvas.reshape(-1)

    def tap(off: int) -> np.ndarray:
        return np.take(flat, idx + off).astype(np.float32)

    top = tap(0) * (1.0 - fx) + tap(1) * fx
    bot = tap(_CANVAS) * (1.0 - fx) + tap(_CANVAS + 1) * fx
    return top * (1.0 - fy) + bot * fy


def _upsample(coarse: np.ndarray) -> np.ndarray:
    """Bilinear upsampling of [..., g, g] control points to [..., 32, 32] (corners aligned)."""
    g = coarse.shape[-1]
    pos = np.linspace(0.0, g - 1.0, _IMG)
    lo = np.minimum(np.floor(pos).astype(np.intp), g - 2)
    frac = (pos - lo).astype(np.float32)
    u = np.zeros((_IMG, g), np.float32)
    u[np.arange(_IMG), lo] = 1.0 - frac
    u[np.arange(_IMG), lo + 1] += frac
    return np.einsum("ya,...ab,xb->...yx", u, coarse.astype(np.float32), u, optimize=True)


def _blur(alpha: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Separable Gaussian blur of [N, 32, 32] with a per-image sigma (pixels; 0 = none)."""
    r = 3
    taps = np.arange(-r, r + 1, dtype=np.float32)
    s = np.maximum(sigma.astype(np.float32), np.float32(1e-3))[:, None]
    w = np.exp(-0.5 * (taps[None, :] / s) ** 2)
    w /= w.sum(1, keepdims=True)
    out = alpha
    for axis in (1, 2):
        pad = [(0, 0)] * 3
        pad[axis] = (r, r)
        padded = np.pad(out, pad, mode="edge")
        acc = np.zeros_like(out)
        for k in range(2 * r + 1):
            part = padded[:, k:k + _IMG, :] if axis == 1 else padded[:, :, k:k + _IMG]
            acc += w[:, k, None, None] * part
        out = acc
    return out


def _segments(seg: np.ndarray) -> np.ndarray:
    """Coverage in [0, 1] of line segments, [N, 32, 32].

    ``seg`` float32 [N, S, 5]: x0, y0, x1, y1 (pixel units, centre of pixel k at k + 0.5) and
    width; a width of 0 draws nothing. Antialiased by one pixel at the edges.
    """
    grid = np.arange(_IMG, dtype=np.float32) + np.float32(0.5)
    px, py = grid[None, None, None, :], grid[None, None, :, None]
    x0, y0, x1, y1, wd = (seg[..., i][..., None, None] for i in range(5))
    vx, vy = x1 - x0, y1 - y0
    t = np.clip(((px - x0) * vx + (py - y0) * vy) / np.maximum(vx * vx + vy * vy, 1e-6), 0, 1)
    dist = np.hypot(px - x0 - t * vx, py - y0 - t * vy)
    cover = np.clip(wd / 2.0 + 0.5 - dist, 0.0, 1.0) * (wd > 0)
    return cover.max(axis=1)


def _extras(style: GlyphStyle, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-image parameters of a style's distortions (only those the style uses), drawn in
    one fixed order from ``rng``."""
    out: dict[str, np.ndarray] = {}
    if style.elastic > 0:
        amp = rng.uniform(0.0, style.elastic, n).astype(np.float32)
        out["elastic"] = rng.standard_normal((n, 2, 4, 4)).astype(np.float32) * amp[:, None,
                                                                                   None, None]
    if style.blur > 0:
        out["blur"] = rng.uniform(0.0, style.blur, n)
    if style.strokes > 0:
        count = rng.integers(0, style.strokes + 1, n)
        start = rng.uniform(2.0, _IMG - 2.0, (n, style.strokes, 2))
        angle = rng.uniform(0.0, 2.0 * np.pi, (n, style.strokes))
        length = rng.uniform(6.0, 20.0, (n, style.strokes))
        width = rng.uniform(0.8, 2.0, (n, style.strokes))
        width[np.arange(style.strokes)[None, :] >= count[:, None]] = 0.0
        end = start + length[..., None] * np.stack([np.cos(angle), np.sin(angle)], -1)
        out["strokes"] = np.concatenate([start, end, width[..., None]], -1).astype(np.float32)
    if style.occluder > 0:
        present = rng.random(n) < style.occluder
        centre = rng.uniform(8.0, _IMG - 8.0, (n, 2))
        half = rng.uniform(2.5, 6.0, (n, 2)) * present[:, None]
        out["occluder"] = np.concatenate([centre - half, centre + half], 1).astype(np.float32)
        out["occluder_rgb"] = rng.integers(0, 256, (n, 3)).astype(np.float32)
    if style.texture > 0:
        amp = rng.uniform(0.0, style.texture, n).astype(np.float32)
        smooth = rng.standard_normal((n, 3, 6, 6)).astype(np.float32)
        freq = rng.uniform(0.2, 1.2, n)
        theta = rng.uniform(0.0, np.pi, n)
        phase = rng.uniform(0.0, 2.0 * np.pi, n)
        stripe_rgb = rng.uniform(-1.0, 1.0, (n, 3))
        out["texture_amp"], out["texture_smooth"] = amp, smooth
        out["stripes"] = np.stack([freq * np.cos(theta), freq * np.sin(theta), phase], 1)
        out["stripe_rgb"] = stripe_rgb.astype(np.float32)
    return out


def _texture(ex: dict[str, np.ndarray], a: int, b: int) -> np.ndarray:
    """Background texture of images a..b-1, float32 [b-a, 3, 32, 32] in grey levels."""
    smooth = _upsample(ex["texture_smooth"][a:b])
    grid = np.arange(_IMG, dtype=np.float32)
    kx, ky, ph = (ex["stripes"][a:b, i].astype(np.float32)[:, None, None] for i in range(3))
    wave = np.sin(kx * grid[None, None, :] + ky * grid[None, :, None] + ph)  # [n, 32, 32]
    tex = 0.6 * smooth + 0.8 * ex["stripe_rgb"][a:b, :, None, None] * wave[:, None]
    return tex * ex["texture_amp"][a:b, None, None, None]


def render_glyph_set(name: str, n_per_class: int, seed: int = 0,
                     split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Render the glyph set ``name`` (a key of `GLYPH_STYLES`) without any caching.

    Args:
        name: ``"glyph100"`` or ``"glyph100-hard"``.
        n_per_class: images per class (>= 1).
        seed: integer >= 0; the split name is mixed in so train and test differ.
        split: ``"train"`` or ``"test"``.

    Returns:
        (images uint8 [100 * n_per_class, 3, 32, 32], labels int64 [100 * n_per_class]).
        Labels cycle 0, 1, ..., 99, 0, 1, ... so any prefix is nearly class-balanced.

    Per sample, drawn from ``numpy.random.default_rng`` seeded by (FORMAT_VERSION, seed, split,
    *style key): a font among those covering the class, the ink size, a rotation (bilinear), a
    shift keeping the glyph inside the image, a polarity and colours (ink dark on light or light
    on dark) and additive triangular pixel noise, with the ranges of the style; then, from a
    third stream, the style's extra distortions (`GlyphStyle`). Same arguments and same
    matplotlib (FreeType) version give identical bytes.
    """
    style = _style(name)
    n_per_class = _check_count("n_per_class", n_per_class)
    seed = _check_seed(seed)
    split = _check_split(split)
    k = len(GLYPH100_CLASSES)
    n = k * n_per_class
    ss = np.random.SeedSequence([FORMAT_VERSION, seed, _SPLITS.index(split), *style.key])
    param_ss, noise_ss, extra_ss = ss.spawn(3)
    rng = np.random.default_rng(param_ss)
    labels = np.tile(np.arange(k, dtype=np.int64), n_per_class)
    font_u = rng.random(n)
    ink_px = rng.uniform(style.ink_min, style.ink_max, n)
    angle = rng.uniform(-style.max_angle, style.max_angle, n)
    shift_u = rng.random((n, 2))
    light_ink = rng.random(n) < 0.5
    dark = rng.integers(0, style.dark_max, (n, 3)).astype(np.float32)
    light = rng.integers(style.light_min, 256, (n, 3)).astype(np.float32)
    amp = rng.uniform(0.0, style.max_noise, n).astype(np.float32)
    fg = np.where(light_ink[:, None], light, dark)
    bg = np.where(light_ink[:, None], dark, light)
    ex = _extras(style, n, np.random.default_rng(extra_ss))

    fonts = _load_fonts()
    tables = _glyph_tables(fonts)
    images = np.empty((n, 3, _IMG, _IMG), np.uint8)
    noise_rng = np.random.default_rng(noise_ss)

    def finish(a: int, b: int, canvas: np.ndarray, geom: np.ndarray) -> None:
        # numpy releases the GIL here, so this overlaps with rendering the next chunk
        displace = _upsample(ex["elastic"][a:b]) if "elastic" in ex else None
        alpha = _warp(canvas, geom, angle[a:b], shift_u[a:b], displace) / np.float32(255.0)
        if "strokes" in ex:
            alpha = np.maximum(alpha, _segments(ex["strokes"][a:b]))
        if "blur" in ex:
            alpha = _blur(alpha, ex["blur"][a:b])
        back = bg[a:b, :, None, None]
        if "texture_amp" in ex:
            back = back + _texture(ex, a, b)
        img = back + (fg[a:b, :, None, None] - back) * alpha[:, None]
        if "occluder" in ex:
            box = ex["occluder"][a:b]
            grid = np.arange(_IMG, dtype=np.float32) + np.float32(0.5)
            inx = (grid[None, :] >= box[:, 0:1]) & (grid[None, :] < box[:, 2:3])
            iny = (grid[None, :] >= box[:, 1:2]) & (grid[None, :] < box[:, 3:4])
            cover = (iny[:, :, None] & inx[:, None, :])[:, None]
            img = np.where(cover, ex["occluder_rgb"][a:b, :, None, None], img)
        raw = np.frombuffer(noise_rng.bytes((b - a) * 3 * _IMG * _IMG), np.uint8)
        raw = raw.reshape(b - a, 3, _IMG, _IMG)
        noise = ((raw & 15) + (raw >> 4)).astype(np.float32) - np.float32(15.0)
        img += noise * amp[a:b, None, None, None]
        images[a:b] = np.rint(np.clip(img, 0.0, 255.0)).astype(np.uint8)

    # one worker thread: chunks finish in order, so the noise stream is consumed in order
    with ThreadPoolExecutor(max_workers=1) as pool:
        futures = []
        for a in range(0, n, _CHUNK):
            b = min(n, a + _CHUNK)
            canvas, geom = _render_glyphs(labels[a:b], font_u[a:b], ink_px[a:b], fonts, tables)
            futures.append(pool.submit(finish, a, b, canvas, geom))
        for fut in futures:
            fut.result()
    return images, labels


def render_glyph100(n_per_class: int, seed: int = 0,
                    split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Render glyph100 without any caching: `render_glyph_set` ``("glyph100", ...)``.

    glyph100's ranges: ink size (larger side) 14..26 px, rotation -15..15 degrees, dark
    channel values 0..99, light 155..255, noise std 0..9.8 grey levels; no extra distortions.
    """
    return render_glyph_set("glyph100", n_per_class, seed, split)


def default_cache_dir() -> Path:
    """``$CRISP_DATA_DIR`` if set, else ``~/.cache/crisp-sim``."""
    env = os.environ.get("CRISP_DATA_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "crisp-sim"


def glyph_cache_path(name: str, split: str = "train", seed: int = 0,
                     n_per_class: int | None = None,
                     cache_dir: str | os.PathLike | None = None) -> Path:
    """Where `glyph_set` caches a split of the glyph set ``name``: keyed by the set's
    name, format version, a digest of the class list, fonts and style, matplotlib version (it
    carries the FreeType build), seed, split and images per class."""
    style = _style(name)
    split = _check_split(split)
    seed = _check_seed(seed)
    n = _default_n(split) if n_per_class is None else _check_count("n_per_class", n_per_class)
    root = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    return root / (f"{style.name}-v{FORMAT_VERSION}-{_spec_digest(style)}"
                   f"-mpl{matplotlib.__version__}-seed{seed}-{split}{n}.npz")


def glyph100_cache_path(split: str = "train", seed: int = 0, n_per_class: int | None = None,
                        cache_dir: str | os.PathLike | None = None) -> Path:
    """`glyph_cache_path` of glyph100."""
    return glyph_cache_path("glyph100", split, seed, n_per_class, cache_dir)


def _spec_digest(style: GlyphStyle) -> str:
    """8 hex digits over the class list, fonts and style (guards a stale cache)."""
    spec = repr((FORMAT_VERSION, GLYPH100_CLASSES, GLYPH100_FONTS, _IMG, _CANVAS,
                 astuple(style)))
    return hashlib.sha256(spec.encode()).hexdigest()[:8]


def _default_n(split: str) -> int:
    return DEFAULT_TRAIN_PER_CLASS if split == "train" else DEFAULT_TEST_PER_CLASS


def _read_cache(path: Path, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            images, labels = z["images"], z["labels"]
    except (OSError, ValueError, KeyError, EOFError):
        return None
    k = len(GLYPH100_CLASSES)
    if (images.shape != (k * n, 3, _IMG, _IMG) or images.dtype != np.uint8
            or labels.shape != (k * n,) or labels.dtype != np.int64):
        return None
    return images, labels


def _write_atomic(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, images=images, labels=labels)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; the cache may be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def glyph_set(name: str, split: str = "train", seed: int = 0, n_per_class: int | None = None,
              cache_dir: str | os.PathLike | None = None) -> ImageDataset:
    """The glyph set ``name`` (``"glyph100"`` or ``"glyph100-hard"``): 100 classes of 32x32
    RGB character images (see module docs and `GlyphStyle`).

    RGB (3 channels, uint8) so that models built for 3-channel input work unchanged; the
    colours are random, so the class is in the shape only.

    Args:
        name: a key of `GLYPH_STYLES`.
        split: ``"train"`` or ``"test"`` (``"val"`` means test); the two are drawn from
            independent random streams.
        seed: integer >= 0.
        n_per_class: images per class; default 300 for train, 100 for test.
        cache_dir: where the built arrays are kept; default `default_cache_dir`. The
            first call renders (seconds; glyph100-hard's extra distortions cost a little
            more) and writes the cache atomically; later calls read it.

    Returns:
        `ImageDataset` with images uint8 [100 * n, 3, 32, 32], labels int64, and
        ``classes`` = `GLYPH100_CLASSES` (use `GLYPH100_CLASS_NAMES` for names).
    """
    style = _style(name)
    split = _check_split(split)
    seed = _check_seed(seed)
    n = _default_n(split) if n_per_class is None else _check_count("n_per_class", n_per_class)
    path = glyph_cache_path(name, split, seed, n, cache_dir)
    cached = _read_cache(path, n) if path.is_file() else None
    if cached is None:
        images, labels = render_glyph_set(name, n, seed, split)
        try:
            _write_atomic(path, images, labels)
        except OSError as e:
            warnings.warn(f"could not cache {name} at {path}: {e}", stacklevel=2)
    else:
        images, labels = cached
    return ImageDataset(torch.from_numpy(images), torch.from_numpy(labels), list(GLYPH100_CLASSES),
                        style.mean, style.std, f"{name}/{split}/seed{seed}/n{n}")


def glyph100(split: str = "train", seed: int = 0, n_per_class: int | None = None,
             cache_dir: str | os.PathLike | None = None) -> ImageDataset:
    """The glyph100 data set: `glyph_set` ``("glyph100", ...)``."""
    return glyph_set("glyph100", split, seed, n_per_class, cache_dir)
