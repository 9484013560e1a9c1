"""Damaged corpora: what the loader and `frgb fit|eval|predict` do with each kind of bad input.

Each case here is a row of reports/bad-input.md. A case is either an error (exit status 2, one
line `frgb: error: <file>[:<line>]: <problem>`, no traceback, no output file written) or a row
dropped and counted under its reason while the rest of the corpus is used (or a row that is
kept, when the contract says how to encode it).
"""

from __future__ import annotations

import json
import re
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
    BAD_TARGET, BIG_FEATURE, DUPLICATE, DUPLICATE_KEY, FAILED, NEG_FEATURE, NO_FEATURE, NO_TARGET, TRUNCATED,
    load_corpus,
)
from tests.helpers import historical, invoke, sha256

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
    Error("a file of NUL bytes", lambda g: b"\0" * 1000, "{path}:1: NUL byte: not a text file"),
    Error("NUL bytes after good rows (a tail a crash filled with zeros)", lambda g: jsonl(g) + b"\0" * 64,
          "{path}:{n}: NUL byte: not a text file"),
    Error("/dev/zero (a device that never ends)", None, "{path}:1: NUL byte: not a text file",
          path=lambda d: Path("/dev/zero")),
    Error("a single torn line (no newline, not valid JSON)", lambda g: b'{"src": "a", "crf": 2',
          "{path}: no rows (its only line is truncated: no newline at its end, and not valid JSON)"),
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


