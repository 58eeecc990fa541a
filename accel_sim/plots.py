"""Paper-style figures from tidy result tables (one row per design point and layer).

Every function takes a pandas DataFrame and returns a matplotlib Figure sized for one paper column
(3.5 in wide, 7 pt text); :func:`save` writes it as PNG and PDF. Schemes keep one colour each in
every figure (:data:`SCHEME_COLORS`). Network totals are sums over layers of the per-layer rows.

Columns used: ``model``, ``scheme``, ``rows``, ``cols``, ``dataflow``, ``block``, ``layer``,
``total_cycles``, ``latency_us``, ``energy_total_pj``, ``energy_<component>_pj``, ``utilization``,
``macs``; accuracy figures use ``classes``, ``density``, ``accuracy`` and ``latency_us``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
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

_STYLE = {
    "font.size": 7,
    "axes.titlesize": 7,
    "axes.labelsize": 7,
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


def _figure(height_in: float = 2.2, ncols: int = 1) -> tuple[Figure, np.ndarray]:
    fig, axes = plt.subplots(1, ncols, figsize=(COLUMN_WIDTH_IN, height_in), squeeze=False)
    return fig, axes[0]


def _schemes(df: pd.DataFrame) -> list[str]:
    present = set(df["scheme"])
    return [s for s in SCHEME_ORDER if s in present] + sorted(present - set(SCHEME_ORDER))


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


@_styled
def normalised_bars(df: pd.DataFrame, metric: str = "latency_us") -> Figure:
    """Grouped bars of ``metric`` per scheme per model, dense = 1.

    Above each model's hybrid bar: its speed-up (or energy reduction) over every other scheme.
    """
    totals = network_totals(df, ["model", "scheme"])
    models = list(dict.fromkeys(totals["model"]))
    schemes = _schemes(totals)
    fig, (ax,) = _figure(2.4)
    width = 0.8 / len(schemes)
    for i, scheme in enumerate(schemes):
        values = []
        for model in models:
            rows = totals[totals.model == model].set_index("scheme")[metric]
            values.append(rows.get(scheme, np.nan) / rows.get("dense", np.nan))
        x = np.arange(len(models)) + (i - (len(schemes) - 1) / 2) * width
        ax.bar(x, values, width, label=scheme, color=SCHEME_COLORS.get(scheme))
        if scheme == "hybrid":
            for xi, model in zip(x, models, strict=True):
                rows = totals[totals.model == model].set_index("scheme")[metric]
                gains = [f"{rows[s] / rows['hybrid']:.1f}x {s[:5]}" for s in schemes
                         if s != "hybrid" and s in rows]
                ax.text(xi, rows["hybrid"] / rows.get("dense", np.nan) + 0.03, "\n".join(gains),
                        ha="center", va="bottom", fontsize=4.5)
    ax.set_xticks(np.arange(len(models)), models)
    label = "latency" if metric.startswith("latency") else "energy"
    ax.set_ylabel(f"normalised {label} (dense = 1)")
    ax.set_ylim(0, 1.45)
    ax.legend(ncols=3, frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    return fig


@_styled
def energy_breakdown(df: pd.DataFrame) -> Figure:
    """Stacked bars of energy per component (uJ) for each model and scheme."""
    components = [c for c in df.columns
                  if c.startswith("energy_") and c.endswith("_pj") and c != "energy_total_pj"]
    totals = network_totals(df, ["model", "scheme"])
    one_model = totals.model.nunique() == 1
    labels = [s if one_model else f"{m} / {s}"
              for m, s in zip(totals.model, totals.scheme, strict=True)]
    fig, (ax,) = _figure(2.6)
    bottom = np.zeros(len(totals))
    cmap = plt.get_cmap("tab10")
    for i, column in enumerate(components):
        values = totals[column].to_numpy() / 1e6
        name = column.removeprefix("energy_").removesuffix("_pj")
        ax.bar(range(len(totals)), values, 0.7, bottom=bottom, label=name, color=cmap(i % 10))
        bottom += values
    ax.set_xticks(range(len(totals)), labels, rotation=90)
    ax.set_ylabel("energy per inference (uJ)")
    ax.legend(ncols=2, frameon=False, fontsize=5)
    return fig


@_styled
def latency_vs_array(df: pd.DataFrame) -> Figure:
    """Latency (us) against the number of PEs, one line per scheme; square arrays solid,
    rectangular ones as markers alone."""
    totals = network_totals(df, ["scheme", "rows", "cols"])
    totals["pes"] = totals.rows * totals.cols
    fig, (ax,) = _figure(2.2)
    for scheme in _schemes(totals):
        part = totals[totals.scheme == scheme].sort_values("pes")
        square = part[part.rows == part.cols]
        rect = part[part.rows != part.cols]
        color = SCHEME_COLORS.get(scheme)
        ax.plot(square.pes, square.latency_us, "-o", ms=2.5, lw=1, color=color, label=scheme)
        ax.plot(rect.pes, rect.latency_us, "x", ms=3, color=color)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("processing elements (rows x cols; x = rectangular)")
    ax.set_ylabel("latency per inference (us)")
    ax.legend(ncols=2, frameon=False)
    return fig


@_styled
def utilization_heatmap(df: pd.DataFrame, scheme: str = "dense") -> Figure:
    """MAC-weighted utilisation of one scheme over array rows x cols."""
    totals = network_totals(df[df.scheme == scheme], ["rows", "cols"])
    grid = totals.pivot(index="rows", columns="cols", values="utilization").sort_index()
    fig, (ax,) = _figure(2.6)
    image = ax.imshow(grid.to_numpy(), origin="lower", cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(grid.shape[1]), grid.columns)
    ax.set_yticks(range(grid.shape[0]), grid.index)
    for (i, j), value in np.ndenumerate(grid.to_numpy()):
        if np.isfinite(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=4.5,
                    color="white" if value < 0.6 else "black")
    ax.set_xlabel("array columns")
    ax.set_ylabel("array rows")
    ax.set_title(f"utilisation, {scheme}")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


@_styled
def codesign_map(df: pd.DataFrame) -> Figure:
    """Hybrid latency over block size B x array size, normalised to dense on the same array."""
    totals = network_totals(df, ["scheme", "block", "rows", "cols"])
    # Dense does not depend on B: one latency per array.
    dense = totals[totals.scheme == "dense"].groupby(["rows", "cols"])["latency_us"].first()
    hybrid = totals[totals.scheme == "hybrid"].copy()
    hybrid["ratio"] = hybrid.latency_us.to_numpy() / dense.loc[
        list(zip(hybrid.rows, hybrid.cols, strict=True))].to_numpy()
    hybrid["array"] = hybrid.rows.astype(str) + "x" + hybrid.cols.astype(str)
    order = hybrid.sort_values(["rows", "cols"]).array.unique()
    grid = hybrid.pivot(index="block", columns="array", values="ratio")[order].sort_index()
    fig, (ax,) = _figure(2.4)
    image = ax.imshow(grid.to_numpy(), origin="lower", cmap="magma_r", vmin=0, vmax=1)
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=45)
    ax.set_yticks(range(grid.shape[0]), grid.index)
    for (i, j), value in np.ndenumerate(grid.to_numpy()):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=4.5,
                color="white" if value > 0.5 else "black")
    ax.set_xlabel("array (rows x cols)")
    ax.set_ylabel("block size B")
    ax.set_title("hybrid latency / dense latency")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return fig


@_styled
def accuracy_pareto(df: pd.DataFrame) -> Figure:
    """User-class accuracy against density (left) and simulated latency (right) per scheme;
    one marker shape per class count, the Pareto front of each scheme and class count a line."""
    fig, axes = _figure(2.0, ncols=2)
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
    axes[1].set_xlabel("latency (us)")
    handles = [plt.Line2D([], [], ls="", marker=m, color="grey", label=f"{c} classes")
               for c, m in markers.items()]
    axes[0].legend(handles=handles, frameon=False, fontsize=5)
    axes[1].legend(frameon=False, fontsize=5)
    fig.tight_layout()
    return fig


@_styled
def roofline(df: pd.DataFrame, peak_macs_per_cycle: float, dram_bytes_per_cycle: float) -> Figure:
    """Per layer and scheme: attained MACs per cycle against MACs per DRAM byte, under the
    array's compute roof and the DRAM roof (log-log).

    Columns: ``scheme``, ``layer``, ``effective_macs``, ``dram_bytes``, ``total_cycles``
    (per-layer rows; a ``total`` row is left out).
    """
    rows = df[df["layer"] != "total"]
    fig, (ax,) = _figure(2.4)
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
    return fig


def pareto_front(df: pd.DataFrame, cost: str, value: str) -> pd.DataFrame:
    """Rows not dominated by another row with lower-or-equal ``cost`` and higher ``value``."""
    ordered = df.sort_values([cost, value], ascending=[True, False])
    previous_best = ordered[value].astype(float).cummax().shift(fill_value=-np.inf)
    return ordered[ordered[value] > previous_best]


def save(fig: Figure, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.pdf`` (each atomically) and close the figure."""
    paths = []
    for suffix in (".png", ".pdf"):
        path = Path(stem).with_suffix(suffix)
        with plt.rc_context(_STYLE):
            write_atomic(path, lambda tmp, fmt=suffix[1:]: fig.savefig(tmp, format=fmt))
        paths.append(path)
    plt.close(fig)
    return paths


