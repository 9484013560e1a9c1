"""The fr_regressor_v2 contract: the one place that states its facts.

Everything that reads a corpus row, builds a codec block or writes a graph takes these
names and numbers from here (see shared/contract/CONTRACT.md for their origin).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from frgb.errors import FrgbError
from frgb.targets import INTERVAL_SUFFIX, Inputs, Target

#: The six canonical libvmaf features, in the graph's column order (load-bearing).
FEATURES: tuple[str, ...] = (
    "adm2",
    "vif_scale0",
    "vif_scale1",
    "vif_scale2",
    "vif_scale3",
    "motion2",
)

#: libvmaf's default VMAF model: what ffmpeg's libvmaf filter scores with unless told otherwise,
#: and so the teacher prior frgb assumes when neither the user nor the corpus names one.
DEFAULT_PRIOR = "vmaf_v0.6.1"

#: Number of feature columns (the `features` input's width).
N_FEATURES = len(FEATURES)

#: Enhancement gain limit of libvmaf's ADM and VIF extractors (`adm_enhn_gain_limit`,
#: `vif_enhn_gain_limit`): their default and also the largest value libvmaf accepts.
ENHANCEMENT_GAIN_LIMIT = 100.0

FEATURE_MAX: dict[str, float] = {
    "adm2": ENHANCEMENT_GAIN_LIMIT,
    **{f"vif_scale{k}": 14.0 for k in range(4)},
    "motion2": 256.0,
}
"""The largest value libvmaf can give each feature (per frame, so also as a mean over frames).

A corpus row above one of these did not come from libvmaf: the loader drops and counts it
("feature above what libvmaf can produce"), as it drops negative features. Each bound follows
from how libvmaf computes the feature (libvmaf/src/feature/integer_adm.c, integer_vif.c,
integer_motion.c), with room to spare; none is a statistic of any corpus (the shipped one
reaches adm2 1.09, vif_scale1 1.12, motion2 30.9).

- adm2 <= 100: the ratio of the detail restored in the distorted frame to the reference's
  (contrast-sensitivity weighted, masked, Minkowski pooled). A restored coefficient is at most
  the reference's times the enhancement gain limit (it exceeds 1 only for sharpened content),
  so the ratio is at most that limit, 100.
- vif_scale0..3 <= 14: per scale, a ratio of sums over pixels of
  log2(1 + g^2 s1 / (sv + sn)) to log2(1 + s1 / sn) where s1 >= sn (below that a pixel adds at
  most 1 to the numerator and exactly 1 to the denominator) and the gain g is at most 100. The
  per-pixel ratio is largest at s1 = sn, sv = 0: log2(1 + 100^2) = 13.29, and a ratio of sums is
  never above its largest term; 14 leaves room for libvmaf's fixed-point logarithms.
- motion2 <= 256: the mean absolute difference of blurred luma between frames, on the 8-bit
  scale at every bit depth (the blurred planes hold the value times 256 in 16 bits and the sum of
  differences is divided by 256 per pixel), so at most 65535 / 256 < 256.