def files_under(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder`, with each file's SHA-256: what "no file changed" compares."""
    return {str(p): "folder" if p.is_dir() else sha256(p) for p in sorted(folder.rglob("*"))}


def assert_fails_in_one_line(args: list, message: str, folder: Path) -> None:
    """Exit 2, exactly `frgb: error: <message>` (so no traceback), and no file under `folder`
    written, changed or removed."""
    before = files_under(folder)
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [f"frgb: error: {message}"]
    assert files_under(folder) == before, "a file was written or changed although the command failed"


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
    text: Callable[[dict], bytes] | None = None  # the row as raw text (what json.dumps cannot write)

    def line(self, good_row: dict) -> bytes:
        if self.tail:
            return self.tail(good_row)
        return self.text(good_row) + b"\n" if self.text else jsonl([self.row(good_row)])

    def reason_for(self, require_target: bool) -> str | None:
        return self.reason if require_target or self.predict == "same" else self.predict


def _strings(row: dict) -> dict:
    return dict(row, **{f"{f}_mean": str(row[f"{f}_mean"]) for f in FEATURES})


def _nested(row: dict, value) -> dict:
    """A schema v1 row whose per_frame_features is `value`."""
    return dict(historical(row, "nested"), per_frame_features=value)


def _twice(row: dict, key: str, second: str, nested: bool = False) -> bytes:
    """The row as JSON text with `key` given again (as `second`, its raw text) right after its first
    value: Polars would read the first value, Python's json the second."""
    if nested:
        row = historical(row, "nested")
    text = json.dumps(row)
    first = f'"{key.split(".")[-1]}": '
    at = text.index(first) + len(first)
    end = at + len(json.dumps(row["per_frame_features"]["adm2"] if nested else row[key]))
    return (text[:end] + f", {second}" + text[end:]).encode()


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
    Drop('a key frgb reads given twice ("adm2_mean": 0.97, ..., "adm2_mean": 5.0)', None, DUPLICATE_KEY,
         text=lambda r: _twice(r, "adm2_mean", '"adm2_mean": 5.0')),
    Drop("a key given twice inside per_frame_features", None, DUPLICATE_KEY,
         text=lambda r: _twice(r, "per_frame_features.adm2", '"adm2": 0.1', nested=True)),
    Drop('a key given twice, once spelled with an escape ("\\u0061dm2_mean")', None, DUPLICATE_KEY,
         text=lambda r: _twice(r, "adm2_mean", '"\\u0061dm2_mean": 5.0')),
    Drop('"adm2_mean": 100.5 (above libvmaf\'s 100)', lambda r: dict(r, adm2_mean=100.5), BIG_FEATURE),
    Drop('"vif_scale2_mean": 14.5 (above libvmaf\'s 14)', lambda r: dict(r, vif_scale2_mean=14.5), BIG_FEATURE),
    Drop('"motion2_mean": 256.5 (above libvmaf\'s 256)', lambda r: dict(r, motion2_mean=256.5), BIG_FEATURE),
    Drop('"adm2_mean": 1e39 (beyond float32)', lambda r: dict(r, adm2_mean=1e39), BIG_FEATURE),
    Drop('"vif_scale0_mean": 1e300', lambda r: dict(r, vif_scale0_mean=1e300), BIG_FEATURE),
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
    Kept("features at libvmaf's bounds (adm2 100, vif_scale0..3 14, motion2 256)",
         lambda r: dict(r, encoder="libx264", preset="slow", adm2_mean=100.0, motion2_mean=256.0,
                        **{f"vif_scale{k}_mean": 14.0 for k in range(4)}),
         lambda r: [1, 0, 0, 0, 0, 0, 6 / 9, r["crf"] / 63]),
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


# --------------------------------------------------------------------------------------------
# Issue 15: every command, every input file and every output path.


def test_a_key_given_twice_is_dropped_on_both_parsing_paths_whatever_the_order_of_lines(good, tmp_path, monkeypatch):
    """Polars keeps a duplicated key's first value and Python's json its last; which of them
    reads a line depended on the other lines of its block (a NaN anywhere sends the whole block
    to json). A key frgb reads given twice is now dropped on both, and the same lines in any
    order and any blocking give the same corpus. A key frgb does not read may be given twice."""
    import random

    import frgb.loading

    twice = _twice(good[0], "adm2_mean", '"adm2_mean": 5.0') + b"\n"
    unread_twice = json.dumps(dict(good[1], crf=31.0))[:-1].encode() + b', "notes": 1, "notes": 2}\n'
    nan_row = jsonl([dict(good[2], crf=33.0, vif_scale1_mean=float("nan"))])
    lines = [jsonl([r]) for r in good] + [twice, unread_twice, nan_row]
    want = None
    for seed, block in [(0, 16 << 20), (1, 4096), (2, 1500), (3, 4096), (4, 700)]:
        monkeypatch.setattr(frgb.loading, "BLOCK_BYTES", block)
        path = tmp_path / f"order{seed}.jsonl"
        path.write_bytes(b"".join(random.Random(seed).sample(lines, len(lines)) if seed else lines))
        corpus = load_corpus(path)
        assert corpus.dropped == {DUPLICATE_KEY: 1, NO_FEATURE: 1}, (seed, block)
        got = [getattr(corpus, k).tolist() for k in ("features", "codec", "target", "group", "crf")]
        assert want is None or got == want, f"shuffle {seed} with {block}-byte blocks gives another corpus"
        want = got
    assert len(corpus) == len(good) + 1


def test_a_line_longer_than_the_limit_is_an_error_naming_it(good, tmp_path, monkeypatch):
    import frgb.loading

    monkeypatch.setattr(frgb.loading, "BLOCK_BYTES", 64 << 10)
    monkeypatch.setattr(frgb.loading, "MAX_LINE_BYTES", 1 << 20)
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(jsonl(good) + b'{"src": "' + b"x" * (2 << 20) + b'"}\n')
    with pytest.raises(FrgbError) as error:
        load_corpus(path)
    assert str(error.value) == (f"{path}:{len(good) + 1}: a line longer than 1 MiB (no newline in sight); a corpus "
                                "row is far shorter")


def test_a_source_with_no_end_is_an_error_not_unbounded_memory(good, tmp_path, monkeypatch):
    """A FIFO fed rows without end (as `yes ROW > fifo` would): reading stops at MAX_STREAM_BYTES."""
    import os
    import threading

    import frgb.loading

    monkeypatch.setattr(frgb.loading, "BLOCK_BYTES", 64 << 10)
    monkeypatch.setattr(frgb.loading, "MAX_STREAM_BYTES", 1 << 20)
    fifo = tmp_path / "endless.jsonl"
    os.mkfifo(fifo)
    row, stop = jsonl(good[:1]), threading.Event()

    def feed():
        try:
            with open(fifo, "wb") as f:
                while not stop.is_set():
                    f.write(row * 64)
        except BrokenPipeError:
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        with pytest.raises(FrgbError) as error:
            load_corpus(fifo)
    finally:
        stop.set()
    writer.join(timeout=10)
    assert str(error.value) == f"{fifo}: not a regular file, and more than 1 MiB read without an end; save the corpus to a file"


# Output paths: derived from --out / --id / -o and checked before any work.


def _cases(table: list[tuple]) -> list:
    """pytest parameters of a table whose rows are (case name, *values)."""
    return [pytest.param(*row[1:], id=row[0]) for row in table]


def fit_args(corpus: Path, out: Path, *extra) -> list:
    return ["fit", "--corpus", corpus, "--out", out, "--no-cv", "--target", "onnxml", *extra]


@pytest.fixture()
def corpus_file(good, tmp_path) -> Path:
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(jsonl(good))
    return path


@pytest.fixture()
def model_dir(model, tmp_path) -> Path:
    """A copy of the exported model's folder (m.onnx, m.json, registry.json) to damage."""
    import shutil

    return Path(shutil.copytree(model.parent, tmp_path / "model"))


BAD_IDS = [
    ("../x", "--id '../x' is not a plain file name (no / or \\): a model's files are written inside --out"),
    ("a/b", "--id 'a/b' is not a plain file name (no / or \\): a model's files are written inside --out"),
    ("", "--id is empty: give a file stem, e.g. --id frgb"),
    (".m", "--id '.m' starts with a dot: its files would be hidden (and '..' is outside --out)"),
    ("..", "--id '..' starts with a dot: its files would be hidden (and '..' is outside --out)"),
    ("a\nb", "--id 'a\\nb' holds a control character"),
    ("registry", "--id 'registry': its sidecar would be {out}/registry.json, the registry that lists every model in "
                 "the folder; choose another id"),
    ("m" * 300, f"--id '{'m' * 300}' is too long: {'m' * 300}.onnx with frgb's temporary suffix is over 255 bytes"),
]


@pytest.mark.parametrize("model_id, message", BAD_IDS, ids=["../x", "a/b", "empty", ".m", "..", "newline", "registry",
                                                            "300 characters"])
def test_fit_refuses_an_id_that_is_not_a_plain_visible_file_stem(model_id, message, corpus_file, tmp_path):
    out = tmp_path / "out"
    assert_fails_in_one_line(fit_args(corpus_file, out, "--id", model_id), message.format(out=out), tmp_path)


def test_fit_refuses_an_out_that_is_a_file_or_under_one(corpus_file, tmp_path):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file"
    assert_fails_in_one_line(fit_args(corpus_file, out), f"--out {out}: exists and is not a folder", tmp_path)
    out = tmp_path / "file" / "sub"
    assert_fails_in_one_line(fit_args(corpus_file, out), f"--out {out}: {tmp_path / 'file'} is not a folder", tmp_path)


def test_fit_refuses_to_write_over_its_corpus_or_prior_file_or_a_folder(good, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    corpus = out / "m.json"
    corpus.write_bytes(jsonl(good))
    assert_fails_in_one_line(fit_args(corpus, out, "--id", "m"), f"{corpus}: is the corpus; writing it would destroy it",
                             tmp_path)
    prior = out / "m_libvmaf.json"
    prior.write_text("{}")
    other = tmp_path / "corpus.jsonl"
    other.write_bytes(jsonl(good))
    assert_fails_in_one_line(["fit", "--corpus", other, "--out", out, "--id", "m", "--prior", prior],
                             f"{prior}: is the VMAF model file; writing it would destroy it", tmp_path)
    (out / "m.onnx").mkdir()
    assert_fails_in_one_line(fit_args(other, out, "--id", "m"),
                             f"{out / 'm.onnx'}: exists and is not a file; frgb fit would replace it", tmp_path)


@pytest.mark.parametrize("target", ["the model", "the model's sidecar", "the registry beside the model", "the corpus"])
def test_predict_refuses_to_write_over_the_model_its_files_or_the_corpus(target, model_dir, corpus_file, tmp_path):
    path = {"the model": model_dir / "m.onnx", "the model's sidecar": model_dir / "m.json",
            "the registry beside the model": model_dir / "registry.json", "the corpus": corpus_file}[target]
    assert_fails_in_one_line(["predict", model_dir / "m.onnx", corpus_file, "-o", path],
                             f"{path}: is {target}; writing it would destroy it", tmp_path)


def test_predict_refuses_an_output_that_is_a_folder_or_in_a_missing_one(model_dir, corpus_file, tmp_path):
    assert_fails_in_one_line(["predict", model_dir / "m.onnx", corpus_file, "-o", model_dir],
                             f"-o {model_dir}: is a folder, not a file", tmp_path)
    out = tmp_path / "missing" / "p.jsonl"
    assert_fails_in_one_line(["predict", model_dir / "m.onnx", corpus_file, "-o", out],
                             f"-o {out}: the folder {out.parent} does not exist", tmp_path)


def test_reports_are_never_written_over_the_corpus(corpus_file, tmp_path):
    message = f"{corpus_file}: is the corpus; writing it would destroy it"
    assert_fails_in_one_line(["eval", "--intervals", "0.9", "--corpus", corpus_file, "--report", corpus_file], message,
                             tmp_path)
    assert_fails_in_one_line(["tune", "--corpus", corpus_file, "--report", corpus_file], message, tmp_path)
    (tmp_path / "file").write_text("x")
    assert_fails_in_one_line(["report", "--corpus", corpus_file, "--out", tmp_path / "file"],
                             f"--out {tmp_path / 'file'}: exists and is not a folder", tmp_path)


def test_a_registry_keeps_its_own_keys_and_rows_when_a_fit_adds_its_own(corpus_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    other = {"id": "other", "kind": "nr", "onnx": "other.onnx", "license": "BSD-3-Clause", "sigstore_bundle": "x.sig"}
    (out / "registry.json").write_text(json.dumps({"schema_version": 1, "models": [other],
                                                   "generator": {"by": "hand"}}))
    result = invoke(*fit_args(corpus_file, out, "--id", "m"))
    assert result.exit_code == 0, result.output
    registry = json.loads((out / "registry.json").read_text())
    assert registry["schema_version"] == 1 and registry["generator"] == {"by": "hand"}
    assert [r["id"] for r in registry["models"]] == ["m", "other"] and registry["models"][1] == other


# Every file frgb reads besides the corpus: checked, one line naming the file and the problem.


REGISTRIES = [
    ("a JSON list", b"[]", 'not a registry file (expected {"models": [...]})'),
    ('"models" an object', b'{"models": {}}', 'not a registry file (expected {"models": [...]})'),
    ("a row that is not an object", b'{"models": [1]}', "not a registry file (models[0] is not an object)"),
    ("a row without id", b'{"models": [{"onnx": "a.onnx"}]}', 'not a registry file (models[0] has no "id" (a non-empty string))'),
    ("a row whose id is a number", b'{"models": [{"id": 5}]}', 'not a registry file (models[0] has no "id" (a non-empty string))'),
    ("an id listed twice", b'{"models": [{"id": "a"}, {"id": "a"}]}', "not a registry file (id 'a' is listed twice)"),
    ("another schema version", b'{"schema_version": 2, "models": []}',
     "not a registry file (schema_version 2; frgb reads and writes version 1)"),
    ("NaN", b'{"models": [{"id": "a", "opset": NaN}]}', "not a registry file (NaN is not a JSON number)"),
    ("a key given twice", b'{"models": [], "models": []}', "not a registry file (key 'models' appears twice in one object)"),
    ("malformed JSON", b"nope", "not a registry file (malformed JSON: Expecting value at line 1 column 1)"),
    ("empty", b"", "not a registry file (malformed JSON: Expecting value at line 1 column 1)"),
    ("binary", b"\xff\xfe\x00\x01", "not UTF-8 text (byte 0xff at offset 0); not a registry file"),
]


@pytest.mark.parametrize("content, problem", _cases(REGISTRIES))
def test_fit_into_a_folder_with_a_damaged_registry_stops_before_fitting(content, problem, corpus_file, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "registry.json").write_bytes(content)
    assert_fails_in_one_line(fit_args(corpus_file, out), f"{out / 'registry.json'}: {problem}", tmp_path)


def test_fit_refuses_a_registry_that_is_a_folder(corpus_file, tmp_path):
    out = tmp_path / "out"
    (out / "registry.json").mkdir(parents=True)
    assert_fails_in_one_line(fit_args(corpus_file, out),
                             f"{out / 'registry.json'}: exists and is not a file; frgb fit would replace it", tmp_path)


def _vmaf_model(change) -> bytes:
    from importlib import resources

    spec = json.loads(resources.files("frgb.vmaf_models").joinpath("vmaf_v0.6.1.json").read_text())
    return change(spec)


VMAF_MODELS = [
    ("binary", lambda: b"\xff" + b"\x00" * 20, "{f}: not UTF-8 text (byte 0xff at offset 0); not a VMAF model file"),
    ("no model_dict", lambda: b"{}", "VMAF model '{f}': not a VMAF model JSON (no model_dict)"),
    ("slopes missing", lambda: _vmaf_model(lambda s: json.dumps({"model_dict": {k: v for k, v in s["model_dict"].items()
                                                                               if k != "slopes"}}).encode()),
     "VMAF model '{f}': not a usable VMAF model (slopes must be 7 finite numbers)"),
    ("feature_names not a list", lambda: _vmaf_model(lambda s: json.dumps({"model_dict": {**s["model_dict"],
                                                                                          "feature_names": 6}}).encode()),
     "VMAF model '{f}': not a usable VMAF model (feature_names must be a list of names)"),
    ("model not a libsvm string", lambda: _vmaf_model(lambda s: json.dumps({"model_dict": {**s["model_dict"],
                                                                                           "model": "x"}}).encode()),
     "VMAF model '{f}': not a usable VMAF model (model is not a libsvm model string (no SV section))"),
    ("NaN in a slope", lambda: b'{"model_dict": {"slopes": [NaN]}}', "{f}: not a VMAF model file (NaN is not a JSON number)"),
]


@pytest.mark.parametrize("make, message", _cases(VMAF_MODELS))
def test_fit_with_a_damaged_vmaf_model_file_stops_before_fitting(make, message, corpus_file, tmp_path):
    prior = tmp_path / "model.json"
    prior.write_bytes(make())
    assert_fails_in_one_line(fit_args(corpus_file, tmp_path / "out", "--prior", prior), message.format(f=prior), tmp_path)


def test_fit_with_an_endless_device_as_vmaf_model_or_input_scaler_stops(corpus_file, tmp_path):
    assert_fails_in_one_line(fit_args(corpus_file, tmp_path / "out", "--prior", "/dev/zero"),
                             "/dev/zero: not a regular file, and larger than 64 MiB; not a VMAF model file", tmp_path)
    assert_fails_in_one_line(fit_args(corpus_file, tmp_path / "out", "--input-scaler", "/dev/zero"),
                             "/dev/zero: not a regular file, and larger than 64 MiB; not a sidecar", tmp_path)


SCALERS = [
    ("binary", b"\xff", "{f}: not UTF-8 text (byte 0xff at offset 0); not a sidecar"),
    ("NaN", b'{"feature_mean": [NaN, 0, 0, 0, 0, 0], "feature_std": [1, 1, 1, 1, 1, 1]}',
     "{f}: not a sidecar (NaN is not a JSON number)"),
    ("a JSON list", b"[0, 1]", "{f}: --input-scaler needs a sidecar whose feature_mean and feature_std are 6 finite "
                               "numbers each"),
    ("five numbers", b'{"feature_mean": [0, 0, 0, 0, 0], "feature_std": [1, 1, 1, 1, 1, 1]}',
     "{f}: --input-scaler needs a sidecar whose feature_mean and feature_std are 6 finite numbers each"),
    ("null feature_std", b'{"feature_mean": [0, 0, 0, 0, 0, 0], "feature_std": null}',
     "{f}: --input-scaler needs a sidecar whose feature_mean and feature_std are 6 finite numbers each"),
    ("a zero std", b'{"feature_mean": [0, 0, 0, 0, 0, 0], "feature_std": [1, 1, 1, 1, 1, 0]}',
     "{f}: feature_std must be positive, got [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]"),
]


@pytest.mark.parametrize("content, message", _cases(SCALERS))
def test_fit_with_a_damaged_input_scaler_stops_before_fitting(content, message, corpus_file, tmp_path):
    scaler = tmp_path / "old.json"
    scaler.write_bytes(content)
    assert_fails_in_one_line(fit_args(corpus_file, tmp_path / "out", "--input-scaler", scaler),
                             message.format(f=scaler), tmp_path)


@pytest.mark.parametrize("scaler, start", [
    ({"feature_mean": [1e10] * 6, "feature_std": [1] * 6},  # the graph is far from the model (or not finite)
     "onnxml export failed the parity check"),
    ({"feature_mean": [0] * 6, "feature_std": [1e-44] * 6},
     "onnxml export failed the parity check on raw features: scaled with the input scaling (feature_mean/feature_std), "
     "the training rows reach "),
], ids=["mean 1e10", "std 1e-44"])
def test_fit_with_an_absurd_input_scaler_fails_parity_and_changes_nothing(scaler, start, model_dir, corpus_file, tmp_path):
    """Scalers that make the graph useless: the export fails its parity check (against its own
    reference, or on raw features against the unscaled model) and nothing is written."""
    old = tmp_path / "old.json"
    old.write_text(json.dumps(scaler))
    before = files_under(tmp_path)
    result = invoke(*fit_args(corpus_file, model_dir, "--id", "m", "--input-scaler", old))
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1, result.output
    assert result.output.startswith(f"frgb: error: {start}") and result.output.rstrip().endswith("; nothing written")
    assert files_under(tmp_path) == before


def test_a_fit_whose_second_export_fails_parity_writes_none_of_its_files(model_dir, small_corpus_path, small_corpus,
                                                                         tmp_path, monkeypatch):
    """Both targets into a folder holding a previous model: the onnxml graph passes, the libvmaf
    graph (its split indicator made 1 instead of 2^-74, which its consumers count 2^74 times)
    fails parity. Neither is written: every export is checked before any file is.
    Fails if PARITY_TOLERANCE is widened (to 1e9, say), and if a fit writes a target as soon as it
    passes (the onnxml file would change)."""
    import re

    from frgb.export import libvmaf_trees

    monkeypatch.setattr(libvmaf_trees, "RIGHT", np.float32(1.0))
    before = files_under(tmp_path)
    result = invoke("fit", "--corpus", small_corpus_path, "--out", model_dir, "--id", "m", "--no-cv")
    assert result.exit_code == 2, result.output
    assert re.fullmatch(r"frgb: error: libvmaf export failed the parity check: largest \|onnx - python\| = \S+ "
                        rf"\(tolerance 0\.0001\) over {len(small_corpus)} rows and \d+ threshold rows; "
                        r"nothing written\n", result.output), result.output
    assert files_under(tmp_path) == before


ALLOWLISTS = [
    ("binary", b"\xff\x00", "{f}: not UTF-8 text (byte 0xff at offset 0); not a libvmaf op allowlist"),
    ("two names on a line", b"Add Mul\n", "{f}:1: 'Add Mul' is not an op type name; an allowlist holds one per line"),
    ("a NUL byte", b"Add\n\x00\n", "{f}:2: '\\x00' is not an op type name; an allowlist holds one per line"),
    ("empty", b"", "{f}: the allowlist names no op type"),
    ("only comments", b"# none\n", "{f}: the allowlist names no op type"),
]


@pytest.mark.parametrize("content, message", _cases(ALLOWLISTS))
def test_check_with_a_damaged_allowlist_is_a_one_line_error(content, message, model, tmp_path):
    allowlist = tmp_path / "allow.txt"
    allowlist.write_bytes(content)
    assert_fails_in_one_line(["check", model, "--allowlist", allowlist], message.format(f=allowlist), tmp_path)


def test_check_refuses_what_is_not_an_onnx_model(tmp_path):
    """Random bytes were "libvmaf loadable" (no op was offending): now an error, exit 2."""
    cases = [(b"\xff" * 64, "not a valid ONNX model (its bytes do not parse as an ONNX protobuf)"),
             (b"\x08\x07", "not a valid ONNX model (model with IR version >= 3 must specify opset_import for ONNX)")]
    for i, (content, problem) in enumerate(cases):
        path = tmp_path / f"m{i}.onnx"
        path.write_bytes(content)
        assert_fails_in_one_line(["check", path], f"{path}: {problem}", tmp_path)
    (tmp_path / "d.onnx").mkdir()
    assert_fails_in_one_line(["check", tmp_path / "d.onnx"], f"{tmp_path / 'd.onnx'}: is a directory, not an ONNX model",
                             tmp_path)
    assert_fails_in_one_line(["check", "/dev/zero"], "/dev/zero: not a regular file, and larger than 64 MiB; not an "
                                                     "ONNX model", tmp_path)


SIDECARS = [
    ("a JSON list", lambda s: [], "{s}: not a model sidecar (a JSON object with feature_mean and feature_std)"),
    ("feature_mean null", lambda s: dict(s, feature_mean=None),
     "{s}: not a model sidecar: feature_mean must be 6 finite numbers, got None"),
    ("feature_mean of five", lambda s: dict(s, feature_mean=[0.0] * 5),
     "{s}: not a model sidecar: feature_mean must be 6 finite numbers, got [0.0, 0.0, 0.0, 0.0, 0.0]"),
    ("feature_std with a string", lambda s: dict(s, feature_std=[1, 1, 1, 1, 1, "1"]),
     "{s}: not a model sidecar: feature_std must be 6 finite numbers, got [1, 1, 1, 1, 1, '1']"),
    ("a zero std", lambda s: dict(s, feature_std=[1, 1, 1, 1, 1, 0]),
     "{s}: not a model sidecar: feature_std must be positive, got [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]"),
    ("encoder_vocab without unknown", lambda s: dict(s, encoder_vocab=["libx264"]),
     "{s}: not a model sidecar: encoder_vocab must be distinct encoder names ending in 'unknown', got ['libx264']"),
    ("encoder_vocab of another width", lambda s: dict(s, encoder_vocab=[f"e{i}" for i in range(11)] + ["unknown"]),
     "{m}: inputs are features tensor(float) [None, 6], codec tensor(float) [None, 8]; the contract's are features "
     "float32 (N, 6) and codec float32 (N, 14) (the sidecar's encoder_vocab + 2)"),
]


@pytest.mark.parametrize("command", ["eval", "predict"])
@pytest.mark.parametrize("change, message", _cases(SIDECARS))
def test_a_damaged_sidecar_is_a_one_line_error(change, message, command, model_dir, corpus_file, tmp_path):
    sidecar = model_dir / "m.json"
    sidecar.write_text(json.dumps(change(json.loads(sidecar.read_text()))))
    args = {"eval": ["eval", model_dir / "m.onnx", "--corpus", corpus_file],
            "predict": ["predict", model_dir / "m.onnx", corpus_file, "-o", tmp_path / "p.jsonl"]}[command]
    assert_fails_in_one_line(args, message.format(s=sidecar, m=model_dir / "m.onnx"), tmp_path)


@pytest.mark.parametrize("content, problem", [
    (b"\xff\xfe", "not UTF-8 text (byte 0xff at offset 0); not a model sidecar"),
    (b'{"feature_mean": [NaN, 0, 0, 0, 0, 0]}', "not a model sidecar (NaN is not a JSON number)"),
    (b"{", "not a model sidecar (malformed JSON: Expecting property name enclosed in double quotes at line 1 column 2)"),
], ids=["binary", "NaN", "malformed"])
def test_a_sidecar_that_is_not_json_is_a_one_line_error(content, problem, model_dir, corpus_file, tmp_path):
    (model_dir / "m.json").write_bytes(content)
    assert_fails_in_one_line(["eval", model_dir / "m.onnx", "--corpus", corpus_file], f"{model_dir / 'm.json'}: {problem}",
                             tmp_path)


def small_graph(path: Path, inputs=("features", "codec"), outputs=("score",), width: int = 0, nan: bool = False) -> Path:
    """A tiny ONNX graph: each output is the row sum of `features` (N,), or its first `width`
    columns (N, width), times NaN if `nan`; with a copy of a frgb sidecar (identity scaling)."""
    from onnx import TensorProto, helper, numpy_helper

    values = [helper.make_tensor_value_info(inputs[0], TensorProto.FLOAT, [None, 6]),
              helper.make_tensor_value_info(inputs[1], TensorProto.FLOAT, [None, 8])]
    consts = [numpy_helper.from_array(np.array(v, dtype=np.int64), name) for name, v in
              (("axes", [1]), ("start", [0]), ("stop", [max(width, 1)]))]
    consts.append(numpy_helper.from_array(np.array(np.nan if nan else 1.0, dtype=np.float32), "factor"))
    if width:
        first = helper.make_node("Slice", [inputs[0], "start", "stop", "axes"], ["s"])
    else:
        first = helper.make_node("ReduceSum", [inputs[0], "axes"], ["s"], keepdims=0)
    nodes = [first] + [helper.make_node("Mul", ["s", "factor"], [name]) for name in outputs]
    shape = [None, width] if width else [None]
    graph = helper.make_graph(nodes, "g", values, [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)
                                                   for n in outputs], initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    path.with_suffix(".json").write_text(json.dumps({"feature_mean": [0] * 6, "feature_std": [1] * 6}))
    return path


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_a_graph_whose_inputs_or_outputs_are_not_the_contracts_is_refused(command, good, corpus_file, tmp_path):
    """predict used to write the flattened values of an (N, 2) output, 2N numbers for N rows."""
    cases = [
        (small_graph(tmp_path / "a.onnx", inputs=("x", "codec")),
         "{m}: inputs are x tensor(float) [None, 6], codec tensor(float) [None, 8]; the contract's are features "
         "float32 (N, 6) and codec float32 (N, 8) (the sidecar's encoder_vocab + 2)"),
        (small_graph(tmp_path / "b.onnx", outputs=("out",)),
         "{m}: outputs are ['out']; the contract's are ['score'] (or ['score', 'lower', 'upper'] for an interval graph)"),
        (small_graph(tmp_path / "c.onnx", width=2),
         f"{{m}}: output score has shape ({len(good)}, 2) for {len(good)} rows; the contract's outputs are one value "
         "per row, (N,)"),
    ]
    for graph, message in cases:
        args = {"eval": ["eval", graph, "--corpus", corpus_file],
                "predict": ["predict", graph, corpus_file, "-o", tmp_path / "p.jsonl"]}[command]
        assert_fails_in_one_line(args, message.format(m=graph), tmp_path)


def test_a_graph_onnxruntime_cannot_load_is_a_one_line_error(corpus_file, model_dir, tmp_path):
    (model_dir / "m.onnx").write_bytes(b"\xff" * 64)
    before = files_under(tmp_path)
    result = invoke("eval", model_dir / "m.onnx", "--corpus", corpus_file)
    assert result.exit_code == 2 and len(result.output.splitlines()) == 1
    assert result.output.startswith(f"frgb: error: {model_dir / 'm.onnx'}: onnxruntime cannot load it: ")
    assert files_under(tmp_path) == before


def test_predictions_that_are_not_finite_are_written_as_null_and_metrics_as_null(good, corpus_file, tmp_path):
    """A graph that gives NaN: predict writes valid JSON (null), eval --json null figures, and the
    text says n/a. (predict used to write the token NaN, which is not JSON.)"""
    graph = small_graph(tmp_path / "nan.onnx", nan=True)
    out = tmp_path / "p.jsonl"
    result = invoke("predict", graph, corpus_file, "-o", out)
    assert result.exit_code == 0, result.output
    assert all(json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in the output"))["predicted_vmaf"] is None
               for line in out.read_text().splitlines())
    result = invoke("eval", graph, "--corpus", corpus_file, "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout, parse_constant=lambda c: pytest.fail(f"{c} in the output"))
    assert figures["plcc"] is None and figures["rmse"] is None
    text = invoke("eval", graph, "--corpus", corpus_file)
    assert "PLCC n/a  SROCC n/a  RMSE n/a" in text.output


# Degenerate corpora: one-line errors before fitting; every figure written is finite or null.


def _one_source(good: list[dict]) -> list[dict]:
    return [r for r in good if r["src"] == good[0]["src"]]


DEGENERATE = [
    ("constant scores", lambda g: [dict(r, vmaf_score=50.0) for r in g], [],
     "{c}: every usable row has vmaf_score 50: there is nothing to learn (PLCC and SROCC are undefined)"),
    ("one usable row", lambda g: g[:1], [], "{c}: 1 usable row; a fit needs at least 3 (PLCC and SROCC need three)"),
    ("two usable rows and a failed encode", lambda g: g[:2] + [dict(g[2], exit_status=1)], [],
     "{c}: 2 usable rows (1 failed encode (exit_status != 0)); a fit needs at least 3 (PLCC and SROCC need three)"),
    ("one source, cross-validated", _one_source, ["--cv"],
     "{c}: {n} usable rows, all of one source; leave-one-source-out (--no-cv fits without it) needs at least two "
     "sources"),
    ("one source, intervals", _one_source, ["--intervals", "0.9"],
     "{c}: {n} usable rows, all of one source; interval calibration, which is by source, needs at least two sources"),
    ("too few rows for a 0.99 interval", lambda g: g, ["--intervals", "0.99"],
     "{c}: {n} usable rows cannot calibrate a 0.99 interval (at least 99 are needed): lower the level or add rows"),
]


@pytest.mark.parametrize("rows, extra, message", _cases(DEGENERATE))
def test_fit_on_a_degenerate_corpus_is_a_one_line_error_before_fitting(rows, extra, message, good, tmp_path):
    path = tmp_path / "corpus.jsonl"
    chosen = rows(good)
    path.write_bytes(jsonl(chosen))
    n = sum(r.get("exit_status", 0) == 0 for r in chosen)
    assert_fails_in_one_line(fit_args(path, tmp_path / "out", *extra), message.format(c=path, n=n), tmp_path)


def test_cross_validating_commands_refuse_constant_scores_before_fitting(good, tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(jsonl([dict(r, vmaf_score=50.0) for r in good]))
    message = f"{path}: every usable row has vmaf_score 50: there is nothing to learn (PLCC and SROCC are undefined)"
    for args in (["eval", "--loso", "--corpus", path], ["eval", "--intervals", "0.9", "--corpus", path],
                 ["tune", "--corpus", path]):
        assert_fails_in_one_line(args, message, tmp_path)


def test_figures_that_are_undefined_are_written_as_null(good, tmp_path):
    """Two sources of two rows each: every held-out fold has two rows, so no fold has a PLCC. The
    sidecar and registry stay valid JSON (this used to be an internal error), the text says n/a."""
    rows = [r for r in good if r["src"] == good[0]["src"]][:2] + [r for r in good if r["src"] != good[0]["src"]][:2]
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(jsonl(rows))
    result = invoke("fit", "--corpus", path, "--out", tmp_path / "out", "--target", "onnxml")
    assert result.exit_code == 0, result.output
    assert "LOSO mean     PLCC n/a  SROCC n/a" in result.output
    training = json.loads((tmp_path / "out" / "frgb.json").read_text(),
                          parse_constant=lambda c: pytest.fail(f"{c} in the sidecar"))["training"]
    assert training["loso_plcc"] is None and training["loso_srocc"] is None and training["loso_rmse"] > 0


def test_train_refuses_a_bad_strategy_before_reading_the_corpus(good, tmp_path, monkeypatch):
    import frgb.pipeline
    from frgb.training import FitOptions

    monkeypatch.setattr(frgb.pipeline, "load_corpus", lambda *a: pytest.fail("the corpus was read"))
    with pytest.raises(FrgbError) as error:
        frgb.pipeline.train(tmp_path / "c.jsonl", tmp_path / "out", "m", FitOptions(), ["onnxml"], strategy="fast")
    assert str(error.value) == ("'fast' is not a valid Strategy; targets: onnxml, libvmaf, strategies: auto, table, gemm, "
                                "traversal")


# No file or option a user can give ends in `internal error`.

GARBAGE = {
    "random bytes": b"\x93\xff\x10\x00garbage\xfe" * 50,
    "empty": b"",
    "a JSON list": b"[1, 2, 3]\n",
    "JSON with NaN": b'{"x": NaN}\n',
    "text": b"hello\n",
    "a folder": None,
    "/dev/zero": None,
}


def _garbage_file(kind: str, folder: Path, name: str) -> Path:
    if kind == "/dev/zero":
        return Path("/dev/zero")
    path = folder / name
    if GARBAGE[kind] is None:
        path.mkdir()
    else:
        path.write_bytes(GARBAGE[kind])
    return path


#: Where a user hands frgb a file: the command line for file `f`, a good corpus `c` and model `m`.
FILE_ARGUMENTS = {
    "fit --corpus": lambda f, c, m, out: ["fit", "--corpus", f, "--out", out, "--no-cv"],
    "fit --prior": lambda f, c, m, out: ["fit", "--corpus", c, "--out", out, "--no-cv", "--prior", f],
    "fit --input-scaler": lambda f, c, m, out: ["fit", "--corpus", c, "--out", out, "--no-cv", "--input-scaler", f],
    "eval MODEL": lambda f, c, m, out: ["eval", f, "--corpus", c],
    "eval --corpus": lambda f, c, m, out: ["eval", m, "--corpus", f],
    "eval --loso --corpus": lambda f, c, m, out: ["eval", "--loso", "--corpus", f],
    "predict CORPUS": lambda f, c, m, out: ["predict", m, f, "-o", out / "p.jsonl"],
    "check MODEL": lambda f, c, m, out: ["check", f],
    "check --allowlist": lambda f, c, m, out: ["check", m, "--allowlist", f],
    "tune --corpus": lambda f, c, m, out: ["tune", "--corpus", f],
}


@pytest.mark.parametrize("argument", FILE_ARGUMENTS)
def test_no_file_a_user_gives_ends_in_an_internal_error(argument, corpus_file, model, tmp_path):
    """Every kind of garbage in every file argument: a one-line error (or, for an allowlist that
    happens to be valid text, a report), never the catch-all `internal error`."""
    (tmp_path / "out").mkdir()
    for kind in GARBAGE:
        path = _garbage_file(kind, tmp_path, f"garbage-{len(list(tmp_path.iterdir()))}")
        if argument == "eval MODEL" and path.is_file():
            path.with_suffix(".json").write_text(model.with_suffix(".json").read_text())
        result = invoke(*FILE_ARGUMENTS[argument](path, corpus_file, model, tmp_path / "out"))
        assert result.exit_code in (1, 2) and "internal error" not in result.output, (kind, result.output)
        if result.exit_code == 2:
            assert len(result.output.splitlines()) == 1 and result.output.startswith("frgb: error: "), (kind, result.output)


@pytest.mark.parametrize("kind", [k for k in GARBAGE if k not in ("a folder", "/dev/zero")])
def test_no_sidecar_or_registry_a_user_gives_ends_in_an_internal_error(kind, corpus_file, model_dir, tmp_path):
    for name, args in (("m.json", ["eval", model_dir / "m.onnx", "--corpus", corpus_file]),
                       ("registry.json", ["fit", "--corpus", corpus_file, "--out", model_dir, "--id", "m", "--no-cv"])):
        (model_dir / name).write_bytes(GARBAGE[kind])
        result = invoke(*args)
        assert result.exit_code == 2 and result.output.startswith("frgb: error: "), (name, result.output)
        assert len(result.output.splitlines()) == 1 and "internal error" not in result.output


# The corpus tool's inputs: the grid file, and the corpus it appends to.

GRIDS = [
    ("a JSON list", "g.json", b"[1, 2]", "not a valid grid file: expected a table (TOML) or an object (JSON) with sources and encoders"),
    ("encoders a list", "g.json", b'{"sources": ["lavfi:testsrc2"], "encoders": ["libx264"]}',
     "not a valid grid file: encoders must map each encoder to its presets and crfs"),
    ("crfs a number", "g.toml", b'sources = ["lavfi:testsrc2"]\n[encoders.libx264]\npresets = ["medium"]\ncrfs = 23\n',
     "not a valid grid file: each encoder's presets and crfs must be lists"),
    ("duration zero", "g.json", b'{"duration": 0}', "not a valid grid file: duration must be a positive number of seconds, got 0"),
    ("NaN", "g.json", b'{"duration": NaN}', "not a valid grid file: NaN is not a JSON number"),
    ("binary TOML", "g.toml", b"\xff\xfe", "not a valid grid file: 'utf-8' codec can't decode byte 0xff in position 0: "
                                           "invalid start byte"),
]


@pytest.mark.parametrize("name, content, problem", _cases(GRIDS))
def test_a_damaged_grid_file_is_a_one_line_error(name, content, problem, tmp_path):
    grid = tmp_path / name
    grid.write_bytes(content)
    assert_fails_in_one_line(["corpus", "--grid", grid, "--out", tmp_path / "c.jsonl"], f"{grid}: {problem}", tmp_path)
    assert_fails_in_one_line(["corpus", "--grid", "/dev/zero", "--out", tmp_path / "c.jsonl"],
                             "/dev/zero: not a regular file, and larger than 64 MiB; not a grid file", tmp_path)


def test_the_corpus_tool_never_truncates_a_file_that_is_not_a_corpus(model, tmp_path):
    """Resuming cuts a torn last line off --out; pointed at a model's .onnx (or any file that is
    not JSON Lines) it used to truncate that file before finding its first line is no row."""
    from frgb.corpus.build import existing_keys

    victim = tmp_path / "m.onnx"
    victim.write_bytes(model.read_bytes())
    before = sha256(victim)
    with pytest.raises(FrgbError) as error:
        existing_keys(victim, retry_failed=False)
    assert str(error.value) == f"{victim}:1: not a JSON row; fix or move the file before resuming"
    assert sha256(victim) == before
    with pytest.raises(FrgbError) as error:
        existing_keys(tmp_path, retry_failed=False)
    assert str(error.value) == f"{tmp_path}: not a regular file; --out must be a JSON Lines corpus file (or a new one)"


UNWRITABLE = Path("/proc/frgb-test")  # permission bits cannot stop root; /proc takes no new files


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_an_output_where_no_file_can_be_made_fails_before_any_work(model_dir, corpus_file, tmp_path):
    why = "cannot create files in /proc (No such file or directory)"
    assert_fails_in_one_line(["fit", "--corpus", corpus_file, "--out", UNWRITABLE], f"--out {UNWRITABLE}: {why}", tmp_path)
    assert_fails_in_one_line(["report", "--corpus", corpus_file, "--out", UNWRITABLE], f"--out {UNWRITABLE}: {why}",
                             tmp_path)
    out = Path("/proc/frgb-test.jsonl")
    assert_fails_in_one_line(["predict", model_dir / "m.onnx", corpus_file, "-o", out], f"-o {out}: {why}", tmp_path)
    out = Path("/proc/frgb-test.md")
    assert_fails_in_one_line(["tune", "--corpus", corpus_file, "--report", out], f"--report {out}: {why}", tmp_path)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_a_sweep_checks_its_output_and_folders_before_any_encode(tmp_path):
    from frgb.corpus.build import prepare_folders

    a_file = tmp_path / "corpus.jsonl"
    a_file.write_text("")
    cases = [
        ((UNWRITABLE / "c.jsonl", None, None), f"--out {UNWRITABLE / 'c.jsonl'}: its folder {UNWRITABLE}: cannot create"),
        ((a_file, UNWRITABLE, None), f"--work-dir {UNWRITABLE}: cannot create files in /proc"),
        ((a_file, None, a_file), f"--log-dir {a_file}: exists and is not a folder"),
        ((a_file, a_file / "w", None), f"--work-dir {a_file / 'w'}: {a_file} is not a folder"),
        ((tmp_path, None, None), f"{tmp_path}: not a regular file"),
    ]
    for args, message in cases:
        with pytest.raises(FrgbError, match=re.escape(message)):
            prepare_folders(*args)
    prepare_folders(tmp_path / "new" / "c.jsonl", tmp_path / "work" / "deep", tmp_path / "logs")
    assert all((tmp_path / p).is_dir() for p in ("new", "work/deep", "logs"))


# Issue 20: an adversarial pass over every command's options and paths.


def _a_fifo(folder: Path) -> Path:
    """A named pipe, in a folder of its own (reading it to hash it would block)."""
    import os

    folder.mkdir()
    os.mkfifo(folder / "fifo")
    return folder / "fifo"


def test_an_output_that_is_a_device_or_a_pipe_is_refused_not_replaced(model_dir, corpus_file, tmp_path):
    """`predict -o /dev/null` and `tune --report /dev/null` used to rename a regular file over the
    device (tested on a FIFO, which the same rename would have replaced)."""
    import stat

    fifo, work = _a_fifo(tmp_path / "pipes"), tmp_path / "work"
    work.mkdir()
    why = ("is not a regular file (a device or a pipe); frgb writes a new file and renames it into place, which "
           "would replace it: give a file path")
    for args, option in ((["predict", model_dir / "m.onnx", corpus_file, "-o", fifo], "-o"),
                         (["tune", "--corpus", corpus_file, "--report", fifo], "--report"),
                         (["eval", "--intervals", "0.9", "--corpus", corpus_file, "--report", fifo], "--report"),
                         (["eval", "--vectors", "--corpus", corpus_file, "--report", fifo], "--report")):
        assert_fails_in_one_line(args, f"{option} {fifo}: {why}", work)
        assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_a_symbolic_link_loop_is_a_one_line_error(model_dir, corpus_file, tmp_path):
    """A loop of links as a path frgb reads or writes was `internal error: RuntimeError: Symlink loop`
    (Path.resolve), or an error after the whole report's work."""
    from frgb.corpus.build import prepare_folders

    links = tmp_path / "links"
    links.mkdir()
    (links / "a").symlink_to(links / "b")
    (links / "b").symlink_to(links / "a")
    loop, work = links / "a", tmp_path / "work"
    work.mkdir()
    nothing = "a symbolic link to nothing (its target is missing, or the links form a loop)"
    assert_fails_in_one_line(["fit", "--corpus", loop, "--out", work / "out", "--no-cv"], f"{loop}: no such file", work)
    assert_fails_in_one_line(["fit", "--corpus", corpus_file, "--out", loop, "--no-cv"], f"--out {loop}: {nothing}", work)
    assert_fails_in_one_line(["fit", "--corpus", corpus_file, "--out", work / "out", "--no-cv", "--prior", loop],
                             f"VMAF model '{loop}': not a built-in (vmaf_v0.6.1, vmaf_4k_v0.6.1) nor a file", work)
    assert_fails_in_one_line(["report", "--corpus", corpus_file, "--out", loop], f"--out {loop}: {nothing}", work)
    result = invoke("predict", model_dir / "m.onnx", corpus_file, "-o", loop)
    assert result.exit_code == 0 and loop.is_file() and not loop.is_symlink()  # written in place of the link
    loop.unlink()
    loop.symlink_to(links / "b")
    with pytest.raises(FrgbError, match=re.escape(f"--out {loop}: Too many levels of symbolic links")):
        prepare_folders(loop, None, None)


EVAL_OPTIONS = [
    ("--min-plcc nan", ["{m}", "--min-plcc", "nan"], "--min-plcc nan is not a PLCC gate: give a number from -1 to 1"),
    ("--min-plcc 2 (a gate no model passes)", ["{m}", "--min-plcc", "2"],
     "--min-plcc 2.0 is not a PLCC gate: give a number from -1 to 1"),
    ("MODEL --report (no report was written)", ["{m}", "--report", "{t}/r.md"],
     "--report does not apply to scoring a MODEL.onnx; see frgb eval --help"),
    ("MODEL --prior", ["{m}", "--prior", "none"], "--prior does not apply to scoring a MODEL.onnx; see frgb eval --help"),
    ("--loso --min-plcc (the gate always passed)", ["--loso", "--min-plcc", "0.99"],
     "--min-plcc does not apply to --loso; see frgb eval --help"),
    ("--loso --report (no report was written)", ["--loso", "--report", "{t}/r.md"],
     "--report does not apply to --loso; see frgb eval --help"),
    ("--vectors --loso", ["--vectors", "--loso"], "--loso/--no-loso does not apply to --vectors; see frgb eval --help"),
    ("--intervals --layout", ["--intervals", "0.9", "--layout", "card"],
     "--layout does not apply to --intervals; see frgb eval --help"),
    ("--vectors --report CORPUS (it overwrote the corpus)", ["--vectors", "--report", "{c}"],
     "{c}: is the corpus; writing it would destroy it"),
    ("--vectors --report in a missing folder (failed after the work)", ["--vectors", "--report", "{t}/no/r.md"],
     "--report {t}/no/r.md: the folder {t}/no does not exist"),
]


@pytest.mark.parametrize("args, message", _cases(EVAL_OPTIONS))
def test_eval_refuses_options_its_mode_does_not_use_before_any_work(args, message, model_dir, corpus_file, tmp_path):
    """They used to be ignored: `frgb eval --loso --min-plcc 0.99` exited 0 whatever the PLCC."""
    names = {"m": model_dir / "m.onnx", "c": corpus_file, "t": tmp_path}
    assert_fails_in_one_line(["eval", *[a.format(**names) for a in args], "--corpus", corpus_file],
                             message.format(**names), tmp_path)


OPTION_VALUES = [
    ("eval --loso --seed -1 (the MLP's internal error after the trees' folds)", ["eval", "--loso", "--seed", "-1"],
     "--seed -1 is out of range: give a whole number from 0 to 2147483647"),
    ("report --seed 2**64", ["report", "--seed", str(2**64), "--out", "{t}/r"],
     f"--seed {2**64} is out of range: give a whole number from 0 to 2147483647"),
    ("fit --prior '' (fitted without a prior)", ["fit", "--prior", "", "--out", "{t}/o", "--no-cv"],
     "--prior is empty: give auto, none, a built-in VMAF model (vmaf_v0.6.1, vmaf_4k_v0.6.1) or a model JSON path"),
    ("tune --prior unknown (an error after the progress bar)", ["tune", "--prior", "vmaf_v9"],
     "VMAF model 'vmaf_v9': not a built-in (vmaf_v0.6.1, vmaf_4k_v0.6.1) nor a file"),
    ("fit --license '' (ignored)", ["fit", "--license", "", "--out", "{t}/o", "--no-cv"],
     "--license '' is not an SPDX license id or expression (e.g. MIT, BSD-2-Clause-Patent, 'Apache-2.0 OR MIT')"),
    ("fit --license with a newline", ["fit", "--license", "MIT\nx", "--out", "{t}/o", "--no-cv"],
     "--license 'MIT\\nx' is not an SPDX license id or expression (e.g. MIT, BSD-2-Clause-Patent, 'Apache-2.0 OR MIT')"),
    ("fit --strategy without the libvmaf target (ignored)", ["fit", "--strategy", "table", "--target", "onnxml",
                                                             "--out", "{t}/o"],
     "--strategy does not apply to a fit without --target libvmaf (it chooses how the libvmaf graph evaluates trees); "
     "see frgb fit --help"),
    ("report --bench missing (ignored)", ["report", "--bench", "{t}/missing.md", "--out", "{t}/r"],
     "{t}/missing.md: no such file"),
    ("report --bench /dev/zero (ignored)", ["report", "--bench", "/dev/zero", "--out", "{t}/r"],
     "/dev/zero: not a regular file, and larger than 64 MiB; not a fit-cost table"),
]


@pytest.mark.parametrize("args, message", _cases(OPTION_VALUES))
def test_option_values_are_checked_before_any_work(args, message, corpus_file, tmp_path):
    assert_fails_in_one_line([*[a.format(t=tmp_path) for a in args], "--corpus", corpus_file],
                             message.format(t=tmp_path), tmp_path)


def test_a_report_whose_outputs_are_folders_or_files_of_the_wrong_kind_fails_before_any_work(corpus_file, tmp_path):
    """`figures` a file, `evaluation.md` a folder: the error came after the whole comparison."""
    out = tmp_path / "r"
    out.mkdir()
    (out / "figures").write_text("")
    assert_fails_in_one_line(["report", "--corpus", corpus_file, "--out", out],
                             f"--out {out}: its figures folder: exists and is not a folder", tmp_path)
    (out / "figures").unlink()
    (out / "evaluation.md").mkdir()
    assert_fails_in_one_line(["report", "--corpus", corpus_file, "--out", out],
                             f"{out / 'evaluation.md'}: exists and is not a file; frgb report would replace it", tmp_path)


@pytest.mark.parametrize("args, message", [
    (["--duration", "nan"], "duration must be a positive number of seconds, got nan"),  # was internal error
    (["--duration", "inf"], "duration must be a positive number of seconds, got inf"),  # was internal error
    (["--duration", "-1"], "duration must be a positive number of seconds, got -1.0"),  # was ffmpeg's message
    (["--encoder", "libx265::30"], "encoder libx265: a preset name is empty, got ['']"),  # encoded with preset ""
], ids=["duration nan", "duration inf", "duration -1", "an empty preset"])
def test_a_sweep_checks_its_grid_options_before_any_encode(args, message, tmp_path):
    assert_fails_in_one_line(["corpus", "--out", tmp_path / "c.jsonl", "--source", "lavfi:testsrc",
                              "--encoder", "libx264:medium:30", *args], message, tmp_path)


def _with_output_cast(graph: Path, to) -> Path:
    """`graph` with its output `score` cast to `to` (an onnx TensorProto type)."""
    import onnx
    from onnx import helper

    model = onnx.load(graph)
    model.graph.node[-1].output[0] = "float_score"
    model.graph.node.append(helper.make_node("Cast", ["float_score"], ["score"], to=to))
    model.graph.output[0].type.tensor_type.elem_type = to
    onnx.save(model, graph)
    return graph


@pytest.mark.parametrize("command", ["eval", "predict"])
def test_a_graph_with_an_integer_output_is_refused(command, corpus_file, tmp_path):
    """predict wrote its truncated scores (6.0 for 6.7) with exit 0."""
    from onnx import TensorProto

    graph = _with_output_cast(small_graph(tmp_path / "i.onnx"), TensorProto.INT64)
    args = {"eval": ["eval", graph, "--corpus", corpus_file],
            "predict": ["predict", graph, corpus_file, "-o", tmp_path / "p.jsonl"]}[command]
    assert_fails_in_one_line(args, f"{graph}: output score is tensor(int64); the contract's outputs are float32", tmp_path)


def test_an_interval_graph_whose_sidecar_intervals_is_not_an_object_is_still_scored(corpus_file, tmp_path):
    """`"intervals": "abc"` in the sidecar of an interval graph was `internal error: AttributeError`."""
    graph = small_graph(tmp_path / "iv.onnx", outputs=("score", "lower", "upper"))
    sidecar = json.loads(graph.with_suffix(".json").read_text())
    for intervals in ("abc", {"level": "high"}):
        graph.with_suffix(".json").write_text(json.dumps(dict(sidecar, intervals=intervals)))
        result = invoke("eval", graph, "--corpus", corpus_file)
        assert result.exit_code == 0, result.output
        assert any(line.startswith("interval ") for line in result.output.splitlines())


def test_a_sidecar_scaling_that_overflows_is_scored_without_a_warning(good, model_dir, corpus_file, tmp_path):
    """feature_mean 1e308 with feature_std 1e-308 printed numpy's RuntimeWarning (two lines) on stderr."""
    import warnings

    sidecar = model_dir / "m.json"
    sidecar.write_text(json.dumps(dict(json.loads(sidecar.read_text()), feature_mean=[1e308] * 6,
                                       feature_std=[1e-308] * 6)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = invoke("predict", model_dir / "m.onnx", corpus_file)
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == len(good)


def test_tuning_means_over_sources_without_a_defined_figure_are_nan_without_a_warning():
    """`frgb tune` on small sources printed 50 lines of numpy's "Mean of empty slice"."""
    import warnings

    from frgb.tuning import _mean

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(_mean({"a": {"plcc": float("nan")}, "b": {"plcc": float("nan")}}, "plcc"))


@pytest.mark.slow
def test_onnxruntime_warnings_are_not_printed(tmp_path):
    """A graph with an unused initializer: onnxruntime's own warning (a coloured line) came before
    frgb's one line, in `check`, `eval` and `predict`."""
    import subprocess
    import sys

    import onnx
    from onnx import numpy_helper

    from tests.helpers import child_env

    graph = small_graph(tmp_path / "g.onnx", inputs=("x", "codec"))
    model = onnx.load(graph)
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(3, dtype=np.float32), "unused"))
    onnx.save(model, graph)
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("{}\n")
    for args in (["check", graph], ["eval", graph, "--corpus", corpus], ["predict", graph, corpus]):
        done = subprocess.run([sys.executable, "-m", "cli.main", *map(str, args)], capture_output=True, text=True,
                              env=child_env(), timeout=120)
        assert "W:onnxruntime" not in done.stderr, done.stderr
        assert done.returncode == 2 and len(done.stderr.splitlines()) <= 1, done.stderr
