"""The evaluation report's figures: one function per figure, each returning a matplotlib Figure
(Agg backend, no display needed), and `png_bytes` to render one as PNG."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from frgb.comparison import Comparison, band_rmse, importance  # noqa: E402
from frgb.contract import CODEC_BLOCK_LAYOUT, FEATURES, N_FEATURES  # noqa: E402
from frgb.loading import Corpus  # noqa: E402
from frgb.model import FrgbRegressor  # noqa: E402

#: Colours of the models in every figure.
MODEL_COLOURS = {"frgb": "#1f77b4", "prior": "#7f7f7f", "trees": "#2ca02c",
                 "mlp": "#d62728", "prior+mlp": "#9467bd"}
#: Input names for the importance figure: the six features, then the codec slots.
INPUT_NAMES = list(FEATURES) + [s.replace("encoder_onehot[", "").rstrip("]") for s in CODEC_BLOCK_LAYOUT]


def _encoder_colours(encoders) -> dict[str, tuple]:
    cmap = plt.get_cmap("tab10")
    return {e: cmap(i % 10) for i, e in enumerate(sorted(set(encoders)))}


def scatter_figure(result: Comparison, names: list[str]) -> plt.Figure:
    """Top: predicted against measured VMAF, one panel per model, coloured by encoder. Bottom:
    the same residuals (predicted - measured) on a scale where the models differ."""
    corpus = result.corpus
    colours = _encoder_colours(corpus.encoder)
    fig, axes = plt.subplots(2, len(names), figsize=(3.6 * len(names), 7.2), squeeze=False,
                             gridspec_kw={"height_ratios": [3, 2]}, sharex=True)
    limit = max(2.0, float(np.ceil(max(np.percentile(np.abs(result.residual(n)), 99.5) for n in names))))
    for j, name in enumerate(names):
        pred, m = result.predictions[name].score, result.summary(name)["mean_over_sources"]
        top, bottom = axes[0, j], axes[1, j]
        for enc, colour in colours.items():
            rows = corpus.encoder == enc
            top.scatter(corpus.target[rows], pred[rows], s=7, alpha=0.7, color=colour, label=enc, linewidths=0)
            bottom.scatter(corpus.target[rows], (pred - corpus.target)[rows], s=7, alpha=0.7, color=colour,
                           linewidths=0)
        top.plot([0, 100], [0, 100], color="black", lw=0.8)
        bottom.axhline(0, color="black", lw=0.8)
        top.set_title(f"{name}\nmean PLCC {m['plcc']:.4f}, RMSE {m['rmse']:.2f}", fontsize=10)
        top.set_xlim(0, 101)
        top.set_ylim(0, 101)
        bottom.set_ylim(-limit, limit)
        bottom.set_xlabel("measured VMAF")
        top.grid(alpha=0.3)
        bottom.grid(alpha=0.3)
    axes[0, 0].set_ylabel("predicted VMAF (held-out source)")
    axes[1, 0].set_ylabel("predicted - measured")
    axes[0, 0].legend(fontsize=7, markerscale=2, loc="upper left")
    fig.suptitle("Leave-one-source-out predictions, coloured by encoder", fontsize=11)
    fig.tight_layout()
    return fig


def _grouped_boxes(ax, groups: list[str], result: Comparison, names: list[str], key: np.ndarray,
                   vertical: bool) -> None:
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        residual = result.residual(name)
        data = [residual[key == g] for g in groups]
        positions = np.arange(len(groups)) + (j - (len(names) - 1) / 2) * width
        box = ax.boxplot(data, positions=positions, widths=width * 0.9, patch_artist=True,
                         orientation="vertical" if vertical else "horizontal", showfliers=True, flierprops={"markersize": 2, "alpha": 0.5},
                         medianprops={"color": "black"})
        for patch in box["boxes"]:
            patch.set_facecolor(MODEL_COLOURS.get(name, "#9467bd"))
            patch.set_alpha(0.75)
        ax.plot([], [], color=MODEL_COLOURS.get(name, "#9467bd"), lw=6, alpha=0.75, label=name)


def residuals_by_encoder_figure(result: Comparison, names: list[str]) -> plt.Figure:
    """Box plots of held-out residuals for each encoder, one box per model."""
    encoders = sorted(set(result.corpus.encoder.tolist()))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.4 * len(encoders)), 4.5))
    _grouped_boxes(ax, encoders, result, names, result.corpus.encoder, vertical=True)
    ax.set_xticks(range(len(encoders)), encoders)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel("predicted - measured VMAF")
    ax.set_title("Held-out residuals per encoder (leave-one-source-out)")
    ax.legend(fontsize=8, ncol=len(names))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def residuals_by_source_figure(result: Comparison, names: list[str]) -> plt.Figure:
    """Box plots of residuals for each held-out source, one box per model."""
    sources = result.folds
    fig, ax = plt.subplots(figsize=(8.5, max(4.5, 0.5 * len(sources) * max(1, len(names) / 3))))
    _grouped_boxes(ax, sources, result, names, result.corpus.source, vertical=False)
    ax.set_yticks(range(len(sources)), sources, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("predicted - measured VMAF")
    ax.set_title("Residuals per held-out source (each predicted by a model that never saw it)", pad=24)
    ax.legend(fontsize=8, ncol=len(names), loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return fig


def error_by_range_figure(result: Comparison, names: list[str]) -> plt.Figure:
    """Held-out RMSE in each band of measured VMAF, one line per model (log scale)."""
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    for name in names:
        bands = band_rmse(result, name)
        ax.plot(range(len(bands)), [b[2] for b in bands], marker="o", label=name,
                color=MODEL_COLOURS.get(name, "#9467bd"))
    bands = band_rmse(result, names[0])
    ax.set_xticks(range(len(bands)), [f"{b[0]}\n(n={b[1]})" for b in bands], fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("measured VMAF band")
    ax.set_ylabel("RMSE (VMAF), log scale")
    ax.set_title("Held-out error against the VMAF range")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def importance_figure(models: dict[str, FrgbRegressor], corpus: Corpus) -> plt.Figure:
    """Gain and mean |SHAP| per input, one row of panels per model."""
    fig, axes = plt.subplots(len(models), 2, figsize=(10, 4.2 * len(models)), squeeze=False)
    y = np.arange(len(INPUT_NAMES))
    for i, (title, model) in enumerate(models.items()):
        gain, shap = importance(model, corpus)
        for ax, values, label in ((axes[i, 0], gain / max(gain.sum(), 1e-12), "share of total gain"),
                                  (axes[i, 1], shap, "mean |SHAP contribution| (VMAF)")):
            ax.barh(y, values, color=["#1f77b4"] * N_FEATURES + ["#ff7f0e"] * (len(y) - N_FEATURES))
            ax.set_yticks(y, INPUT_NAMES, fontsize=8)
            ax.invert_yaxis()
            ax.set_xlabel(label)
            ax.grid(axis="x", alpha=0.3)
        axes[i, 0].set_title(f"{title}: gain", fontsize=10)
        axes[i, 1].set_title(f"{title}: SHAP", fontsize=10)
    fig.suptitle("What the trees use (fitted on the whole corpus; blue: features, orange: codec block)",
                 fontsize=11)
    fig.tight_layout()
    return fig


def png_bytes(fig: plt.Figure) -> bytes:
    """`fig` as PNG bytes (the figure is closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    return buffer.getvalue()
