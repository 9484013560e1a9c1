"""Agreement between predicted and measured VMAF: PLCC, SROCC, RMSE."""

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
