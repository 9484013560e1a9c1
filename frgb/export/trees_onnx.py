"""skl2onnx converter for the trees of a fitted model, in the raw float32 input domain.

`RawTrees` holds a LightGBM booster whose thresholds were folded into raw float32 values
(frgb.export.thresholds). Its converter has one option, `target`:

- `onnxml`: onnxmltools' LightGBM converter, one `ai.onnx.ml` TreeEnsembleRegressor;
- `libvmaf`: the trees compiled to the default-domain ops libvmaf's loader accepts
  (frgb.export.libvmaf_trees).
"""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm as lgb
from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm
from skl2onnx import update_registered_converter
from skl2onnx.common.data_types import FloatTensorType

from frgb.export.libvmaf_trees import STRATEGIES

TARGETS = ("onnxml", "libvmaf")


@dataclass
class RawTrees:
    """The attributes onnxmltools' converter reads from an LGBMRegressor."""

    booster_: lgb.Booster
    boosting_type: str = "gbdt"

    def fit(self, *args):
        """Nothing to learn (skl2onnx recognises models by their `fit`)."""
        return self


def _shape(operator) -> None:
    operator.outputs[0].type = FloatTensorType([operator.inputs[0].get_first_dimension(), 1])


def _convert(scope, operator, container) -> None:
    options = container.get_options(operator.raw_operator, dict(target="onnxml", strategy="auto"))
    if options["target"] == "libvmaf":
        from frgb.export.libvmaf_trees import convert_libvmaf_trees

        convert_libvmaf_trees(scope, operator, container, options["strategy"])
    else:
        convert_lightgbm(scope, operator, container)


update_registered_converter(
    RawTrees, "FrgbRawTrees", _shape, _convert,
    options={"target": list(TARGETS), "strategy": STRATEGIES},
)
