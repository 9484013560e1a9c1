"""frgb: a gradient-boosted VMAF predictor that keeps the fr_regressor_v2 ONNX contract.

The layout follows the data: corpus rows (`frgb.corpus`, `frgb.loading`) -> contract encoding
(`frgb.contract`) -> model (`frgb.teacher`, `frgb.model`, `frgb.training`) -> export targets
(`frgb.export`) -> evaluation and reports (`frgb.evaluation`, `frgb.metrics`).
"""

__version__ = "0.1.0"
