"""frgb: a gradient-boosted VMAF predictor that keeps the fr_regressor_v2 ONNX contract.

The layout follows the data: corpus rows (`frgb.corpus`, `frgb.loading`) -> contract encoding
(`frgb.contract`) -> model (`frgb.teacher`, `frgb.model`, `frgb.training`) -> export targets
(`frgb.export`) -> evaluation and reports (`frgb.evaluation`, `frgb.metrics`, `frgb.baseline`,
`frgb.comparison`, `frgb.report`).
"""

import os

# LightGBM's OpenMP threads spin while they wait. When the cores are shared with other work that
# made its fits 3x to 20x slower than one thread (benchmarks/bench_fit.py); waiting passively
# keeps several threads as fast as one or faster. libgomp reads this when it is loaded, so it must
# be set before lightgbm is imported; a value the caller set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
