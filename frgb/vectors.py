"""The codec vectors real callers send, and how a model's answers move under each of them.

A graph is trained on one encoding of the codec block (its layout's: preset ordinal / 9,
crf / 63). The callers that exist send others (shared/CONSUMERS.md):

    card      the layout's own encoding (frgb eval, frgb predict, the fork's v2 trainer)
    blind     the codec-blind vector: unknown = 1, preset_norm = crf_norm = 0.5
    fast      the fork's `vmaf-tune fast` proxy: the encoder's slot, preset_norm 0.5 and the CRF
              normalised over its search range, (crf - 10) / 41 (clipped to [0, 1]: the proxy only
              sends CRFs inside its range)
    libvmaf   a libvmaf build that runs the model per frame: unknown = 1, preset_norm = crf_norm = 0
    zeros     a failure path: the whole block 0

`vector_figures` scores one predictor under each vector (what `frgb eval MODEL` prints);
`vector_loso` does so leave-one-source-out, every fold's model fitted on the other sources
(what reports/codec-vectors.md records). The bounds: under every vector no row's point score
moves more than POINT_BOUND VMAF from its score under the card vector, and interval coverage
stays within COVERAGE_BOUND of the level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from frgb.contract import Layout, codec_blocks, layout_named
from frgb.cv import OnFold, corpus_folds
from frgb.intervals import fit_intervals
from frgb.loading import Corpus
from frgb.metrics import by_group, interval_figures, scores
from frgb.training import FitOptions, fit_model

#: Largest move of any row's point score from its score under the card vector (VMAF).
POINT_BOUND = 0.05
#: Largest distance of interval coverage from the level.
COVERAGE_BOUND = 0.02
#: The CRF search range of the fork's fast path (`fast.py`: crf_lo, crf_hi).
FAST_CRF_RANGE = (10.0, 51.0)


@dataclass(frozen=True)
class CallerVector:
    name: str
    sender: str
    block: Callable[[Layout, Corpus], np.ndarray]  # (N, codec width) for the corpus's rows


def card_blocks(layout: Layout, corpus: Corpus) -> np.ndarray:
    return codec_blocks(corpus.encoder.tolist(), corpus.preset.tolist(), corpus.crf, layout)[0]


def _constant(layout: Layout, corpus: Corpus, values) -> np.ndarray:
    return np.tile(np.asarray(values, dtype=np.float64), (len(corpus), 1))


def _fast(layout: Layout, corpus: Corpus) -> np.ndarray:
    block = card_blocks(layout, corpus)
    lo, hi = FAST_CRF_RANGE
    block[:, -2] = 0.5
    block[:, -1] = np.clip((corpus.crf - lo) / (hi - lo), 0.0, 1.0)
    return block


def _libvmaf(layout: Layout, corpus: Corpus) -> np.ndarray:
    block = np.zeros((len(corpus), layout.codec_width))
    block[:, layout.unknown_slot] = 1.0
    return block


VECTORS: tuple[CallerVector, ...] = (
    CallerVector("card", "the layout's own encoding (frgb eval and predict; the fork's v2 trainer)", card_blocks),
    CallerVector("blind", "a caller without codec metadata (the contract's codec-blind vector)",
                 lambda layout, corpus: _constant(layout, corpus, layout.codec_blind)),
    CallerVector("fast", "vmaf-tune fast: preset_norm 0.5, crf_norm (crf - 10) / 41", _fast),
    CallerVector("libvmaf", "libvmaf per frame (successor): unknown = 1, preset_norm = crf_norm = 0", _libvmaf),
    CallerVector("zeros", "a failure path: all zeros",
                 lambda layout, corpus: np.zeros((len(corpus), layout.codec_width))),
)


def _summary(outputs: dict[str, list[np.ndarray]], corpus: Corpus, level: float | None) -> dict:
    """Per vector: pooled and mean-over-sources scores, the move from the card vector's scores and,
    with intervals, coverage and width; `holds` says whether every bound holds."""
    card = outputs["card"][0]
    result = {}
    for name, out in outputs.items():
        move = np.abs(out[0] - card)
        per_source = by_group(out[0], corpus.target, corpus.source)
        figures = {**scores(out[0], corpus.target),
                   "mean_rmse_over_sources": float(np.mean([m["rmse"] for m in per_source.values()])),
                   "max_move": float(move.max()), "mean_move": float(move.mean())}
        holds = figures["max_move"] <= POINT_BOUND
        if len(out) == 3:
            figures["interval"] = interval_figures(out[1], out[2], corpus.target)
            figures["interval"]["per_encoder"] = {
                str(e): interval_figures(out[1][corpus.encoder == e], out[2][corpus.encoder == e],
                                         corpus.target[corpus.encoder == e])["coverage"]
                for e in sorted(set(corpus.encoder.tolist()))}
            if level is not None:
                holds &= abs(figures["interval"]["coverage"] - level) <= COVERAGE_BOUND
        figures["holds"] = bool(holds)
        result[name] = figures
    return result


def vector_figures(run: Callable[[np.ndarray, np.ndarray], list[np.ndarray]], layout: Layout, corpus: Corpus,
                   level: float | None = None) -> dict:
    """The figures of a predictor `run(features, codec) -> [score, (lower, upper)]` under each vector."""
    outputs = {v.name: run(corpus.features, v.block(layout, corpus)) for v in VECTORS}
    return _summary(outputs, corpus, level)


def vector_loso(corpus: Corpus, options: FitOptions, prior: str | None, level: float | None = None,
                on_fold: OnFold | None = None) -> dict:
    """Leave-one-source-out: for each source, the model of `options` (with a `level` interval, as
    frgb fit --intervals makes it) fitted on the other sources answers that source's rows under
    each vector. `corpus` is in the layout of `options`."""
    layout = layout_named(options.layout)
    blocks = {v.name: v.block(layout, corpus) for v in VECTORS}
    outputs = {name: [np.empty(len(corpus)) for _ in range(1 if level is None else 3)] for name in blocks}
    for held in corpus_folds(corpus, on_fold):
        part = corpus.subset(~held)
        model = fit_model(part, options, prior) if level is None else fit_intervals(part, options, prior, level)
        for name, block in blocks.items():
            X = np.hstack([corpus.features[held], block[held]])
            values = [model.predict(X)] if level is None else model.predict_interval(X)
            for array, value in zip(outputs[name], values):
                array[held] = value
    guard = layout.codec_guard if options.codec_guard is None else options.codec_guard
    return {"layout": layout.name, "codec_width": layout.codec_width, "codec_guard": guard, "level": level,
            "prior": prior, "rows": len(corpus), "sources": len(set(corpus.group.tolist())),
            "vectors": _summary(outputs, corpus, level)}