def sweep_figures(df: pd.DataFrame, folder: str | Path) -> list[Path]:
    """The figures a sweep's axes allow, written to ``folder`` (PNG + PDF each).

    All at the first density swept. Several schemes: normalised latency and energy bars and
    the energy breakdown (on the first array, dataflow and block size); several arrays: latency
    against array size and utilisation heat maps; several block sizes with dense and hybrid:
    the block x array co-design map.
    """
    folder = Path(folder)
    sparse = df[df.scheme != "dense"]
    if len(sparse):  # one density: the first one swept
        df = df[(df.scheme == "dense") | (df.density == sparse.density.iloc[0])]
    first = df[(df.rows == df.rows.iloc[0]) & (df.cols == df.cols.iloc[0])
               & (df.dataflow == df.dataflow.iloc[0]) & (df.block == df.block.iloc[0])]
    figures: dict[str, Figure] = {}
    if first.scheme.nunique() > 1:
        figures["latency"] = normalised_bars(first, "latency_us")
        figures["energy"] = normalised_bars(first, "energy_total_pj")
        figures["energy_breakdown"] = energy_breakdown(first)
    arrays = df[(df.model == df.model.iloc[0]) & (df.dataflow == df.dataflow.iloc[0])
                & (df.block == df.block.iloc[0])]
    if arrays[["rows", "cols"]].drop_duplicates().shape[0] > 1:
        figures["latency_vs_array"] = latency_vs_array(arrays)
        for scheme in sorted(set(arrays.scheme) & {"dense", "hybrid"}):
            figures[f"utilization_{scheme}"] = utilization_heatmap(arrays, scheme)
    if df.block.nunique() > 1 and {"dense", "hybrid"} <= set(df.scheme):
        figures["codesign_block_array"] = codesign_map(df[df.model == df.model.iloc[0]])
    return [path for name, fig in figures.items() for path in save(fig, folder / name)]
