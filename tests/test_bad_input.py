"""Damaged corpora: what the loader and `frgb fit|eval|predict` do with each kind of bad input.

Each case here is a row of reports/bad-input.md. A case is either an error (exit status 2, one
line `frgb: error: <file>[:<line>]: <problem>`, no traceback, no output file written) or a row
dropped and counted under its reason while the rest of the corpus is used (or a row that is
kept, when the contract says how to encode it).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from frgb.contract import FEATURES
from frgb.errors import FrgbError
from frgb.export.package import export
from frgb.loading import (
    BAD_TARGET, DUPLICATE, FAILED, NEG_FEATURE, NO_FEATURE, NO_TARGET, TRUNCATED, load_corpus,
)
from tests.helpers import historical, invoke

NO_CRF = "crf missing or not a number"
NOT_OBJECT = "{path}:{n}: not a JSON object; every line must be one JSON object"
EMPTY = "{path}: no rows (the file is empty)"
BIG = 100 << 20  # the 100 MB line


def jsonl(rows: list) -> bytes:
    """JSON Lines bytes of dicts (NaN and Infinity written as JSON's non-standard tokens)."""
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


@pytest.fixture(scope="module")
def good(small_corpus_path) -> list[dict]:
    """About 50 usable rows of four sources."""
    rows = [json.loads(line) for line in small_corpus_path.read_text().splitlines()]
    return [r for r in rows if r["exit_status"] == 0][::8]


@pytest.fixture(scope="module")
def model(fitted, small_corpus, tmp_path_factory) -> Path:
    """An exported model for `frgb eval` and `frgb predict`."""
    return export(fitted, small_corpus, tmp_path_factory.mktemp("model"), "m", "onnxml", {"smoke": True}, {}).onnx_path


# --------------------------------------------------------------------------------------------
# Errors: one line naming the file (and line), exit 2, nothing written.


@dataclass
class Error:
    input: str  # what the file holds, as reports/bad-input.md names it
    content: Callable[[list[dict]], bytes] | None  # file bytes from the good rows (None: special path)
    message: str  # expected error, with {path}, {n} (the bad line: after the good rows) and {rows}
    path: Callable[[Path], Path] | None = None  # for inputs that are not a file we write

    def make(self, folder: Path, good: list[dict]) -> Path:
        if self.path:
            return self.path(folder)
        path = folder / "corpus.jsonl"
        path.write_bytes(self.content(good))
        return path

    def expected(self, path: Path, good: list[dict]) -> str:
        return self.message.format(path=path, n=len(good) + 1, rows=len(good))


def _directory(folder: Path) -> Path:
    (folder / "corpus.jsonl").mkdir()
    return folder / "corpus.jsonl"


def _unreadable(folder: Path) -> Path:
    if not Path("/proc/self/mem").exists():
        pytest.skip("needs Linux's /proc/self/mem (a file that opens but cannot be read)")
    return Path("/proc/self/mem")


ERRORS = [
    Error("empty file", lambda g: b"", EMPTY),
    Error("only blank lines", lambda g: b"\n  \n\t\n", EMPTY),
    Error("missing path", None, "{path}: no such file", path=lambda d: d / "missing.jsonl"),
    Error("a folder without *.jsonl shards", None, "{path}: a folder without *.jsonl corpus shards", path=_directory),
    Error("a file that cannot be read (I/O error)", None, "{path}: cannot read (Input/output error)", path=_unreadable),
    Error("non-UTF-8 bytes (Latin-1 'é')", lambda g: jsonl(g) + b'{"src": "caf\xe9"}\n', "{path}:{n}: not UTF-8 text (byte 0xe9)"),
    Error("valid JSON, not an object: array", lambda g: jsonl(g) + b"[1, 2]\n" + jsonl(g[:1]), NOT_OBJECT),
    Error("valid JSON, not an object: number", lambda g: jsonl(g) + b"42\n", NOT_OBJECT),
    Error("valid JSON, not an object: string", lambda g: jsonl(g) + b'"abc"\n', NOT_OBJECT),
    Error("valid JSON, not an object: null", lambda g: jsonl(g) + b"null\n", NOT_OBJECT),
    Error("malformed JSON", lambda g: jsonl(g) + b'{"src": "x", "crf": }\n' + jsonl(g[:1]),
          "{path}:{n}: malformed JSON (Expecting value at column 21)"),
    Error("JSON object nested 100,000 deep", lambda g: jsonl(g) + b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n",
          "{path}:{n}: JSON nested too deeply to read"),
    Error("every row a failed encode", lambda g: jsonl([dict(r, exit_status=1) for r in g]),
          "{path}: no usable rows ({rows} failed encode (exit_status != 0))"),
    Error("every row unusable, for two reasons", lambda g: jsonl([dict(r, exit_status=1) for r in g[:2]] + [{"vmaf_score": 50}]),
          f"{{path}}: no usable rows (2 {FAILED}, 1 {NO_FEATURE})"),
]


def _ids(cases) -> list[str]:
    return [c.input for c in cases]


@pytest.mark.parametrize("case", ERRORS, ids=_ids(ERRORS))
def test_loader_error_is_one_line_naming_file_and_line(case, good, tmp_path):
    path = case.make(tmp_path, good)
    for require_target in (True, False):  # fit/eval, and predict
        with pytest.raises(FrgbError) as error:
            load_corpus(path, require_target=require_target)
        assert str(error.value) == case.expected(path, good)


#: Each command, given (corpus, model, output path); every one must write nothing on error.
COMMANDS = {
    "fit": lambda corpus, model, out: ["fit", "--corpus", corpus, "--out", out, "--no-cv"],
    "eval": lambda corpus, model, out: ["eval", model, "--corpus", corpus],
    "predict": lambda corpus, model, out: ["predict", model, corpus, "-o", out],
}


def files_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def assert_fails_in_one_line(args: list, message: str, folder: Path) -> None:
    """Exit 2, exactly `frgb: error: <message>` (so no traceback), and no file written in `folder`."""
    before = files_under(folder)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [f"frgb: error: {message}"]
    assert files_under(folder) == before, "an output file was written although the command failed"


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("case", ERRORS, ids=_ids(ERRORS))
def test_cli_error_is_one_line_and_writes_nothing(case, command, good, model, tmp_path):
    path = case.make(tmp_path, good)
    args = COMMANDS[command](path, model, tmp_path / "out")
    assert_fails_in_one_line(args, case.expected(path, good), tmp_path)


def test_a_100_mb_line_of_garbage_is_an_error_naming_its_line(good, model, tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(jsonl(good) + b"{" + b"x" * BIG + b"\n" + jsonl(good[:1]))
    message = f"{path}:{len(good) + 1}: malformed JSON (Expecting property name enclosed in double quotes at column 2)"
    assert_fails_in_one_line(COMMANDS["fit"](path, model, tmp_path / "out"), message, tmp_path)


# --------------------------------------------------------------------------------------------
# Rows that cannot train: dropped and counted by reason; the rest of the file is used.


@dataclass
class Drop:
    input: str
    row: Callable[[dict], dict] | None  # the bad row, made from a good one
    reason: str  # why `fit` and `eval` drop it
    predict: str | None = "same"  # why `predict` drops it (None: kept, it needs no vmaf_score)
    tail: Callable[[dict], bytes] | None = None  # raw bytes instead of a row (the last line)

    def line(self, good_row: dict) -> bytes:
        return self.tail(good_row) if self.tail else jsonl([self.row(good_row)])

    def reason_for(self, require_target: bool) -> str | None:
        return self.reason if require_target or self.predict == "same" else self.predict


def _strings(row: dict) -> dict:
    return dict(row, **{f"{f}_mean": str(row[f"{f}_mean"]) for f in FEATURES})


def _nested(row: dict, value) -> dict:
    """A schema v1 row whose per_frame_features is `value`."""
    return dict(historical(row, "nested"), per_frame_features=value)


DROPS = [
    Drop("truncated final line (no newline, not valid JSON)", None, TRUNCATED,
         tail=lambda r: json.dumps(r).encode()[:300]),
    Drop("final line cut inside a UTF-8 character", None, TRUNCATED,
         tail=lambda r: json.dumps(dict(r, src="café"), ensure_ascii=False).encode().split("é".encode())[0] + b"\xc3"),
    Drop('"crf": "abc"', lambda r: dict(r, crf="abc"), NO_CRF),
    Drop('"crf": "23" (a number in a string)', lambda r: dict(r, crf="23"), NO_CRF),
    Drop('"crf": true', lambda r: dict(r, crf=True), NO_CRF),
    Drop('"crf": null', lambda r: dict(r, crf=None), NO_CRF),
    Drop("no crf key", lambda r: {k: v for k, v in r.items() if k != "crf"}, NO_CRF),
    Drop('"crf": 64 with libsvtav1 (above the contract\'s 63)', lambda r: dict(r, encoder="libsvtav1", crf=64), "crf above 63"),
    Drop('"crf": -1', lambda r: dict(r, crf=-1), "crf negative"),
    Drop('"crf": 10**400 (an integer beyond float range)', lambda r: dict(r, crf=10**400), NO_CRF),
    Drop('"vmaf_score": null', lambda r: dict(r, vmaf_score=None), NO_TARGET, predict=None),
    Drop('"vmaf_score": "95"', lambda r: dict(r, vmaf_score="95"), NO_TARGET, predict=None),
    Drop('"vmaf_score": NaN', lambda r: dict(r, vmaf_score=float("nan")), NO_TARGET, predict=None),
    Drop('"vmaf_score": 120', lambda r: dict(r, vmaf_score=120.0), BAD_TARGET, predict=None),
    Drop('features as strings ("adm2_mean": "0.97", ...)', _strings, NO_FEATURE),
    Drop('"adm2_mean": NaN', lambda r: dict(r, adm2_mean=float("nan")), NO_FEATURE),
    Drop('"adm2_mean": Infinity', lambda r: dict(r, adm2_mean=float("inf")), NO_FEATURE),
    Drop('"vif_scale0_mean": -Infinity', lambda r: dict(r, vif_scale0_mean=float("-inf")), NO_FEATURE),
    Drop('"motion2_mean": -0.5 (negative feature)', lambda r: dict(r, motion2_mean=-0.5), NEG_FEATURE),
    Drop("a feature key missing", lambda r: {k: v for k, v in r.items() if k != "vif_scale3_mean"}, NO_FEATURE),
    Drop('v1 row, "per_frame_features": "abc"', lambda r: _nested(r, "abc"), NO_FEATURE),
    Drop('v1 row, "per_frame_features": [1, 2]', lambda r: _nested(r, [1, 2]), NO_FEATURE),
    Drop('"exit_status": 1 (failed encode)', lambda r: dict(r, exit_status=1), FAILED),
    Drop("{} (an empty object)", lambda r: {}, NO_TARGET, predict=NO_FEATURE),
    Drop("a key frgb does not read holds 10**400", lambda r: dict(r, foo=10**400, vmaf_score=None), NO_TARGET,
         predict=None),
]


def load_with(good: list[dict], extra: bytes, tmp_path: Path, require_target: bool = True):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(jsonl(good) + extra)
    return load_corpus(path, require_target=require_target)


@pytest.mark.parametrize("require_target", [True, False], ids=["fit-eval", "predict"])
@pytest.mark.parametrize("case", DROPS, ids=_ids(DROPS))
def test_unusable_row_is_dropped_and_counted_by_reason(case, require_target, good, tmp_path):
    corpus = load_with(good, case.line(good[0]), tmp_path, require_target)
    reason = case.reason_for(require_target)
    assert corpus.dropped == ({reason: 1} if reason else {})
    assert len(corpus) == len(good) + (0 if reason else 1)
    assert corpus.lines == len(good) + 1


# --------------------------------------------------------------------------------------------
# Rows that the contract knows how to encode: kept.


@dataclass
class Kept:
    input: str
    row: Callable[[dict], dict]
    codec: Callable[[dict], list[float]]  # the expected codec block, from the good row


def _unknown(row: dict) -> list[float]:
    return [0, 0, 0, 0, 0, 1, 5 / 9, row["crf"] / 63]


KEPT = [
    Kept('unknown encoder "h264_nvenc"', lambda r: dict(r, encoder="h264_nvenc"), _unknown),
    Kept('empty encoder ""', lambda r: dict(r, encoder=""), _unknown),
    Kept("no encoder key", lambda r: {k: v for k, v in r.items() if k != "encoder"}, _unknown),
    Kept('"encoder": 5 (not a string)', lambda r: dict(r, encoder=5), _unknown),
    Kept('" X264 " (an alias, any case, spaces)', lambda r: dict(r, encoder=" X264 ", preset="slow"),
         lambda r: [1, 0, 0, 0, 0, 0, 6 / 9, r["crf"] / 63]),
    Kept('"crf": 60 with libx264 (clipped to 51)', lambda r: dict(r, encoder="libx264", preset="slow", crf=60),
         lambda r: [1, 0, 0, 0, 0, 0, 6 / 9, 51 / 63]),
]


@pytest.mark.parametrize("case", KEPT, ids=_ids(KEPT))
def test_row_the_contract_can_encode_is_kept(case, good, tmp_path):
    corpus = load_with(good, jsonl([case.row(good[0])]), tmp_path)
    assert corpus.dropped == {} and len(corpus) == len(good) + 1
    row = np.flatnonzero(corpus.line == len(good) + 1)
    assert corpus.codec[row].tolist() == [pytest.approx(case.codec(good[0]))]


# --------------------------------------------------------------------------------------------
# Whole-file shapes.


def test_duplicated_rows_are_dropped_and_counted(good, tmp_path):
    corpus = load_with(good, jsonl(good[:5] + good[:2]), tmp_path)
    assert corpus.dropped == {DUPLICATE: 7} and len(corpus) == len(good)


#: Whole files that must load exactly as the plain file of the good rows does.
SHAPES = {
    "mixed schema versions (v1, v2, v3, integer_ prefix) in one file":
        lambda g: jsonl([historical(r, ("nested", "nested_integer", "v3", "integer_prefix")[i % 4]) for i, r in enumerate(g)]),
    "UTF-8 byte-order mark at the start": lambda g: b"\xef\xbb\xbf" + jsonl(g),
    "CRLF line endings": lambda g: jsonl(g).replace(b"\n", b"\r\n"),
    "blank lines between rows": lambda g: jsonl(g).replace(b"\n", b"\n\n \n"),
    "a 100 MB line (a valid row with a 100 MB field frgb does not read)":
        lambda g: jsonl(g[1:]) + jsonl([dict(g[0], extra_params="x" * BIG)]),
}


@pytest.mark.parametrize("variant", SHAPES)
def test_file_shapes_that_load_to_the_same_arrays(variant, good, tmp_path):
    want = load_with(good, b"", tmp_path)
    path = tmp_path / "variant.jsonl"
    path.write_bytes(SHAPES[variant](good))
    got = load_corpus(path)
    assert got.dropped == {} and len(got) == len(good), variant
    for name in ("features", "codec", "target", "group"):
        assert np.array_equal(getattr(got, name), getattr(want, name)), (variant, name)


# --------------------------------------------------------------------------------------------
# Every drop and keep at once, through the commands: counted in their output, files written.


@pytest.fixture(scope="module")
def damaged(good, tmp_path_factory) -> tuple[Path, int]:
    """Good rows, then one row of every DROPS and KEPT case and some duplicates, the truncated
    line last; and the number of lines. Kept rows get scores of their own: some encode alike."""
    rows = [c.line(good[0]) for c in DROPS if not c.tail]
    rows += [jsonl([dict(c.row(good[0]), vmaf_score=i)]) for i, c in enumerate(KEPT)]
    rows += [jsonl(good[:3]), DROPS[0].line(good[0])]
    path = tmp_path_factory.mktemp("damaged") / "damaged.jsonl"
    path.write_bytes(jsonl(good) + b"".join(rows))
    return path, len(good) + len(rows) - 1 + 3


def expected_drops(require_target: bool) -> Counter:
    cases = [c for c in DROPS if not c.tail] + [DROPS[0]]
    return Counter({DUPLICATE: 3}) + Counter(r for c in cases if (r := c.reason_for(require_target)))


def test_fit_reports_every_drop_by_reason(damaged, good, tmp_path):
    path, lines = damaged
    result = invoke("fit", "--corpus", path, "--out", tmp_path, "--no-cv", "--target", "onnxml", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rows_dropped"] == expected_drops(True)
    assert report["rows_used"] == len(good) + len(KEPT) == lines - sum(expected_drops(True).values())
    assert json.loads((tmp_path / "frgb.json").read_text())["training"]["rows_dropped"] == expected_drops(True)


def test_eval_and_predict_report_every_drop_by_reason(damaged, model, tmp_path):
    path, lines = damaged
    result = invoke("eval", model, "--corpus", path, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows_dropped"] == expected_drops(True)
    out = tmp_path / "pred.jsonl"
    result = invoke("predict", model, path, "-o", out)
    assert result.exit_code == 0, result.output
    drops = expected_drops(False)
    assert len(out.read_text().splitlines()) == lines - sum(drops.values())
    assert f"; {sum(drops.values())} rows dropped: " in result.stderr
    assert all(f"{n} {reason}" in result.stderr for reason, n in drops.items())