Every bound is far below float32's largest value (3.4e38): a kept row is finite as the graph's
float32 input, and the features the model trains on keep their precision.
"""

#: The closed, ordered encoder vocabulary; its indices are the one-hot slots 0..5.
ENCODER_VOCAB: tuple[str, ...] = (
    "libx264",
    "libx265",
    "libsvtav1",
    "libvvenc",
    "libvpx-vp9",
    "unknown",
)

#: Short names that real corpora use for vocabulary encoders (matched after lower/trim).
ENCODER_ALIASES: dict[str, str] = {
    "h264": "libx264",
    "x264": "libx264",
    "hevc": "libx265",
    "x265": "libx265",
    "av1": "libsvtav1",
    "vvc": "libvvenc",
    "vp9": "libvpx-vp9",
}

#: The eight slots of the `codec` input, in order.
CODEC_BLOCK_LAYOUT: tuple[str, ...] = tuple(f"encoder_onehot[{e}]" for e in ENCODER_VOCAB) + (
    "preset_norm",
    "crf_norm",
)

_X26X_PRESETS = {
    "ultrafast": 0,
    "superfast": 1,
    "veryfast": 2,
    "faster": 3,
    "fast": 4,
    "medium": 5,
    "slow": 6,
    "slower": 7,
    "veryslow": 8,
    "placebo": 9,
}

#: Preset ordinals per encoder: 0 is the fastest end of the scale, 9 the slowest.
PRESET_ORDINALS: dict[str, dict[str, int]] = {
    "libx264": _X26X_PRESETS,
    "libx265": _X26X_PRESETS,
    "libsvtav1": {str(n): min(n, 9) for n in range(14)},
    "libvvenc": {"faster": 1, "fast": 3, "medium": 5, "slow": 7, "slower": 8},
    "libvpx-vp9": {"realtime": 0, "good": 5, "best": 9},
}

#: Ordinal of a preset that is not in its encoder's table (and of every `unknown` preset).
DEFAULT_PRESET_ORDINAL = 5
#: Preset ordinals are divided by this to give preset_norm.
PRESET_SCALE = 9.0
#: CRF is divided by this (the largest CRF of libsvtav1 and libvpx-vp9) to give crf_norm.
CRF_SCALE = 63.0
#: libx264 and libx265 accept CRF up to 51; a larger value is clipped to it when read.
CRF_MAX: dict[str, float] = {"libx264": 51.0, "libx265": 51.0}

#: Width of the `codec` input.
CODEC_WIDTH = len(CODEC_BLOCK_LAYOUT)
#: The codec block of a caller that has no codec metadata.
CODEC_BLIND: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.5, 0.5)

#: Graph I/O and versioning.
INPUT_FEATURES = "features"
INPUT_CODEC = "codec"
OUTPUT_SCORE = "score"
#: Outputs of frgb's interval graphs (`<id>_interval.onnx`), an extension beside the contract:
#: the score, then the lower and upper bounds of the prediction interval, each float32 (N,).
INTERVAL_OUTPUTS: tuple[str, ...] = (OUTPUT_SCORE, "lower", "upper")
OPSET = 17
SCORE_RANGE = (0.0, 100.0)


class ContractError(FrgbError, ValueError):
    """A value that the contract cannot encode (the message says which and why)."""


@dataclass(frozen=True)
class Layout:
    """One way of writing the `codec` block: its encoder vocabulary (one-hot slots, in order, the
    last one `unknown`), how presets and CRFs are normalised, and the graph's I/O names.

    Everything that builds a codec block, sizes a graph input or names a slot reads it from here.
    `codec_guard` is the layout's default for the codec guard (`guard_codec`): whether a vector
    without a trained encoder slot is scored as the codec-blind vector.
    """

    name: str
    encoder_vocab: tuple[str, ...]
    vocab_version: int
    preset_ordinals: Mapping[str, Mapping[str, int]]
    file_suffix: str  # added to the model id in file names ("" for the card)
    codec_guard: bool = False
    aliases: Mapping[str, str] = field(default_factory=lambda: ENCODER_ALIASES)
    default_preset_ordinal: int = DEFAULT_PRESET_ORDINAL
    preset_scale: float = PRESET_SCALE
    crf_scale: float = CRF_SCALE
    crf_max: Mapping[str, float] = field(default_factory=lambda: CRF_MAX)
    input_features: str = INPUT_FEATURES
    input_codec: str = INPUT_CODEC
    output_score: str = OUTPUT_SCORE

    def __post_init__(self):
        if self.encoder_vocab[-1:] != ("unknown",):
            raise ContractError(f"layout {self.name}: the encoder vocabulary must end in 'unknown'")

    @property
    def codec_block_layout(self) -> tuple[str, ...]:
        return tuple(f"encoder_onehot[{e}]" for e in self.encoder_vocab) + ("preset_norm", "crf_norm")

    @property
    def codec_width(self) -> int:
        return len(self.encoder_vocab) + 2

    @property
    def unknown_slot(self) -> int:
        return self.encoder_vocab.index("unknown")

    @property
    def codec_blind(self) -> tuple[float, ...]:
        """The codec block of a caller that has no codec metadata: `unknown` = 1, preset_norm =
        crf_norm = 0.5."""
        block = [0.0] * self.codec_width
        block[self.unknown_slot], block[-2], block[-1] = 1.0, CODEC_BLIND[-2], CODEC_BLIND[-1]
        return tuple(block)

    def file_stem(self, name: str, target: Target, inputs: Inputs, interval: bool = False) -> str:
        """`<id><layout><target><inputs>[_interval]`: frgb.onnx for the card's two-input onnxml
        graph, frgb_fork_v2_libvmaf_single_interval.onnx for the most decorated one."""
        return name + self.file_suffix + Target(target).suffix + Inputs(inputs).suffix + (INTERVAL_SUFFIX * interval)

    def input_specs(self, inputs: Inputs) -> list[tuple[str, int]]:
        """(name, width) of each graph input: features and codec, or the two concatenated in one
        input named like the features (features first)."""
        if Inputs(inputs) is Inputs.ONE:
            return [(self.input_features, N_FEATURES + self.codec_width)]
        return [(self.input_features, N_FEATURES), (self.input_codec, self.codec_width)]

    def feeds(self, inputs: Inputs, features: np.ndarray, codec: np.ndarray) -> dict[str, np.ndarray]:
        """The float32 inputs of a graph of this layout for rows `features`, `codec`."""
        features, codec = np.asarray(features, dtype=np.float32), np.asarray(codec, dtype=np.float32)
        if Inputs(inputs) is Inputs.ONE:
            return {self.input_features: np.hstack([features, codec])}
        return {self.input_features: features, self.input_codec: codec}


#: The layout of the model card and of the fork's first scaffold: 8 wide (vocabulary version 1).
CARD = Layout("card", ENCODER_VOCAB, 1, MappingProxyType(PRESET_ORDINALS), "")

#: Preset ordinals of the fork's hardware encoders (0 fastest .. 9 slowest). The fork's v2 trainer
#: maps presets to ordinal / 9 with 5 for a preset it does not know; its tables for the hardware
#: encoders are not quoted in shared/CONSUMERS.md, so these follow the software tables: NVENC's
#: p1..p7 (p4 is ffmpeg's default, "medium") and QSV's x264-style names. No shipped row uses them.
_NVENC_PRESETS = {"p1": 2, "p2": 3, "p3": 4, "p4": 5, "p5": 6, "p6": 7, "p7": 8,
                  "fast": 4, "medium": 5, "slow": 6, "default": 5}
_QSV_PRESETS = {k: v for k, v in _X26X_PRESETS.items() if 2 <= v <= 8}
HARDWARE_ENCODERS = ("h264_nvenc", "hevc_nvenc", "av1_nvenc", "h264_qsv", "hevc_qsv", "av1_qsv")

#: The fork's production layout (`fr_regressor_v2` as shipped, shared/anchors/fr_regressor_v2.json):
#: 14 wide, encoder vocabulary version 2 (the five software encoders, six hardware ones, unknown),
#: preset ordinal / 9 and crf / 63 as in the fork's v2 trainer. Its graphs guard the codec block
#: by default (see `guard_codec`): real callers of this layout send vectors without a trained slot.
FORK_V2 = Layout(
    "fork-v2",
    ENCODER_VOCAB[:-1] + HARDWARE_ENCODERS + ("unknown",),
    2,
    MappingProxyType({**PRESET_ORDINALS, **{e: _NVENC_PRESETS for e in HARDWARE_ENCODERS if "nvenc" in e},
                      **{e: _QSV_PRESETS for e in HARDWARE_ENCODERS if "qsv" in e}}),
    "_fork_v2",
    codec_guard=True,
)

#: Every layout by its command-line name (`frgb fit --layout`).
LAYOUTS: dict[str, Layout] = {layout.name: layout for layout in (CARD, FORK_V2)}


def layout_named(name: str | Layout) -> Layout:
    """The layout called `name` (a Layout passes through)."""
    if isinstance(name, Layout):
        return name
    try:
        return LAYOUTS[name]
    except KeyError:
        raise ContractError(f"no codec layout {name!r}; layouts: {', '.join(LAYOUTS)}") from None


def layout_for_width(codec_width: int) -> Layout:
    """The known layout whose codec block is `codec_width` wide (8: card, 14: fork-v2)."""
    for layout in LAYOUTS.values():
        if layout.codec_width == codec_width:
            return layout
    widths = ", ".join(f"{l.codec_width} ({l.name})" for l in LAYOUTS.values())
    raise ContractError(f"no codec layout is {codec_width} wide; widths: {widths}")


def layout_for_vocab(vocab, name: str = "sidecar") -> Layout:
    """The known layout with one-hot vocabulary `vocab`, else a layout of that vocabulary with the
    card's normalisation (for a model whose sidecar names a vocabulary of its own)."""
    vocab = tuple(vocab)
    for layout in LAYOUTS.values():
        if layout.encoder_vocab == vocab:
            return layout
    return Layout(name, vocab, 0, MappingProxyType(PRESET_ORDINALS), "")


