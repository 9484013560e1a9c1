"""The fr_regressor_v2 contract: the one place that states its facts.

Everything that reads a corpus row, builds a codec block or writes a graph takes these
names and numbers from here (see shared/contract/CONTRACT.md for their origin).
"""

from __future__ import annotations

import numpy as np

from frgb.errors import FrgbError

#: The six canonical libvmaf features, in the graph's column order (load-bearing).
FEATURES: tuple[str, ...] = (
    "adm2",
    "vif_scale0",
    "vif_scale1",
    "vif_scale2",
    "vif_scale3",
    "motion2",
)

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


def canonical_encoder(name: str, vocab: tuple[str, ...] = ENCODER_VOCAB) -> str:
    """Map an encoder name or alias to its `vocab` entry; anything else is `unknown`."""
    key = name.strip().lower()
    key = ENCODER_ALIASES.get(key, key)
    return key if key in vocab else "unknown"


def preset_ordinal(encoder: str, preset: str | int | None) -> int:
    """Ordinal 0..9 of `preset` for the canonical `encoder` (5 when not in its table)."""
    table = PRESET_ORDINALS.get(encoder, {})
    key = "" if preset is None else str(preset).strip().lower()
    return table.get(key, DEFAULT_PRESET_ORDINAL)


def codec_blocks(encoders, presets, crfs, vocab: tuple[str, ...] = ENCODER_VOCAB) -> tuple[np.ndarray, np.ndarray]:
    """Codec blocks (N, len(vocab) + 2) of N rows, and for each row "" or why it cannot be
    encoded (such a row gets the codec-blind block).

    `encoders` and `presets` are sequences of names (None allowed); `crfs` is float with NaN
    for a missing or non-numeric value. `vocab` is the contract's unless a caller's sidecar
    names another one-hot vocabulary (it must end in `unknown`).
    """
    crf = np.asarray(crfs, dtype=np.float64).reshape(-1)
    n = len(crf)
    names = [e or "" for e in encoders]
    canon = [canonical_encoder(e) for e in names]
    slot = np.array([vocab.index(canonical_encoder(e, vocab)) for e in names], dtype=np.int64).reshape(n)
    limit = np.array([CRF_MAX.get(c, np.inf) for c in canon], dtype=np.float64).reshape(n)
    problem = np.full(n, "", dtype=object)
    problem[crf > np.where(np.isinf(limit), CRF_SCALE, np.inf)] = f"crf above {CRF_SCALE:g}"
    problem[crf < 0] = "crf negative"
    problem[~np.isfinite(crf)] = "crf missing or not a number"
    block = np.zeros((n, len(vocab) + 2), dtype=np.float64)
    block[np.arange(n), slot] = 1.0
    block[:, -2] = [preset_ordinal(c, p) / PRESET_SCALE for c, p in zip(canon, presets)]
    block[:, -1] = np.minimum(crf, limit) / CRF_SCALE
    block[problem != ""] = codec_blind_block(vocab)
    return block, problem


def codec_blind_block(vocab: tuple[str, ...] = ENCODER_VOCAB) -> np.ndarray:
    """The codec-blind vector for a one-hot `vocab` (the contract's CODEC_BLIND by default)."""
    blind = np.zeros(len(vocab) + 2)
    blind[vocab.index("unknown")], blind[-2], blind[-1] = 1.0, CODEC_BLIND[-2], CODEC_BLIND[-1]
    return blind


def with_codec_blind(X: np.ndarray, vocab: tuple[str, ...] = ENCODER_VOCAB) -> np.ndarray:
    """A copy of rows [features | codec] with every codec block replaced by the codec-blind one."""
    out = np.array(X, dtype=np.float64)
    out[:, -(len(vocab) + 2):] = codec_blind_block(vocab)
    return out


def codec_block(encoder: str, preset: str | int | None, crf: float) -> list[float]:
    """The eight `codec` values of one row; raises ContractError if the CRF is unusable."""
    value = float(crf) if isinstance(crf, (int, float)) and not isinstance(crf, bool) else np.nan
    block, problem = codec_blocks([encoder], [preset], [value])
    if problem[0]:
        raise ContractError(f"{problem[0]}: {crf!r}")
    return block[0].tolist()
