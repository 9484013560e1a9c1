"""Choosing the LightGBM settings by leave-one-source-out on a corpus.

Every candidate (learning rate x leaves x minimum leaf size) is fitted once per fold with the
largest number of trees, and scored at every smaller tree count from the same fit, so the
search costs one fit per candidate and fold. 0 trees is the prior alone. A candidate is eligible
only if the trees never make the prior worse: on no held-out source does RMSE rise more than
`HARM_TOLERANCE` above the prior's, and the codec-blind vector stays at least as good as the
prior. The eligible candidate with the lowest mean RMSE over sources wins.
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from frgb.evaluation import blind_matrix
from frgb.loading import Corpus
from frgb.metrics import by_group
from frgb.model import default_trees
from frgb.training import FitOptions, design_matrix, fit_model

SEARCH = {
    "learning_rate": (0.02, 0.05, 0.1),
    "num_leaves": (2, 4, 8, 15),
    "min_child_samples": (40, 120),
}
TREE_COUNTS = (0, 10, 25, 50, 100, 200, 400)
#: VMAF by which a held-out source may get worse than the prior alone and still be "no harm".
HARM_TOLERANCE = 0.05


@dataclass
class Candidate:
    params: dict
    rmse: float  # mean over sources
    plcc: float
    blind_rmse: float
    per_source_rmse: dict[str, float]
    worst_harm: float = 0.0  # largest per-source RMSE increase over the prior alone
    eligible: bool = False


@dataclass
class Tuning:
    prior: str | None
    candidates: list[Candidate] = field(default_factory=list)
    best: Candidate | None = None


def _staged(corpus: Corpus, options: FitOptions, prior: str | None, trees: dict, counts) -> tuple[dict, dict]:
    """Out-of-fold predictions at each tree count, with the row's codec block and blind."""
    X = design_matrix(corpus)
    pred = {k: np.empty(len(corpus)) for k in counts}
    blind = {k: np.empty(len(corpus)) for k in counts}
    top = max(counts)
    for g in sorted(set(corpus.group.tolist())):
        held = corpus.group == g
        fold_options = FitOptions(prior=options.prior, trees={**trees, "n_estimators": max(top, 1)},
                                  codec_blind=options.codec_blind, monotone=options.monotone, seed=options.seed)
        model = fit_model(corpus.subset(~held), fold_options, prior)
        for rows, out in ((X[held], pred), (blind_matrix(X[held]), blind)):
            base = model.prior_score(rows)
            transformed = model.pipeline_[:-1].transform(rows)
            booster = model.pipeline_.named_steps["trees"]
            for k in counts:
                trees_part = booster.predict(transformed, num_iteration=k) if k else 0.0
                out[k][held] = np.clip(base + trees_part, 0, 100)
    return pred, blind


def _mean(per_group: dict, key: str) -> float:
    return float(np.nanmean([m[key] for m in per_group.values()]))


def tune(corpus: Corpus, options: FitOptions, prior: str | None, search: dict = SEARCH,
         counts=TREE_COUNTS, on_step: Callable[[int, int], None] = lambda i, n: None) -> Tuning:
    result = Tuning(prior)
    grid = [dict(zip(search, values)) for values in itertools.product(*search.values())]
    reference = None
    for i, params in enumerate(grid):
        on_step(i, len(grid))
        pred, blind = _staged(corpus, options, prior, params, counts)
        for k in counts:
            if k == 0 and (prior is None or reference is not None):
                continue
            folds = by_group(pred[k], corpus.target, corpus.source)
            blind_folds = by_group(blind[k], corpus.target, corpus.source)
            cand = Candidate(
                params={**default_trees(prior), **params, "n_estimators": k} if k else {"n_estimators": 0},
                rmse=_mean(folds, "rmse"), plcc=_mean(folds, "plcc"), blind_rmse=_mean(blind_folds, "rmse"),
                per_source_rmse={s: m["rmse"] for s, m in folds.items()},
            )
            if k == 0:
                reference = cand
            result.candidates.append(cand)
    on_step(len(grid), len(grid))
    for cand in result.candidates:
        if reference is None:
            cand.eligible = cand.params["n_estimators"] > 0
            continue
        cand.worst_harm = max(cand.per_source_rmse[s] - reference.per_source_rmse[s] for s in cand.per_source_rmse)
        cand.eligible = cand.worst_harm <= HARM_TOLERANCE and cand.blind_rmse <= reference.rmse
    eligible = [c for c in result.candidates if c.eligible] or [reference]
    result.best = min(eligible, key=lambda c: (round(c.rmse, 4), c.params["n_estimators"]))
    return result


def report_markdown(tuning: Tuning, corpus: Corpus, command: str, baseline: Tuning | None = None) -> str:
    """reports/tuning.md: every candidate's held-out figures and the choice."""
    def row(c: Candidate) -> list:
        p = c.params
        return [p.get("n_estimators"), p.get("learning_rate", "-"), p.get("num_leaves", "-"),
                p.get("min_child_samples", "-"), f"{c.rmse:.4f}", f"{c.plcc:.5f}", f"{c.blind_rmse:.4f}",
                f"{c.worst_harm:+.3f}", "yes" if c.eligible else "no"]

    header = ["trees", "learning rate", "leaves", "min leaf", "LOSO RMSE", "LOSO PLCC", "codec-blind RMSE",
              "worst source vs prior", "eligible"]
    ranked = sorted(tuning.candidates, key=lambda c: c.rmse)
    lines = [
        "# Choosing the default LightGBM settings",
        "",
        f"Leave-one-source-out on `{os.path.relpath(corpus.path)}` ({len(corpus)} rows, {len(set(corpus.group.tolist()))} sources), "
        f"teacher prior `{tuning.prior}`, trees fitted on the residual (with codec-blind copies of every row). "
        "Figures are means over the held-out sources. A setting is eligible only if no held-out source gets "
        f"more than {HARM_TOLERANCE} VMAF worse than the prior alone and the codec-blind vector stays at least as "
        "good as the prior; the eligible setting with the lowest mean RMSE is the default "
        "(`frgb.model.DEFAULT_TREES`).",
        "",
        "Reproduce with:",
        "",
        "```",
        command,
        "```",
        "",
        f"**Chosen**: {tuning.best.params} (LOSO RMSE {tuning.best.rmse:.4f}, PLCC {tuning.best.plcc:.5f}).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(str(v) for v in row(c)) + " |" for c in ranked]
    if baseline is not None and baseline.best is not None:
        b = baseline.best
        lines += ["", f"Without the prior (plain LightGBM on the score, same search), the best setting was {b.params}: "
                  f"LOSO RMSE {b.rmse:.4f}, PLCC {b.plcc:.5f}. It is the default of `frgb fit --prior none` "
                  "(`frgb.model.PLAIN_TREES`)."]
    return "\n".join(lines) + "\n"