def canonical_encoder(name: str, vocab: tuple[str, ...] = ENCODER_VOCAB) -> str:
    """Map an encoder name or alias to its `vocab` entry; anything else is `unknown`."""
    key = name.strip().lower()
    key = ENCODER_ALIASES.get(key, key)
    return key if key in vocab else "unknown"


def preset_ordinal(encoder: str, preset: str | int | None, layout: Layout | None = None) -> int:
    """Ordinal 0..9 of `preset` for the canonical `encoder` (5 when not in its table)."""
    layout = layout or CARD
    table = layout.preset_ordinals.get(encoder, {})
    key = "" if preset is None else str(preset).strip().lower()
    return table.get(key, layout.default_preset_ordinal)


def codec_blocks(encoders, presets, crfs, layout: Layout | tuple[str, ...] = CARD) -> tuple[np.ndarray, np.ndarray]:
    """Codec blocks (N, codec width) of N rows in `layout`, and for each row "" or why it cannot
    be encoded (such a row gets the codec-blind block).

    `encoders` and `presets` are sequences of names (None allowed); `crfs` is float with NaN
    for a missing or non-numeric value. `layout` is the card's unless given; a tuple is a one-hot
    vocabulary of a caller's sidecar (`layout_for_vocab`; it must end in `unknown`).
    """
    layout = layout if isinstance(layout, Layout) else layout_for_vocab(layout)
    vocab = layout.encoder_vocab
    crf = np.asarray(crfs, dtype=np.float64).reshape(-1)
    n = len(crf)
    names = [e or "" for e in encoders]
    canon = [canonical_encoder(e, vocab) for e in names]
    slot = np.array([vocab.index(c) for c in canon], dtype=np.int64).reshape(n)
    limit = np.array([layout.crf_max.get(canonical_encoder(e), np.inf) for e in names], dtype=np.float64).reshape(n)
    problem = np.full(n, "", dtype=object)
    problem[crf > np.where(np.isinf(limit), layout.crf_scale, np.inf)] = f"crf above {layout.crf_scale:g}"
    problem[crf < 0] = "crf negative"
    problem[~np.isfinite(crf)] = "crf missing or not a number"
    block = np.zeros((n, layout.codec_width), dtype=np.float64)
    block[np.arange(n), slot] = 1.0
    block[:, -2] = [preset_ordinal(c, p, layout) / layout.preset_scale for c, p in zip(canon, presets)]
    block[:, -1] = np.minimum(crf, limit) / layout.crf_scale
    block[problem != ""] = codec_blind_block(layout)
    return block, problem


