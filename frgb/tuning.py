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
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from frgb.contract import with_codec_blind
from frgb.cv import corpus_folds, mean_of_defined
from frgb.loading import Corpus, design_matrix
from frgb.metrics import by_group
from frgb.model import default_trees
from frgb.training import FitOptions, fit_model

#: The settings searched: every combination, each at every count of TREE_COUNTS.
SEARCH = {
    "learning_rate": (0.02, 0.05, 0.1),
    "num_leaves": (2, 4, 8, 15),
    "min_child_samples": (40, 120),
}
#: Tree counts scored from each fit (0: the prior alone).
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
    fold_options = replace(options, trees={**trees, "n_estimators": max(max(counts), 1)})
    for held in corpus_folds(corpus):
        model = fit_model(corpus.subset(~held), fold_options, prior)
        for rows, out in ((X[held], pred), (with_codec_blind(X[held]), blind)):
            for k, staged in zip(counts, model.staged_predict(rows, counts)):
                out[k][held] = staged
    return pred, blind


def _mean(per_group: dict, key: str) -> float:
    return mean_of_defined([m[key] for m in per_group.values()])


def tune(corpus: Corpus, options: FitOptions, prior: str | None, search: dict = SEARCH,
         counts=TREE_COUNTS, on_step: Callable[[int, int], None] | None = None) -> Tuning:
    """Every candidate of `search` at every tree count, scored leave-one-source-out; `best` is the
    eligible one with the lowest mean RMSE (`on_step(i, n)` before candidate i of n, and at the end)."""
    on_step = on_step or (lambda i, n: None)
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
