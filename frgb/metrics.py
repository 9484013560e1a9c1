"""Agreement between predicted and measured VMAF: PLCC, SROCC, RMSE; coverage and width of intervals."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr


def scores(pred, truth) -> dict[str, float]:
    """PLCC, SROCC, RMSE and the row count (correlations are NaN below 3 rows or with no spread)."""
    pred, truth = np.asarray(pred, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    n = len(truth)
    flat = n < 3 or np.ptp(pred) == 0 or np.ptp(truth) == 0
    return {
        "plcc": float("nan") if flat else float(pearsonr(pred, truth)[0]),
        "srocc": float("nan") if flat else float(spearmanr(pred, truth)[0]),
        "rmse": float(np.sqrt(np.mean((pred - truth) ** 2))) if n else float("nan"),
        "n": n,
    }


def by_group(pred, truth, groups) -> dict[str, dict[str, float]]:
    """`scores` for each distinct value of `groups`, in sorted order."""
    groups = np.asarray(groups)
    return {str(g): scores(np.asarray(pred)[groups == g], np.asarray(truth)[groups == g]) for g in sorted(set(groups))}


def interval_figures(lower: np.ndarray, upper: np.ndarray, target: np.ndarray) -> dict:
    """Empirical coverage (share of rows with lower <= target <= upper), mean and median width."""
    inside = (target >= lower) & (target <= upper)
    width = upper - lower
    n = len(target)
    return {
        "coverage": float(inside.mean()) if n else float("nan"),
        "mean_width": float(width.mean()) if n else float("nan"),
        "median_width": float(np.median(width)) if n else float("nan"),
        "n": n,
    }


def interval_summary(lower: np.ndarray, upper: np.ndarray, corpus) -> dict:
    """`interval_figures` of a corpus's rows: all of them, per encoder and per source."""
    def by(keys):
        return {str(k): interval_figures(lower[keys == k], upper[keys == k], corpus.target[keys == k])
                for k in sorted(set(keys.tolist()))}

    return {**interval_figures(lower, upper, corpus.target), "per_encoder": by(corpus.encoder),
            "per_source": by(corpus.source)}