def codec_blind_block(layout: Layout | tuple[str, ...] = CARD) -> np.ndarray:
    """The codec-blind vector of `layout` (or of a one-hot vocabulary); the card's is CODEC_BLIND."""
    layout = layout if isinstance(layout, Layout) else layout_for_vocab(layout)
    return np.array(layout.codec_blind)


def with_codec_blind(X: np.ndarray, layout: Layout | None = None) -> np.ndarray:
    """A copy of rows [features | codec] with every codec block replaced by the codec-blind one
    (the layout is the one of X's width unless given)."""
    out = np.array(X, dtype=np.float64)
    layout = layout or layout_for_width(out.shape[1] - N_FEATURES)
    out[:, N_FEATURES:] = codec_blind_block(layout)
    return out


def trusted_slots(codec: np.ndarray, layout: Layout) -> tuple[int, ...]:
    """The encoder slots (never `unknown`) that some row of `codec` sets: the ones a model trained
    on these rows has seen."""
    onehot = np.asarray(codec)[:, :len(layout.encoder_vocab)]
    return tuple(int(s) for s in np.flatnonzero((onehot == 1).any(axis=0)) if s != layout.unknown_slot)


def guard_weights(trusted: tuple[int, ...], layout: Layout) -> np.ndarray:
    """(codec width, 1) float32 column that sums a codec block's trusted one-hot slots."""
    weights = np.zeros((layout.codec_width, 1), dtype=np.float32)
    weights[list(trusted), 0] = 1.0
    return weights


def guard_codec(codec: np.ndarray, trusted: tuple[int, ...], layout: Layout) -> np.ndarray:
    """The codec guard, in float32 exactly as the graphs compute it (MatMul, Clip, Mul, Sub, Add):

        g = clip(codec @ trusted_weights, 0, 1);   codec' = codec * g + blind * (1 - g)

    A block with a trusted (trained, in-vocabulary) encoder slot set passes unchanged; any other
    (`unknown` with any preset and CRF, a slot no training row had, all zeros) becomes the
    codec-blind vector, so its score is the codec-blind score and its interval the codec-blind one.
    Returns float64 holding the float32 results."""
    c = np.asarray(codec, dtype=np.float32)
    g = np.clip(c @ guard_weights(trusted, layout), np.float32(0), np.float32(1))
    blind = codec_blind_block(layout).astype(np.float32)[None, :]
    return (c * g + blind * (np.float32(1) - g)).astype(np.float64)


def codec_block(encoder: str, preset: str | int | None, crf: float, layout: Layout = CARD) -> list[float]:
    """The `codec` values of one row in `layout`; raises ContractError if the CRF is unusable."""
    value = float(crf) if isinstance(crf, (int, float)) and not isinstance(crf, bool) else np.nan
    block, problem = codec_blocks([encoder], [preset], [value], layout)
    if problem[0]:
        raise ContractError(f"{problem[0]}: {crf!r}")
    return block[0].tolist()
