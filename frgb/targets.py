"""The names a user chooses among when exporting: export targets, libvmaf tree strategies and
graph input kinds.

All are Enums whose values are the command-line spellings (`frgb fit --target`, `--strategy`);
the converters declare their options from them (frgb.export), so the vocabulary lives here only.
"""

from __future__ import annotations

from enum import Enum


class Target(str, Enum):
    """Which consumers can load a graph: the trees as `ai.onnx.ml` ops, or only libvmaf's ops."""

    ONNXML = "onnxml"
    LIBVMAF = "libvmaf"

    @property
    def suffix(self) -> str:
        """Added to the model id in file names: `<id>.onnx` for onnxml, `<id>_libvmaf.onnx` for libvmaf."""
        return "" if self is Target.ONNXML else "_libvmaf"

    @property
    def use(self) -> str:
        """Who the file is for (recorded in the sidecar)."""
        if self is Target.ONNXML:
            return "Python and onnxruntime consumers (e.g. an encoding tuner); uses ai.onnx.ml TreeEnsembleRegressor."
        return "libvmaf's DNN loader and any strict consumer: only allowlisted default-domain ops."


class Strategy(str, Enum):
    """How the libvmaf target evaluates the trees (frgb.export.libvmaf_trees); `auto` chooses."""

    AUTO = "auto"
    TABLE = "table"
    GEMM = "gemm"
    TRAVERSAL = "traversal"


class Inputs(str, Enum):
    """The graph's inputs: `features` and `codec` (the contract), or one input `features` holding
    both, features first (callers that feed a single concatenated tensor)."""

    TWO = "two"
    ONE = "one"

    @property
    def suffix(self) -> str:
        """Added to file names after the target's suffix: `<id>_single.onnx` for one input."""
        return "" if self is Inputs.TWO else "_single"


#: Options every graph converter declares, with their accepted values.
CONVERTER_OPTIONS = {"target": [t.value for t in Target], "strategy": [s.value for s in Strategy]}
#: The value of each option when a conversion does not set it.
DEFAULT_OPTIONS = {"target": Target.ONNXML.value, "strategy": Strategy.AUTO.value}
#: Added after the target's suffix for interval graphs: `<id>_interval.onnx`, `<id>_libvmaf_interval.onnx`.
INTERVAL_SUFFIX = "_interval"
