"""frgb's estimators follow scikit-learn's conventions, checked by its own estimator checks.

As LightGBM's tests do, the checks that these estimators cannot pass are declared as expected
failures, each with its reason: the estimators take a fixed input, [features | codec] (N, 14) (the
teacher: the six features), while those checks fit on random data of other widths; and the
interval model calibrates by source, so its `fit` needs `groups`. Every other check runs and must
pass: parameters stored untouched by `__init__`, cloning, not-fitted errors, input validation
(sparse, complex, empty and 1-D data, non-finite targets), and the like.
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from frgb.baseline import MlpBaseline
from frgb.intervals import IntervalRegressor
from frgb.model import FrgbRegressor
from frgb.teacher import VmafTeacher

#: Checks that fit or predict on random data of a width other than the estimator's fixed input.
FIXED_WIDTH = (
    "check_dict_unchanged",
    "check_dont_overwrite_parameters",
    "check_dtype_object",
    "check_estimators_dtypes",
    "check_estimators_fit_returns_self",
    "check_estimators_nan_inf",
    "check_estimators_overwrite_params",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_fit2d_1feature",
    "check_fit2d_1sample",
    "check_fit2d_predict1d",
    "check_fit_check_is_fitted",
    "check_fit_idempotent",
    "check_fit_score_takes_y",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_n_features_in",
    "check_n_features_in_after_fitting",
    "check_pipeline_consistency",
    "check_positive_only_tag_during_fit",
    "check_readonly_memmap_input",
    "check_regressor_data_not_an_array",
    "check_regressors_int",
    "check_regressors_no_decision_function",
    "check_regressors_train",
    "check_requires_y_none",
    "check_supervised_y_2d",
)
#: Further checks of IntervalRegressor, which fit without `groups`.
NEEDS_GROUPS = (
    "check_complex_data",
    "check_estimator_sparse_array",
    "check_estimator_sparse_matrix",
    "check_estimator_sparse_tag",
    "check_estimators_empty_data_messages",
    "check_fit1d",
    "check_supervised_y_no_nan",
)


def expected_failed_checks(estimator) -> dict[str, str]:
    width = "fixed input width ([features | codec] (N, 14); the teacher: the six features)"
    expected = dict.fromkeys(FIXED_WIDTH, width)
    if isinstance(estimator, MlpBaseline):
        expected["check_non_transformer_estimators_n_iter"] = width
    if isinstance(estimator, IntervalRegressor):
        expected.update(dict.fromkeys(NEEDS_GROUPS, "fit(X, y, groups): calibration is by source"))
    return expected


@parametrize_with_checks(
    [FrgbRegressor(), VmafTeacher(), MlpBaseline(max_iter=5), IntervalRegressor()],
    expected_failed_checks=expected_failed_checks,
)
def test_estimators_follow_scikit_learn_conventions(estimator, check):
    check(estimator)
