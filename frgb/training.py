"""What a fit trains: the options of `frgb fit`, the choice of teacher prior, and the fit itself."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from frgb.errors import FrgbError
from frgb.loading import Corpus, design_matrix
from frgb.model import FrgbRegressor
from frgb.teacher import BUILTIN_MODELS, DEFAULT_PRIOR, VmafTeacher


@dataclass
class FitOptions:
    """What `frgb fit` (and every fold of `frgb eval --loso`) trains."""

    prior: str = "auto"  # auto (from the corpus's vmaf_model), a built-in name, a model path, or none
    trees: dict = field(default_factory=dict)  # LightGBM overrides of frgb.model.default_trees(prior)
    codec_blind: bool = True
    monotone: bool = False
    seed: int = 0
    layout: str = "card"  # the codec layout (frgb.contract.LAYOUTS); the corpus must be in it (loading.in_layout)
    codec_guard: bool | None = None  # score vectors without a trained encoder slot codec-blind [default: the layout's]

    def __post_init__(self):
        if not self.prior.strip():
            raise FrgbError("--prior is empty: give auto, none, a built-in VMAF model "
                            f"({', '.join(BUILTIN_MODELS)}) or a model JSON path")
        if not 0 <= self.seed <= MAX_SEED:
            raise FrgbError(f"--seed {self.seed} is out of range: give a whole number from 0 to {MAX_SEED}")


#: Largest seed: every random generator a fit seeds (LightGBM's C int, numpy's) takes it.
MAX_SEED = 2**31 - 1


@dataclass
class PriorChoice:
    model: str | None  # None: no prior
    other_rows: int  # rows scored with a model other than the prior's
    others: dict[str, int]


def choose_prior(corpus: Corpus, prior: str) -> PriorChoice:
    """The teacher for this corpus: `auto` takes the VMAF model most rows were scored with."""
    recorded = Counter(m for m in corpus.vmaf_model.tolist() if m)
    if prior == "none":
        return PriorChoice(None, 0, {})
    if prior == "auto":
        prior = recorded.most_common(1)[0][0] if recorded else DEFAULT_PRIOR
        if prior not in BUILTIN_MODELS:
            raise FrgbError(
                f"most rows were scored with {prior!r}, which frgb does not ship; "
                f"pass --prior with one of {', '.join(BUILTIN_MODELS)}, a model file, or none"
            )
    VmafTeacher(model=prior).fit()  # an unknown name or a broken model file is an error before any fit
    name = prior.rsplit("/", 1)[-1].removesuffix(".json")
    others = {m: n for m, n in recorded.items() if m != name}
    return PriorChoice(prior, sum(others.values()), others)


def point_model(options: FitOptions, prior: str | None) -> FrgbRegressor:
    """The unfitted point model of `options` with teacher `prior`."""
    return FrgbRegressor(prior=prior, trees=options.trees or None, codec_blind=options.codec_blind,
                         monotone=options.monotone, random_state=options.seed, layout=options.layout,
                         codec_guard=options.codec_guard)


def fit_model(corpus: Corpus, options: FitOptions, prior: str | None) -> FrgbRegressor:
    """The point model of `options` fitted on every row of `corpus`."""
    return point_model(options, prior).fit(design_matrix(corpus), corpus.target)


#: Fewest usable rows a fit takes: PLCC and SROCC, which every fit reports, need three.
MIN_ROWS = 3


def calibration_rows_needed(level: float) -> int:
    """Fewest calibration rows for a split-conformal margin at `level`: ceil((n + 1) * level) <= n."""
    return math.ceil(level / (1 - level) - 1e-9)


def check_trainable(corpus: Corpus, cv: bool = True, levels: tuple[float, ...] = ()) -> None:
    """The one-line error, before any fitting, for a corpus that cannot give what was asked: too
    few rows to measure, a score that never changes, one source for leave-one-source-out (`cv`)
    or for the interval calibration at `levels` (by source), too few rows to calibrate a level."""
    n, sources = len(corpus), len(set(corpus.group.tolist()))
    rows = f"{n} usable row{'' if n == 1 else 's'}" + (f" ({corpus.drop_summary()})" if corpus.dropped else "")
    if n < MIN_ROWS:
        raise FrgbError(f"{corpus.path}: {rows}; a fit needs at least {MIN_ROWS} (PLCC and SROCC need three)")
    if np.ptp(corpus.target) == 0:
        raise FrgbError(f"{corpus.path}: every usable row has vmaf_score {corpus.target[0]:g}: there is nothing to "
                        "learn (PLCC and SROCC are undefined)")
    for needed, what in ((cv, "leave-one-source-out (--no-cv fits without it)"),
                         (bool(levels), "interval calibration, which is by source,")):
        if needed and sources < 2:
            raise FrgbError(f"{corpus.path}: {rows}, all of one source; {what} needs at least two sources")
    for level in levels:
        if n < calibration_rows_needed(level):
            raise FrgbError(f"{corpus.path}: {rows} cannot calibrate a {level:g} interval (at least "
                            f"{calibration_rows_needed(level)} are needed): lower the level or add rows")
