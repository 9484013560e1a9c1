"""Split thresholds that make float32 graphs agree exactly with LightGBM.

LightGBM compares `x <= t` in float64 on scaled features; ONNX graphs see raw float32 inputs.
For every split we find the largest float32 raw value whose float64 scaled value is still
`<= t`. A float32 graph that compares the raw input with that value takes the same branch as
LightGBM for every float32 input, at the threshold and on both sides of it, and the scaler
disappears from the graph (trees are invariant to an increasing map of a feature).
"""

from __future__ import annotations

import re
from typing import Callable

import lightgbm as lgb
import numpy as np

_F32_MAX_ORD = int(np.float32(np.finfo(np.float32).max).view(np.int32))


def _ordinal_to_f32(k: np.ndarray) -> np.ndarray:
    """float32 values from their order index (..., -1 -> -tiny, 0 -> 0.0, 1 -> +tiny, ...)."""
    k = np.asarray(k, dtype=np.int64)
    bits = np.where(k >= 0, k, (-k) | 0x80000000).astype(np.uint32)
    return bits.view(np.float32)


def largest_float32_at_most(t: np.ndarray, phi: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """For each t, the largest float32 x with phi(float64(x)) <= t (phi non-decreasing).

    -inf where no finite float32 qualifies, +inf where all do.
    """
    t = np.asarray(t, dtype=np.float64)
    lo = np.full(t.shape, -_F32_MAX_ORD, dtype=np.int64)  # invariant: answer >= lo, or none
    hi = np.full(t.shape, _F32_MAX_ORD, dtype=np.int64)
    none = phi(_ordinal_to_f32(lo).astype(np.float64)) > t
    every = phi(_ordinal_to_f32(hi).astype(np.float64)) <= t
    while np.any(hi - lo > 1):
        mid = lo + (hi - lo) // 2
        ok = phi(_ordinal_to_f32(mid).astype(np.float64)) <= t
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    found = np.where(phi(_ordinal_to_f32(hi).astype(np.float64)) <= t, hi, lo)
    out = _ordinal_to_f32(found).astype(np.float64)
    out[none] = -np.inf
    out[every] = np.inf
    return out


_TREE_LINE = re.compile(r"^(split_feature|threshold)=(.*)$", re.MULTILINE)


def raw_domain_booster(booster: lgb.Booster, maps: list[Callable[[np.ndarray], np.ndarray]]) -> lgb.Booster:
    """A copy of `booster` whose thresholds are the float32-exact raw thresholds.

    `maps[k]` is the float64 transform that the fitted pipeline applies to column k before
    LightGBM sees it (the scaler for the features, identity for the codec block).
    """
    text = booster.model_to_string()
    out, pos, features = [], 0, None
    for m in _TREE_LINE.finditer(text):
        if m.group(1) == "split_feature":
            features = np.array(m.group(2).split(), dtype=np.int64)
            continue
        t = np.array(m.group(2).split(), dtype=np.float64)
        raw = np.empty_like(t)
        for k in np.unique(features):
            at = features == k
            raw[at] = largest_float32_at_most(t[at], maps[k])
        out.append(text[pos : m.start(2)])
        out.append(" ".join(repr(float(v)) for v in raw))
        pos = m.end(2)
    out.append(text[pos:])
    # tree_sizes gives each tree's byte length, which the new thresholds change; without it
    # LightGBM parses the trees one after another.
    return lgb.Booster(model_str=re.sub(r"^tree_sizes=.*\n", "", "".join(out), flags=re.MULTILINE))


def split_thresholds(booster: lgb.Booster) -> list[tuple[int, float]]:
    """(feature, threshold) of every split, in model order."""
    pairs = []
    features = None
    for m in _TREE_LINE.finditer(booster.model_to_string()):
        values = m.group(2).split()
        if m.group(1) == "split_feature":
            features = [int(v) for v in values]
        else:
            pairs.extend(zip(features, (float(v) for v in values)))
    return pairs


def threshold_rows(booster: lgb.Booster, base: np.ndarray) -> np.ndarray:
    """Rows placed on, just below and just above every split threshold of a raw-domain
    booster (float32 neighbours), the other columns taken from `base` rows in turn."""
    rows = []
    for i, (k, t) in enumerate(split_thresholds(booster)):
        if not np.isfinite(t):
            continue
        x = np.float32(t)
        for v in (np.nextafter(x, np.float32(-np.inf)), x, np.nextafter(x, np.float32(np.inf))):
            row = base[i % len(base)].copy()
            row[k] = v
            rows.append(row)
    return np.asarray(rows, dtype=np.float32).astype(np.float64).reshape(-1, base.shape[1])
