"""What a fit trains: the options of `frgb fit`, the choice of teacher prior, and the fit itself."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from frgb.errors import FrgbError
from frgb.loading import Corpus, design_matrix
from frgb.model import FrgbRegressor
from frgb.teacher import BUILTIN_MODELS, DEFAULT_PRIOR


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
