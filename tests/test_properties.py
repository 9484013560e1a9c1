"""Properties over generated inputs: every codec block is valid, and the loader encodes or drops
(with a reason) any JSON object whatever its keys, types and values."""

from __future__ import annotations

import json
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frgb.contract import (
    CODEC_BLIND, CRF_MAX, CRF_SCALE, ENCODER_ALIASES, ENCODER_VOCAB, FEATURE_MAX, FEATURES, PRESET_ORDINALS,
    ContractError, canonical_encoder, codec_block, codec_blocks,
)
from frgb.loading import (
    BAD_TARGET, BIG_FEATURE, DUPLICATE, DUPLICATE_KEY, FAILED, NEG_FEATURE, NO_FEATURE, NO_TARGET, SCHEMA, TRUNCATED,
    load_corpus,
)
from tests.helpers import shipped_rows

#: Every reason a row can be dropped for (the loader's and the codec block's).
REASONS = {DUPLICATE_KEY, FAILED, NO_TARGET, BAD_TARGET, NO_FEATURE, NEG_FEATURE, BIG_FEATURE, DUPLICATE, TRUNCATED,
           "crf missing or not a number", "crf negative", f"crf above {CRF_SCALE:g}"}


def assert_valid_codec(block: np.ndarray) -> None:
    """(N, 8): slots 0..5 one-hot with exactly one 1, every value finite and in [0, 1]."""
    assert block.shape[1:] == (len(ENCODER_VOCAB) + 2,)
    assert np.isfinite(block).all() and (block >= 0).all() and (block <= 1).all(), block
    onehot = block[:, : len(ENCODER_VOCAB)]
    assert np.isin(onehot, (0.0, 1.0)).all() and (onehot.sum(axis=1) == 1).all(), onehot


# --------------------------------------------------------------------------------------------
# The codec block

_known = [*ENCODER_VOCAB, *ENCODER_ALIASES, "libaom-av1", "h264_nvenc", ""]
encoders = st.one_of(
    st.sampled_from(_known).flatmap(lambda n: st.sampled_from([n, n.upper(), f" {n}\t", n.title()])),
    st.text(max_size=12),
    st.none(),
)
presets = st.one_of(
    st.none(), st.integers(-3, 20), st.text(max_size=8),
    st.sampled_from(sorted({p for table in PRESET_ORDINALS.values() for p in table})),
)
crfs = st.one_of(st.floats(), st.integers(-10, 200).map(float), st.floats(0, 63))


@given(st.lists(st.tuples(encoders, presets, crfs), min_size=1, max_size=40))
def test_codec_block_is_always_one_hot_in_unit_range(rows):
    names, preset, crf = map(list, zip(*rows))
    block, problem = codec_blocks(names, preset, crf)
    assert_valid_codec(block)
    crf = np.array(crf)
    canon = [canonical_encoder(n or "") for n in names]
    limit = np.array([CRF_MAX.get(c, CRF_SCALE) for c in canon])
    clipped = np.array([c in CRF_MAX for c in canon])
    unusable = ~np.isfinite(crf) | (crf < 0) | ((crf > CRF_SCALE) & ~clipped)
    assert ((problem != "") == unusable).all(), (problem, crf)
    assert (block[unusable] == CODEC_BLIND).all()
    usable = ~unusable
    assert (np.argmax(block[usable, :6], axis=1) == [ENCODER_VOCAB.index(c) for c, u in zip(canon, usable) if u]).all()
    assert np.allclose(block[usable, 7], np.minimum(crf[usable], limit[usable]) / CRF_SCALE)


@given(encoders, presets, st.one_of(crfs, st.booleans(), st.text(max_size=4), st.none()))
def test_codec_block_of_one_row_is_valid_or_a_contract_error(encoder, preset, crf):
    try:
        block = codec_block(encoder or "", preset, crf)
    except ContractError as e:
        assert str(e).startswith("crf "), e
        return
    assert_valid_codec(np.array([block]))


# --------------------------------------------------------------------------------------------
# The loader

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12),
    st.sampled_from([10**400, -(10**40), 2**64, 2**63 - 1, -0.0, 1e308]),
)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                                  max_size=3), max_leaves=8)
#: Keys frgb reads (top level and nested), most often, and any others.
keys = st.one_of(st.sampled_from([k for k in SCHEMA if k != "per_frame_features"]), st.text(max_size=10))
nested = st.dictionaries(st.sampled_from([*FEATURES, *(f"integer_{f}" for f in FEATURES)]), scalars | json_values,
                         max_size=12)
json_objects = st.one_of(
    st.dictionaries(keys, json_values, max_size=10),
    st.dictionaries(keys, json_values, max_size=10).map(lambda d: dict(d, per_frame_features=d.get("x")))
    | st.builds(lambda d, pff: dict(d, per_frame_features=pff), st.dictionaries(keys, json_values, max_size=8), nested),
    st.dictionaries(keys, json_values, max_size=5).map(lambda d: {**good_row(), **d}),  # a real row, damaged
)


@lru_cache(maxsize=1)
def good_row() -> dict:
    return next(r for r in shipped_rows() if r["exit_status"] == 0)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_objects, min_size=1, max_size=6), st.booleans())
def test_loader_encodes_or_drops_with_a_reason_any_json_object(objects, require_target):
    lines = [json.dumps(good_row()), *(json.dumps(o) for o in objects)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "corpus.jsonl"
        path.write_text("\n".join(lines) + "\n")
        corpus = load_corpus(path, require_target=require_target)  # the good row keeps it from being empty
    assert set(corpus.dropped) <= REASONS, corpus.dropped
    assert len(corpus) + sum(corpus.dropped.values()) == len(lines) == corpus.lines
    assert 1 in corpus.line.tolist(), "the good row was lost"
    assert_valid_codec(corpus.codec)
    assert np.isfinite(corpus.features).all() and (corpus.features >= 0).all()
    assert (corpus.features <= [FEATURE_MAX[f] for f in FEATURES]).all(), "a feature libvmaf cannot produce was kept"
    if require_target:
        assert np.isfinite(corpus.target).all() and ((corpus.target >= 0) & (corpus.target <= 100)).all()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_objects, min_size=1, max_size=6), st.data())
def test_the_same_lines_in_any_order_give_the_same_corpus(objects, data):
    """Any JSON objects, a key of one of them given twice and a NaN row among them: every order of
    the lines loads to the same arrays and drops (the loader sorts rows; a key given twice is
    dropped on the Polars and the json path alike, and which path a line takes depends on the
    other lines of its block)."""
    lines = [json.dumps(good_row()), *(json.dumps(o) for o in objects), json.dumps(dict(good_row(), crf=float("nan")))]
    key = data.draw(st.sampled_from([k for k in SCHEMA if k in good_row()]))
    lines.append(json.dumps(good_row())[:-1] + f', "{key}": 1}}')
    order = data.draw(st.permutations(range(len(lines))))
    loaded = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, chosen in enumerate((range(len(lines)), order)):
            path = Path(tmp) / f"corpus{i}.jsonl"
            path.write_text("".join(lines[k] + "\n" for k in chosen))
            corpus = load_corpus(path, require_target=False)
            loaded.append((corpus.dropped, [getattr(corpus, k).tolist() for k in ("features", "codec", "group", "crf")]))
    assert loaded[0] == loaded[1]
    assert loaded[0][0].get(DUPLICATE_KEY, 0) >= 1
