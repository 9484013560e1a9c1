"""The baseline frgb is measured against: an MLP of the `fr_regressor_v2` shape.

    score = clip(unscale(MLP(scaled features | codec)), 0, 100)

Two hidden layers of 16, one output, Adam on the squared error, a fixed seed. The six features
are standardised and the codec block passed through (as `fr_regressor_v2`'s callers feed it),
and the target is standardised too (`TransformedTargetRegressor`), so that Adam's default step
size suits it. Training stops when the loss on a held-back 10 % of the training rows has not
improved for `patience` epochs, within `max_iter` epochs. It trains on exactly the rows frgb
trains on, codec-blind copies included (`codec_blind`), so both answer the same questions.

Measured by leave-one-source-out on the shipped corpus (17 sources, before its final rows):
a patience of 200 epochs gave mean RMSE 0.463 against 0.590 with 50, and 500 gave 0.461, so 200
trains it to convergence; tanh gave 0.59 where ReLU gave 0.81 (both at patience 50); training
without the codec-blind copies gave 0.503 and a codec-blind RMSE of 0.85 instead of 0.47.

With `prior`, the same MLP is fitted on the residual of the VMAF teacher instead of the score
(the second baseline: the prior with a smooth learner on its residual instead of trees).

The activation is tanh: under leave-one-source-out on the shipped corpus it reached about half
the RMSE of ReLU (reports/evaluation.md). `fr_regressor_v2` itself uses GELU, which
scikit-learn does not offer; tanh is the smooth choice it does.
"""

from __future__ import annotations

import warnings

from sklearn.compose import TransformedTargetRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from frgb.contract import CODEC_WIDTH
from frgb.model import PriorResidualRegressor, input_columns

#: Hidden layer widths of fr_regressor_v2's shape.
HIDDEN_LAYERS = (16, 16)
#: The activation of both hidden layers (see the module docstring).
ACTIVATION = "tanh"
#: Epochs allowed; early stopping usually ends training well before.
MAX_ITER = 20000
#: Epochs without improvement of the validation loss before training stops (see above).
PATIENCE = 200


def make_mlp(seed: int = 0, max_iter: int = MAX_ITER, activation: str = ACTIVATION,
             patience: int = PATIENCE) -> TransformedTargetRegressor:
    """Scaler on the six features, codec passthrough, MLP; the target standardised around it."""
    mlp = MLPRegressor(
        hidden_layer_sizes=HIDDEN_LAYERS, activation=activation, solver="adam", max_iter=max_iter,
        early_stopping=True, validation_fraction=0.1, n_iter_no_change=patience, tol=1e-6,
        random_state=seed,
    )
    pipeline = Pipeline([("columns", input_columns(StandardScaler(), CODEC_WIDTH)), ("mlp", mlp)])
    return TransformedTargetRegressor(pipeline, transformer=StandardScaler())


class MlpBaseline(PriorResidualRegressor):
    """fr_regressor_v2-shaped MLP on [features | codec], trained like FrgbRegressor.

    Parameters
    ----------
    codec_blind : bool, default True
        Also train on codec-blind copies of every row (as FrgbRegressor does).
    activation : str, default ACTIVATION
    max_iter : int, default MAX_ITER
        Epochs allowed (early stopping usually ends training first).
    random_state : int, default 0
    prior : str or None, default None
        With a VMAF model, the MLP fits the teacher's residual (the second baseline).

    Attributes
    ----------
    prior_, regressor_ (the fitted TransformedTargetRegressor), n_features_in_ : as in
        PriorResidualRegressor.
    n_iter_ : int, the epochs the MLP trained.
    """

    def __init__(self, *, codec_blind: bool = True, activation: str = ACTIVATION, max_iter: int = MAX_ITER,
                 random_state: int = 0, prior: str | None = None):
        self.codec_blind = codec_blind
        self.activation = activation
        self.max_iter = max_iter
        self.random_state = random_state
        self.prior = prior

    def _learner(self) -> TransformedTargetRegressor:
        return make_mlp(self.random_state, self.max_iter, self.activation)

    def _fit_learner(self, learner, X, residual):
        with warnings.catch_warnings():  # a capped max_iter (tests) is deliberate
            warnings.simplefilter("ignore", ConvergenceWarning)
            learner.fit(X, residual)
        self.n_iter_ = learner.regressor_.named_steps["mlp"].n_iter_
        return learner
