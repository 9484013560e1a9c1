"""Loading corpora: every historical row shape, drops counted by reason, errors with file:line."""

import json

import numpy as np
import pytest

from frgb.errors import FrgbError
from frgb.loading import load_corpus
from tests.helpers import historical, shipped_rows, write_jsonl


@pytest.fixture(scope="module")
def base_rows():
    rows = shipped_rows()
    return [r for r in rows if r["exit_status"] == 0][:6]




@pytest.mark.parametrize("shape", ["v3", "nested", "nested_integer", "integer_prefix"])
def test_every_historical_shape_loads_to_the_same_arrays(tmp_path, base_rows, shape):
    want = load_corpus(write_jsonl(tmp_path / "v3.jsonl", base_rows))
    got = load_corpus(write_jsonl(tmp_path / f"{shape}.jsonl", [historical(r, shape) for r in base_rows]))
    assert np.array_equal(got.features, want.features)
    assert np.array_equal(got.codec, want.codec)
    assert got.dropped == {}


def test_mixed_shapes_in_one_file_and_a_key_that_first_appears_late(tmp_path, base_rows):
    rows = [historical(r, "nested") for r in base_rows[:3]] * 50 + [historical(r, "integer_prefix") for r in base_rows[3:]]
    corpus = load_corpus(write_jsonl(tmp_path / "mixed.jsonl", rows))
    assert len(corpus) == 6 and corpus.dropped == {"duplicate row": 147}


def test_encoder_aliases_map_to_the_vocabulary(tmp_path, base_rows):
    rows = [dict(base_rows[0], encoder=name, crf=20 + i) for i, name in enumerate(["H264", "x265", "av1", "vvc", "vp9"])]
    corpus = load_corpus(write_jsonl(tmp_path / "aliases.jsonl", rows))
    assert sorted(np.argmax(corpus.codec[:, :6], axis=1).tolist()) == [0, 1, 2, 3, 4]


def test_rows_that_cannot_train_are_dropped_and_counted_by_reason(tmp_path, base_rows):
    good = base_rows[0]
    rows = [
        good,
        dict(good, exit_status=1, crf=1),
        dict(good, exit_status="1", crf=9),  # a status written as text still fails the row
        dict(good, vmaf_score=None, crf=2),
        dict(good, vmaf_score=120.0, crf=3),
        dict(good, adm2_mean=None, crf=4),
        dict(good, motion2_mean=-1.0, crf=5),
        dict(good, crf=-3),
        dict(good, crf="abc"),
        dict(good, encoder="libsvtav1", crf=70),
    ]
    corpus = load_corpus(write_jsonl(tmp_path / "drops.jsonl", rows))
    assert len(corpus) == 1
    assert corpus.dropped == {
        "failed encode (exit_status != 0)": 2,
        "vmaf_score missing or not finite": 1,
        "vmaf_score outside [0, 100]": 1,
        "feature missing or not finite": 1,
        "feature negative": 1,
        "crf negative": 1,
        "crf missing or not a number": 1,
        "crf above 63": 1,
    }


def test_nan_and_infinity_tokens_are_drops_not_errors(tmp_path, base_rows):
    good = json.dumps(base_rows[0])
    nan_row = json.dumps(dict(base_rows[1], adm2_mean=float("nan")))
    inf_row = json.dumps(dict(base_rows[2], vmaf_score=float("inf")))
    corpus = load_corpus(write_jsonl(tmp_path / "nan.jsonl", [good, nan_row, inf_row]))
    assert len(corpus) == 1
    assert corpus.dropped == {"feature missing or not finite": 1, "vmaf_score missing or not finite": 1}


def test_a_malformed_line_is_an_error_naming_file_and_line(tmp_path, base_rows):
    path = write_jsonl(tmp_path / "bad.jsonl", [base_rows[0], base_rows[1], '{"src": "x", "crf": }', base_rows[2]])
    with pytest.raises(FrgbError, match=r"bad\.jsonl:3: malformed JSON"):
        load_corpus(path)


def test_an_empty_result_is_an_error_not_a_model(tmp_path, base_rows):
    path = write_jsonl(tmp_path / "failed.jsonl", [dict(r, exit_status=1) for r in base_rows])
    with pytest.raises(FrgbError, match="no usable rows"):
        load_corpus(path)


def test_row_order_does_not_change_the_loaded_arrays(tmp_path, base_rows):
    a = load_corpus(write_jsonl(tmp_path / "a.jsonl", base_rows))
    b = load_corpus(write_jsonl(tmp_path / "b.jsonl", base_rows[::-1]))
    assert np.array_equal(a.features, b.features) and np.array_equal(a.target, b.target)
