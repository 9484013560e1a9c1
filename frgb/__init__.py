"""frgb: a gradient-boosted VMAF predictor that keeps the fr_regressor_v2 ONNX contract.

The layout follows the data, and imports run one way along it: the contract (`frgb.contract`)
-> corpus rows (`frgb.corpus`, `frgb.loading`) -> estimators (`frgb.teacher`, `frgb.model`,
`frgb.baseline`) -> what a fit trains (`frgb.training`) -> cross-validation and what builds on it
(`frgb.cv`, `frgb.intervals`, `frgb.tuning`, `frgb.comparison`) -> export targets (`frgb.export`)
-> consumers' view (`frgb.evaluation`, `frgb.check`) -> the `frgb fit` workflow (`frgb.pipeline`)
-> reports (`frgb.report`).
"""

import os

# LightGBM's OpenMP threads spin while they wait. When the cores are shared with other work that
# made its fits 3x to 20x slower than one thread (benchmarks/bench_fit.py); waiting passively
# keeps several threads as fast as one or faster. libgomp reads this when it is loaded, so it must
# be set before lightgbm is imported; a value the caller set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
