"""Leave-one-source-out cross-validation: one splitter, and out-of-fold prediction on it.

Rows of one source share their errors, so every held-out figure frgb reports comes from models
that never saw the held-out source. The folds are scikit-learn's LeaveOneGroupOut over the
source key (`src_sha256`, else `src`): one fold per source, in sorted order. Evaluation, tuning
and interval calibration all use `source_folds`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
from sklearn.model_selection import LeaveOneGroupOut

from frgb.contract import with_codec_blind
from frgb.errors import FrgbError
from frgb.loading import Corpus, design_matrix
from frgb.metrics import by_group, scores

#: Progress callback of a fold loop: on_fold(i, n, note) before fold i of n.
OnFold = Callable[[int, int, str], None]


def source_folds(groups, labels=None, on_fold: OnFold | None = None) -> Iterator[np.ndarray]:
    """The held-out mask of each leave-one-source-out fold over `groups`, in sorted group order.

    `labels` names each row's source for `on_fold` (default: the group key)."""
    groups = np.asarray(groups)
    labels = groups if labels is None else np.asarray(labels)
    splitter = LeaveOneGroupOut()
    if len(np.unique(groups)) < 2:
        raise FrgbError("leave-one-source-out needs at least two sources in the corpus")
    n = splitter.get_n_splits(groups=groups)
    for i, (_, test) in enumerate(splitter.split(groups, groups=groups)):
        held = np.zeros(len(groups), dtype=bool)
        held[test] = True
        if on_fold is not None:
            on_fold(i, n, str(labels[test[0]]))
        yield held


def corpus_folds(corpus: Corpus, on_fold: OnFold | None = None) -> Iterator[np.ndarray]:
    """`source_folds` of a corpus, reported by readable source name."""
    return source_folds(corpus.group, corpus.source, on_fold)


@dataclass
class Predictions:
    """Predictions for every row of a corpus, with the row's codec block and with the blind one."""

    score: np.ndarray
    blind: np.ndarray


def out_of_fold(corpus: Corpus, fit: Callable[[Corpus], object], on_fold: OnFold | None = None) -> Predictions:
    """Leave-one-source-out: for each source, fit on the others and predict it."""
    X = design_matrix(corpus)
    score, blind = np.empty(len(corpus)), np.empty(len(corpus))
    for held in corpus_folds(corpus, on_fold):
        model = fit(corpus.subset(~held))
        score[held] = model.predict(X[held])
        blind[held] = model.predict(with_codec_blind(X[held]))
    return Predictions(score, blind)


def mean_over_sources(pred: np.ndarray, corpus: Corpus) -> dict[str, float]:
    """PLCC, SROCC and RMSE averaged over the sources (each held-out source one fold)."""
    folds = by_group(pred, corpus.target, corpus.source).values()
    return {k: mean_of_defined([f[k] for f in folds]) for k in ("plcc", "srocc", "rmse")}


def mean_of_defined(values: list[float]) -> float:
    """The mean of the values that are not NaN (a fold of under three rows has no correlation);
    NaN if none is."""
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def summarise(pred: Predictions, corpus: Corpus) -> dict:
    """Pooled, per-source (fold) and per-encoder figures, with and without the codec block."""
    return {
        "pooled": scores(pred.score, corpus.target),
        "mean_over_sources": mean_over_sources(pred.score, corpus),
        "per_source": by_group(pred.score, corpus.target, corpus.source),
        "per_encoder": by_group(pred.score, corpus.target, corpus.encoder),
        "codec_blind": {
            "pooled": scores(pred.blind, corpus.target),
            "mean_over_sources": mean_over_sources(pred.blind, corpus),
        },
    }
