"""Paper-style figures from tidy result tables (one row per design point and layer).

Every function takes a pandas DataFrame and returns a matplotlib Figure sized for one paper column
(3.5 in wide, 7 pt text); `save` writes it as PNG and PDF (or the formats asked for).
Schemes keep one colour each in every figure (`SCHEME_COLORS`). Network totals are sums
over layers of the per-layer rows; times are in µs, energies in µJ.

Every figure says what it shows: a title line names the quantity, what all of the frame's rows
share (model, hardware, array, dataflow, block size, density: `describe`, from the columns
that exist) and the caller's ``context`` (the data set, the user classes, ...). A frame holding
several arrays, dataflows, block sizes or densities gets one panel per combination, each titled
with what sets it apart (`panels`), never a sum over them or only the first; the schemes
that do not depend on a block size or a density (dense, and N:M for the density) appear in every
panel of those. Rows that would still be added up (two rows of one layer in a panel: they differ
in a column no panel separates, such as the N:M pattern or the seed) raise ValueError.

Columns used: ``model``, ``scheme``, ``rows``, ``cols``, ``dataflow``, ``block``, ``density``,
``hw``, ``layer``, ``total_cycles``, ``latency_us``, ``energy_total_pj``,
``energy_<component>_pj``, ``utilization``, ``macs``; accuracy figures use ``classes``,
``density``, ``accuracy`` and ``latency_us``.
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from crisp.io import write_atomic

#: One colour per scheme, the same in every figure (Okabe-Ito, colour-blind safe).
SCHEME_COLORS = {
    "dense": "#000000",
    "unstructured": "#E69F00",
    "channel": "#56B4E9",
    "nm": "#009E73",
    "block": "#CC79A7",
    "hybrid": "#D55E00",
}
SCHEME_ORDER = tuple(SCHEME_COLORS)
COLUMN_WIDTH_IN = 3.5

#: What a row is, by name: the columns of each key. Titles and panels name them in this order.
KEYS = {
    "model": ("model",),
    "hw": ("hw",),
    "array": ("rows", "cols"),
    "dataflow": ("dataflow",),
    "block": ("block",),
    "density": ("density",),
}
#: The schemes whose results do not depend on a key: their rows join every panel of that key.
_IGNORES = {
    "block": frozenset({"dense", "unstructured", "channel", "nm"}),
    "density": frozenset({"dense", "nm"}),
}
_TITLE_CHARS = 72  # characters per title line at 7 pt in one column

_STYLE = {
    "font.size": 7,
    "axes.titlesize": 6,
    "axes.labelsize": 7,
    "figure.titlesize": 7,
    "legend.fontsize": 6,
    "xtick.labelsize": 6,
    "ytick.labelsize": 6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "savefig.dpi": 300,
    "savefig.bbox": "tight",
}


def _styled(make: Callable[..., Figure]) -> Callable[..., Figure]:
    """Build the figure under the paper style (text sizes are fixed when artists are made)."""

    @functools.wraps(make)
    def wrapped(*args: object, **kwargs: object) -> Figure:
        with plt.rc_context(_STYLE):
            return make(*args, **kwargs)

    return wrapped


def _figure(count: int = 1, height_in: float = 2.2, columns: int = 1) -> tuple[Figure, list[Axes]]:
    """A one-column figure of ``count`` panels, ``columns`` side by side, ``height_in`` each."""
    ncols = max(1, min(count, columns))
    nrows = -(-count // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(COLUMN_WIDTH_IN, height_in * nrows),
                             squeeze=False, layout="constrained")
    flat = list(axes.flat)
    for ax in flat[count:]:
        ax.remove()
    return fig, flat[:count]


def _schemes(df: pd.DataFrame) -> list[str]:
    present = set(df["scheme"])
    return [s for s in SCHEME_ORDER if s in present] + sorted(present - set(SCHEME_ORDER))


def _values(df: pd.DataFrame, key: str) -> list[tuple]:
    """The distinct values of ``key``'s columns, sorted, among the rows whose scheme depends on
    ``key`` (none where a column is missing)."""
    columns = list(KEYS[key])
    if not set(columns) <= set(df.columns):
        return []
    if key in _IGNORES and "scheme" in df:
        df = df[~df["scheme"].isin(_IGNORES[key])]
    return sorted(df[columns].drop_duplicates().itertuples(index=False, name=None))


def _label(key: str, values: tuple) -> str:
    if key == "array":
        return f"{values[0]}x{values[1]} array"
    if key == "dataflow":
        return str(values[0]).upper()
    if key == "block":
        return f"B={values[0]}"
    if key == "density":
        return f"density {values[0]:g}"
    return str(values[0])


def describe(df: pd.DataFrame, keys: Sequence[str] = tuple(KEYS), known: str = "") -> str:
    """What every row of ``df`` shares among ``keys`` (of `KEYS`), for a title, e.g.
    ``"resnet50, edge-32x32, 32x32 array, WS, B=16, density 0.25"``; a key with several values
    or no column is left out, and so is a value ``known`` (the caller's context) already says."""
    found = ((key, _values(df, key)) for key in keys)
    labels = (_label(key, values[0]) for key, values in found if len(values) == 1)
    return ", ".join(label for label in labels if label not in known)


def panels(df: pd.DataFrame, keys: Sequence[str]) -> list[tuple[str, pd.DataFrame]]:
    """``df`` split into one ``(label, rows)`` panel per combination of the ``keys`` (of
    `KEYS`) that take several values; one unlabelled panel when none does.

    The rows of a scheme that does not depend on a key (dense for the block size and the
    density, N:M for the density, ...) join every panel of that key; rows keep their order.
    """
    parts = [("", df)]
    for key in (k for k in keys if len(_values(df, k)) > 1):
        columns = KEYS[key]
        split = []
        for label, part in parts:
            values = _values(part, key)
            if not values:  # only rows that ignore the key: they stand alone
                split.append((label, part))
                continue
            shared = part["scheme"].isin(_IGNORES.get(key, ()))
            for value in values:
                pairs = zip(columns, value, strict=True)
                own = np.logical_and.reduce([part[c] == v for c, v in pairs])
                name = _label(key, value)
                split.append((f"{label}, {name}" if label else name, part[shared | own]))
        parts = split
    return parts


def _one_row_each(panel: pd.DataFrame, keys: Sequence[str], figure: str) -> None:
    """Raise ValueError where ``panel`` holds two rows of one layer for the same ``keys``: a
    figure would add them up."""
    columns = [c for c in (*keys, "layer") if c in panel]
    if panel.duplicated(columns).any():
        raise ValueError(
            f"{figure}: several rows share {', '.join(columns)} in one panel; they differ in a "
            "column no panel separates (e.g. nm, seed, batch, mapping): select one value first")


def _title(fig: Figure, what: str, df: pd.DataFrame, context: str | None,
           keys: Sequence[str] = tuple(KEYS)) -> None:
    """The figure's title line: ``what`` it shows, then what the rows of ``df`` share among
    ``keys`` (`describe`) and the caller's ``context``."""
    about = "; ".join(p for p in (describe(df, keys, context or ""), context) if p)
    fig.suptitle(textwrap.fill(f"{what}: {about}" if about else what, _TITLE_CHARS))


def _legend(fig: Figure, axes: Sequence[Axes], ncols: int = 3) -> None:
    """One legend below the panels for every labelled artist of ``axes``."""
    handles: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=ncols,
               frameon=False)


