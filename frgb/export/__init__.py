"""From a fitted model to ONNX files: threshold folding, the converters, parity, writing.

The converters are registered with skl2onnx in one place, here: importing this package imports
every converter module, and each registers itself at its bottom (as skl2onnx's own do) with the
options of frgb.targets. The modules, in the order data flows through them:

- thresholds: split thresholds folded exactly into the raw float32 input domain;
- teacher_onnx: the VMAF teacher's SVR;
- libvmaf_trees, trees_onnx: the trees, for each target;
- graph, interval_graph: the whole point and interval graphs;
- package: parity check, sidecar, writing the files.
"""

from frgb.export import graph, interval_graph, teacher_onnx, trees_onnx  # noqa: F401  (registration)