def network_totals(df: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Sum the additive per-layer columns over layers for each combination of ``keys``.

    Utilisation becomes the MAC-weighted mean over layers.
    """
    additive = [c for c in df.columns if c.endswith(("_cycles", "_pj", "_us")) or c == "macs"]
    out = df.groupby(list(keys), sort=False)[additive].sum().reset_index()
    if "utilization" in df and "macs" in df:
        weighted = (df["utilization"] * df["macs"]).groupby([df[k] for k in keys], sort=False).sum()
        out["utilization"] = (weighted.to_numpy() / out["macs"].to_numpy()).clip(0, 1)
    return out


def _times(factor: float) -> str:
    """``4.0x``; two decimals below 2, where one would hide the difference (``1.04x``)."""
    return f"{factor:.2f}x" if factor < 1.995 else f"{factor:.1f}x"


def versus(ratio: float, other: str, latency: bool = True) -> str:
    """How a scheme compares with ``other``, worded by direction: ``ratio`` is ``other``'s
    latency (or energy) over the scheme's, e.g. ``1.3x faster than channel``,
    ``1.04x slower than block``, ``3.6x less energy than dense``, ``as fast as nm``."""
    if round(ratio, 2) == 1:
        return f"{'as fast as' if latency else 'the same energy as'} {other}"
    better, worse = ("faster", "slower") if latency else ("less energy", "more energy")
    if ratio > 1:
        return f"{_times(ratio)} {better} than {other}"
    return f"{_times(1 / ratio)} {worse} than {other}"


def _hybrid_versus(totals: pd.Series, schemes: Sequence[str], latency: bool) -> str:
    """``hybrid 4.0x faster than dense, 1.14x faster than channel, ...`` from one model's
    network totals by scheme ('' without hybrid)."""
    others = [s for s in schemes if s != "hybrid" and s in totals]
    if "hybrid" not in totals or not others:
        return ""
    return "hybrid " + ", ".join(versus(totals[s] / totals["hybrid"], s, latency) for s in others)


@_styled
def normalised_bars(df: pd.DataFrame, metric: str = "latency_us",
                    context: str | None = None) -> Figure:
    """Grouped bars of ``metric`` (``latency_us`` or ``energy_total_pj``) per scheme per model,
    dense = 1; one panel per hardware, array, dataflow, block size and density in ``df``.

    Under each panel, per model: hybrid against every other scheme, worded by direction
    (``hybrid 1.3x faster than channel, 1.04x slower than block``; for energy ``less energy`` /
    ``more energy``). ``context``: what the frame does not say (data set, user classes, ...).
    """
    latency = metric.startswith("latency")
    parts = panels(df, ("hw", "array", "dataflow", "block", "density"))
    fig, axes = _figure(len(parts), 2.4 if len(parts) == 1 else 2.0, 1 if len(parts) < 4 else 2)
    for ax, (label, part) in zip(axes, parts, strict=True):
        _one_row_each(part, ("model", "scheme"), "normalised_bars")
        totals = network_totals(part, ["model", "scheme"])
        models = list(dict.fromkeys(totals["model"]))
        schemes = _schemes(totals)
        by_model = {m: totals[totals.model == m].set_index("scheme")[metric] for m in models}
        width = 0.8 / len(schemes)
        for i, scheme in enumerate(schemes):
            values = [rows.get(scheme, np.nan) / rows.get("dense", np.nan)
                      for rows in by_model.values()]
            x = np.arange(len(models)) + (i - (len(schemes) - 1) / 2) * width
            ax.bar(x, values, width, label=scheme, color=SCHEME_COLORS.get(scheme))
        ax.set_xticks(np.arange(len(models)), models)
        ax.set_ylabel(f"{'latency' if latency else 'energy'} (dense = 1)")
        ax.set_title(label)
        gains = {m: _hybrid_versus(rows, schemes, latency) for m, rows in by_model.items()}
        ax.set_xlabel("\n".join(textwrap.fill(f"{m}: {g}" if len(models) > 1 else g, 85)
                                for m, g in gains.items() if g), fontsize=5, loc="left")
    _legend(fig, axes)
    what = "latency per inference" if latency else "energy per inference"
    _title(fig, f"{what}, normalised to dense", df, context)
    return fig


@_styled
def energy_breakdown(df: pd.DataFrame, context: str | None = None) -> Figure:
    """Stacked bars of energy per component (µJ) for each model and scheme; one panel per
    hardware, array, dataflow, block size and density in ``df``."""
    components = [c for c in df.columns
                  if c.startswith("energy_") and c.endswith("_pj") and c != "energy_total_pj"]
    parts = panels(df, ("hw", "array", "dataflow", "block", "density"))
    fig, axes = _figure(len(parts), 2.6, 1 if len(parts) < 4 else 2)
    cmap = plt.get_cmap("tab10")
    for ax, (label, part) in zip(axes, parts, strict=True):
        _one_row_each(part, ("model", "scheme"), "energy_breakdown")
        totals = network_totals(part, ["model", "scheme"])
        one_model = totals.model.nunique() == 1
        labels = [s if one_model else f"{m} / {s}"
                  for m, s in zip(totals.model, totals.scheme, strict=True)]
        bottom = np.zeros(len(totals))
        for i, column in enumerate(components):
            values = totals[column].to_numpy() / 1e6
            name = column.removeprefix("energy_").removesuffix("_pj")
            ax.bar(range(len(totals)), values, 0.7, bottom=bottom, label=name,
                   color=cmap(i % 10))
            bottom += values
        ax.set_xticks(range(len(totals)), labels, rotation=90)
        ax.set_ylabel("energy per inference (µJ)")
        ax.set_title(label)
    _legend(fig, axes, ncols=4)
    _title(fig, "energy per inference by component", df, context)
    return fig


@_styled
def latency_vs_array(df: pd.DataFrame, context: str | None = None) -> Figure:
    """Latency (µs) against the number of PEs, one line per scheme (square arrays solid,
    rectangular ones as markers alone); one panel per model, hardware, dataflow, block size and
    density in ``df``."""
    parts = panels(df, ("model", "hw", "dataflow", "block", "density"))
    fig, axes = _figure(len(parts), 2.2, 1 if len(parts) < 3 else 2)
    for ax, (label, part) in zip(axes, parts, strict=True):
        _one_row_each(part, ("scheme", "rows", "cols"), "latency_vs_array")
        totals = network_totals(part, ["scheme", "rows", "cols"])
        totals["pes"] = totals.rows * totals.cols
        for scheme in _schemes(totals):
            line = totals[totals.scheme == scheme].sort_values("pes")
            square = line[line.rows == line.cols]
            rect = line[line.rows != line.cols]
            color = SCHEME_COLORS.get(scheme)
            ax.plot(square.pes, square.latency_us, "-o", ms=2.5, lw=1, color=color, label=scheme)
            ax.plot(rect.pes, rect.latency_us, "x", ms=3, color=color)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("processing elements (rows x cols; x = rectangular)")
        ax.set_ylabel("latency per inference (µs)")
        ax.set_title(label)
    _legend(fig, axes)
    _title(fig, "latency against array size", df, context,
           ("model", "hw", "dataflow", "block", "density"))
    return fig


@_styled
def utilization_heatmap(df: pd.DataFrame, scheme: str = "dense",
                        context: str | None = None) -> Figure:
    """MAC-weighted utilisation of one scheme over array rows x cols; one panel per model,
    hardware, dataflow, block size and density in ``df``."""
    rows = df[df.scheme == scheme]
    parts = panels(rows, ("model", "hw", "dataflow", "block", "density"))
    fig, axes = _figure(len(parts), 2.4, 2)
    for ax, (label, part) in zip(axes, parts, strict=True):
        _one_row_each(part, ("rows", "cols"), "utilization_heatmap")
        totals = network_totals(part, ["rows", "cols"])
        grid = totals.pivot(index="rows", columns="cols", values="utilization").sort_index()
        image = ax.imshow(grid.to_numpy(), origin="lower", cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(grid.shape[1]), grid.columns)
        ax.set_yticks(range(grid.shape[0]), grid.index)
        for (i, j), value in np.ndenumerate(grid.to_numpy()):
            if np.isfinite(value):
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=4.5,
                        color="white" if value < 0.6 else "black")
        ax.set_xlabel("array columns")
        ax.set_ylabel("array rows")
        ax.set_title(label)
    fig.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    _title(fig, f"utilisation of {scheme} (useful MACs per PE-cycle)", rows, context,
           ("model", "hw", "dataflow", "block", "density"))
    return fig


@_styled
def codesign_map(df: pd.DataFrame, context: str | None = None) -> Figure:
    """Hybrid latency over block size B x array size, normalised to dense on the same array;
    one panel per model, hardware, dataflow and density in ``df``."""
    parts = panels(df, ("model", "hw", "dataflow", "density"))
    fig, axes = _figure(len(parts), 2.4, 2)
    for ax, (label, part) in zip(axes, parts, strict=True):
        _one_row_each(part, ("scheme", "block", "rows", "cols"), "codesign_map")
        totals = network_totals(part, ["scheme", "block", "rows", "cols"])
        # Dense does not depend on B: one latency per array.
        dense = totals[totals.scheme == "dense"].groupby(["rows", "cols"])["latency_us"].first()
        hybrid = totals[totals.scheme == "hybrid"].copy()
        hybrid["ratio"] = hybrid.latency_us.to_numpy() / dense.loc[
            list(zip(hybrid.rows, hybrid.cols, strict=True))].to_numpy()
        hybrid["array"] = hybrid.rows.astype(str) + "x" + hybrid.cols.astype(str)
        order = hybrid.sort_values(["rows", "cols"]).array.unique()
        grid = hybrid.pivot(index="block", columns="array", values="ratio")[order].sort_index()
        image = ax.imshow(grid.to_numpy(), origin="lower", cmap="magma_r", vmin=0, vmax=1)
        ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=45)
        ax.set_yticks(range(grid.shape[0]), grid.index)
        for (i, j), value in np.ndenumerate(grid.to_numpy()):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=4.5,
                    color="white" if value > 0.5 else "black")
        ax.set_xlabel("array (rows x cols)")
        ax.set_ylabel("block size B")
        ax.set_title(label)
    fig.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    _title(fig, "hybrid latency / dense latency on the same array", df, context,
           ("model", "hw", "dataflow", "density"))
    return fig


@_styled
def accuracy_pareto(df: pd.DataFrame, context: str | None = None) -> Figure:
    """User-class accuracy against density (left) and simulated latency (right) per scheme;
    one marker shape per class count, the Pareto front of each scheme and class count a line.

    ``context``: the model, data set and array the runs used where the frame does not say."""
    fig, axes = _figure(2, 2.0, 2)
    markers = dict(zip(sorted(df["classes"].unique()), "os^Dv<>", strict=False))
    for scheme in _schemes(df):
        part = df[df.scheme == scheme]
        color = SCHEME_COLORS.get(scheme)
        for i, (classes, marker) in enumerate(markers.items()):
            sub = part[part.classes == classes]
            axes[0].scatter(sub.density, sub.accuracy, s=9, marker=marker, color=color)
            axes[1].scatter(sub.latency_us, sub.accuracy, s=9, marker=marker, color=color)
            front = pareto_front(sub, "latency_us", "accuracy")
            axes[1].plot(front.latency_us, front.accuracy, lw=0.8, color=color,
                         label=scheme if i == 0 else None)
    axes[0].set_xlabel("weight density")
    axes[0].set_xscale("log", base=2)
    axes[0].set_ylabel("user-class top-1 (%)")
    axes[1].set_xlabel("latency per inference (µs)")
    handles = [plt.Line2D([], [], ls="", marker=m, color="grey",
                          label=f"{c} user class" + ("es" if c != 1 else ""))
               for c, m in markers.items()]
    axes[0].legend(handles=handles, frameon=False, fontsize=5)
    axes[1].legend(frameon=False, fontsize=5)
    _title(fig, "user-class accuracy against density and latency", df, context,
           ("model", "hw", "array", "dataflow", "block"))
    return fig


@_styled
def roofline(df: pd.DataFrame, peak_macs_per_cycle: float, dram_bytes_per_cycle: float,
             context: str | None = None) -> Figure:
    """Per layer and scheme: attained MACs per cycle against MACs per DRAM byte, under the
    array's compute roof and the DRAM roof (log-log).

    Columns: ``scheme``, ``layer``, ``effective_macs``, ``dram_bytes``, ``total_cycles``
    (per-layer rows; a ``total`` row is left out). ``context``: the model, array and density
    where the frame does not say.
    """
    rows = df[df["layer"] != "total"]
    fig, (ax,) = _figure(1, 2.4)
    intensity = rows["effective_macs"] / rows["dram_bytes"].clip(lower=1)
    lo, hi = max(intensity.min() / 2, 1e-3), intensity.max() * 2
    x = np.geomspace(lo, hi, 200)
    ax.plot(x, np.minimum(peak_macs_per_cycle, dram_bytes_per_cycle * x), color="0.5", lw=0.8)
    ax.text(hi, peak_macs_per_cycle, f"compute roof {peak_macs_per_cycle:g} MAC/cycle",
            ha="right", va="bottom", color="0.4", fontsize=5)
    for scheme in _schemes(rows):
        part = rows[rows["scheme"] == scheme]
        ax.scatter(part["effective_macs"] / part["dram_bytes"].clip(lower=1),
                   part["effective_macs"] / part["total_cycles"].clip(lower=1), s=6,
                   color=SCHEME_COLORS.get(scheme, "0.3"), label=scheme, alpha=0.8, lw=0)
    ax.set(xscale="log", yscale="log", xlabel="useful MACs per DRAM byte",
           ylabel="useful MACs per cycle")
    ax.legend(frameon=False, ncol=3, loc="lower right")
    _title(fig, f"roofline per layer (DRAM {dram_bytes_per_cycle:g} B/cycle)", rows, context)
    return fig


def pareto_front(df: pd.DataFrame, cost: str, value: str) -> pd.DataFrame:
    """Rows not dominated by another row with lower-or-equal ``cost`` and higher ``value``."""
    ordered = df.sort_values([cost, value], ascending=[True, False])
    previous_best = ordered[value].astype(float).cummax().shift(fill_value=-np.inf)
    return ordered[ordered[value] > previous_best]


def save(fig: Figure, stem: str | Path, formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """Write ``stem.<format>`` for each of ``formats`` (each atomically), close the figure, and
    return the paths written."""
    paths = []
    for fmt in formats:
        path = Path(stem).with_suffix(f".{fmt}")
        with plt.rc_context(_STYLE):
            write_atomic(path, lambda tmp, fmt=fmt: fig.savefig(tmp, format=fmt))
        paths.append(path)
    plt.close(fig)
    return paths


def sweep_figures(df: pd.DataFrame, folder: str | Path, context: str | None = None,
                  formats: Sequence[str] = ("png", "pdf")) -> list[Path]:
    """The figures a sweep's axes allow, written to ``folder`` (``formats`` each).

    Several schemes: normalised latency and energy bars and the energy breakdown; several
    arrays: latency against array size and utilisation heat maps (dense, hybrid); several block
    sizes with dense and hybrid: the block x array co-design map. Each figure shows every row of
    ``df``: one panel per array, dataflow, block size and density swept (the axes a figure does
    not plot along), see `panels`.
    """
    folder = Path(folder)
    figures: dict[str, Figure] = {}
    if df.scheme.nunique() > 1:
        figures["latency"] = normalised_bars(df, "latency_us", context)
        figures["energy"] = normalised_bars(df, "energy_total_pj", context)
        figures["energy_breakdown"] = energy_breakdown(df, context)
    if len(_values(df, "array")) > 1:
        figures["latency_vs_array"] = latency_vs_array(df, context)
        for scheme in sorted(set(df.scheme) & {"dense", "hybrid"}):
            figures[f"utilization_{scheme}"] = utilization_heatmap(df, scheme, context)
    if len(_values(df, "block")) > 1 and {"dense", "hybrid"} <= set(df.scheme):
        figures["codesign_block_array"] = codesign_map(df, context)
    return [path for name, fig in figures.items()
            for path in save(fig, folder / name, formats)]
