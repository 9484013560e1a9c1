"""Reading a JSONL corpus into contract arrays, with every dropped row counted by reason.

The file is streamed in blocks of whole lines. Polars parses each block against an explicit
schema that names only the columns frgb needs (a key that first appears late is never lost,
and the rest of each row is skipped). Our own line bookkeeping gives errors a file and line
number, which Polars' parallel parser cannot. Lines that Polars refuses but JSON allows
(NaN, Infinity, numbers beyond float range) are re-read with Python's json module.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import io
import json
import math
import os
import stat
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import polars as pl

from frgb.contract import CARD, FEATURE_MAX, FEATURES, Layout, codec_blocks
from frgb.errors import FrgbError
from frgb.files import size_text

BLOCK_BYTES = 16 << 20
#: Longest line read (a valid row with a 100 MB field frgb does not read takes about 1 GB of
#: memory to parse; a line with no newline in sight is an error, not unbounded memory).
MAX_LINE_BYTES = 256 << 20
#: Most bytes read from a source that is not a regular file (a pipe, a device such as
#: /dev/zero): such a source may never end. A regular file has a size and is read whole.
MAX_STREAM_BYTES = 4 << 30
#: The corpus shipped in the repository (see reports/corpus.md), used when no --corpus is given.
SHIPPED_CORPUS = Path(__file__).resolve().parent.parent / "data" / "corpus.jsonl"

_FEATURE_KEYS = {f: (f"{f}_mean", f"integer_{f}_mean") for f in FEATURES}
SCHEMA = pl.Schema(
    {
        "schema_version": pl.Float64,
        "src": pl.String,
        "src_sha256": pl.String,
        "encoder": pl.String,
        "preset": pl.String,
        "crf": pl.Float64,
        "vmaf_score": pl.Float64,
        "vmaf_model": pl.String,
        "exit_status": pl.String,  # numbers arrive as text; anything but 0 is a failure
        **{key: pl.Float64 for keys in _FEATURE_KEYS.values() for key in keys},
        "per_frame_features": pl.Struct(
            {**{f: pl.Float64 for f in FEATURES}, **{f"integer_{f}": pl.Float64 for f in FEATURES}}
        ),
    }
)

# Drop reasons, in the order they are checked (a row is counted once, under the first).
#: A key frgb reads given twice in one object (at the top level or in per_frame_features): JSON
#: parsers disagree on which value counts (Polars keeps the first, Python's json the last).
DUPLICATE_KEY = "key given twice in one object"
FAILED = "failed encode (exit_status != 0)"
NO_TARGET = "vmaf_score missing or not finite"
BAD_TARGET = "vmaf_score outside [0, 100]"
NO_FEATURE = "feature missing or not finite"
NEG_FEATURE = "feature negative"
#: Above frgb.contract.FEATURE_MAX, which states libvmaf's bounds and why.
BIG_FEATURE = "feature above what libvmaf can produce"
DUPLICATE = "duplicate row"
TRUNCATED = "truncated final line"


@dataclass
class Corpus:
    """Trainable rows in canonical order, as the arrays the model and the graph consume."""

    path: str
    sha256: str
    features: np.ndarray  # (N, 6) float64, contract order
    codec: np.ndarray  # (N, codec width) float64
    target: np.ndarray  # (N,) float64
    group: np.ndarray  # (N,) fold key: src_sha256, else src
    source: np.ndarray  # (N,) readable source name
    encoder: np.ndarray  # (N,) encoder name as written (trimmed, lower case)
    preset: np.ndarray  # (N,) preset as written (None when missing)
    crf: np.ndarray  # (N,) crf as written (float)
    vmaf_model: np.ndarray  # (N,) model that scored the row ("" when not recorded)
    line: np.ndarray  # (N,) line number in the file
    dropped: dict[str, int] = field(default_factory=dict)
    lines: int = 0

    def __len__(self) -> int:
        return len(self.target)

    def subset(self, mask: np.ndarray) -> "Corpus":
        take = {k: getattr(self, k)[mask] for k in _ARRAYS}
        return Corpus(self.path, self.sha256, **take, dropped=dict(self.dropped), lines=self.lines)

    def drop_summary(self) -> str:
        if not self.dropped:
            return "none dropped"
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.dropped.items(), key=lambda kv: -kv[1]))


def design_matrix(corpus: Corpus) -> np.ndarray:
    """[features | codec] (N, 6 + codec width), the model's input."""
    return np.hstack([corpus.features, corpus.codec])


def in_layout(corpus: Corpus, layout: Layout) -> Corpus:
    """`corpus` with its codec blocks written in `layout` (rows are read in the card's layout;
    every layout accepts the same CRFs, so no row changes between usable and dropped)."""
    if layout == CARD:
        return corpus
    codec, _ = codec_blocks(corpus.encoder.tolist(), corpus.preset.tolist(), corpus.crf, layout)
    out = corpus.subset(np.ones(len(corpus), dtype=bool))
    out.codec = codec
    return out


_ARRAYS = ("features", "codec", "target", "group", "source", "encoder", "preset", "crf", "vmaf_model", "line")


def _blocks(path: Path) -> Iterator[tuple[bytes, int, bool]]:
    """(block of whole lines, number of its first line, whether it ends the file)."""
    try:
        yield from _read_blocks(path)
    except OSError as e:
        raise FrgbError(f"{path}: cannot read ({e.strerror or e})") from None


def _read_blocks(path: Path) -> Iterator[tuple[bytes, int, bool]]:
    with path.open("rb") as f:
        endless = not stat.S_ISREG(os.fstat(f.fileno()).st_mode)
        carry, first, total = b"", 1, 0
        while True:
            chunk = f.read(BLOCK_BYTES)
            total += len(chunk)
            data = carry + chunk
            _check_text(path, data, first, len(carry))
            if not chunk:
                if data:
                    yield data, first, True
                return
            if endless and total > MAX_STREAM_BYTES:
                raise FrgbError(f"{path}: not a regular file, and more than {size_text(MAX_STREAM_BYTES)} read without "
                                "an end; save the corpus to a file")
            cut = data.rfind(b"\n") + 1
            if cut == 0:  # one line longer than a block: keep reading, up to a limit
                if len(data) > MAX_LINE_BYTES:
                    raise FrgbError(f"{_where(path, first)}: a line longer than {size_text(MAX_LINE_BYTES)} "
                                    "(no newline in sight); a corpus row is far shorter")
                carry = data
                continue
            yield data[:cut], first, False
            first += data.count(b"\n", 0, cut)
            carry = data[cut:]


def _check_text(path: Path, data: bytes, first: int, start: int) -> None:
    """A NUL byte in the new part of `data` (from `start`) is an error: no text file holds one
    (a binary file, /dev/zero, or a file whose end a crash filled with zeros)."""
    nul = data.find(b"\0", start)
    if nul >= 0:
        line = first + data.count(b"\n", 0, nul)
        raise FrgbError(f"{_where(path, line)}: NUL byte: not a text file")


def _where(path: Path, line: int) -> str:
    return f"{path}:{line}"


def _finite_or_none(value):
    """JSON value with what Polars cannot read made readable: non-finite floats (NaN, Infinity,
    1e400) become null, integers beyond 64 bits the nearest float (null beyond float range)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        try:
            return float(value)
        except OverflowError:
            return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def _parse_block(path: Path, lines: list[bytes], numbers: list[int]) -> tuple[pl.DataFrame, int]:
    """The rows of `lines` (+ `line`), without those that give a key frgb reads twice, and how
    many those were."""
    body = b"\n".join(lines)
    try:
        frame = pl.read_ndjson(io.BytesIO(body), schema=SCHEMA, ignore_errors=True)
        twice = _given_twice(path, lines, numbers, body, frame)
    except pl.exceptions.PolarsError:
        # Re-read line by line: Python's json takes NaN/Infinity and names the broken line.
        # Only the schema's keys are kept, so a key frgb does not read cannot stop the row.
        clean, twice = [], np.zeros(len(lines), dtype=bool)
        for i, (text, n) in enumerate(zip(lines, numbers)):
            row = _json_object(path, text, n)
            twice[i] = _gives_a_read_key_twice(row)
            clean.append(json.dumps(_finite_or_none({k: v for k, v in row.items() if k in SCHEMA})).encode())
        frame = pl.read_ndjson(io.BytesIO(b"\n".join(clean)), schema=SCHEMA, ignore_errors=True)
    if frame.height != len(lines):
        raise FrgbError(f"{path}: parsed {frame.height} rows from {len(lines)} lines near line {numbers[0]}")
    frame = frame.with_columns(pl.Series("line", numbers, dtype=pl.Int64))
    return (frame.filter(pl.Series(~twice)) if twice.any() else frame), int(twice.sum())


#: The keys frgb reads: those of the schema's top level, and those inside per_frame_features.
_NESTED_KEYS = frozenset(SCHEMA["per_frame_features"].to_schema())
_KEY_LITERALS = sorted({f'"{k}"' for k in (*SCHEMA, *_NESTED_KEYS)})
#: A JSON escape of a character that a key frgb reads can hold (0-9, _, a-z): the only way to
#: write one of those keys without its plain literal.
_KEY_ESCAPE = r"\\u00(?:3[0-9]|5[fF]|6[1-9a-fA-F]|7[0-9aA])"


class _JsonObject(dict):
    """A JSON object (last value of a key wins, as in json.loads) that knows which keys it was
    given more than once."""

    twice: frozenset = frozenset()

    @classmethod
    def of(cls, pairs: list[tuple[str, object]]) -> "_JsonObject":
        obj = cls(pairs)
        if len(obj) < len(pairs):
            obj.twice = frozenset(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        return obj


def _json_object(path: Path, text: bytes, n: int) -> "_JsonObject":
    """Line `n` parsed by Python's json (NaN and Infinity allowed), or the error naming it."""
    try:
        return json.loads(text, object_pairs_hook=_JsonObject.of)
    except ValueError as e:
        raise FrgbError(f"{_where(path, n)}: malformed JSON ({e.msg} at column {e.colno})") from None
    except RecursionError:
        raise FrgbError(f"{_where(path, n)}: JSON nested too deeply to read") from None


def _gives_a_read_key_twice(row: _JsonObject) -> bool:
    """Whether a parsed row gives a key frgb reads twice, at its top level or in per_frame_features."""
    nested = row.get("per_frame_features")
    return bool(row.twice & SCHEMA.keys()) or (isinstance(nested, _JsonObject) and bool(nested.twice & _NESTED_KEYS))


def _given_twice(path: Path, lines: list[bytes], numbers: list[int], body: bytes, frame: pl.DataFrame) -> np.ndarray:
    """Which lines give a key frgb reads twice in one object (Polars read the first value).

    A cheap test clears almost every line: each key that Polars read a value for has its literal
    `"key"` in the line, so a line holding no more literals of keys frgb reads than Polars read
    values, and no escaped key character, gives no such key twice. The few other lines (explicit
    nulls, values of the wrong type, a key's name used as a value) are parsed with json."""
    present = frame.select(pl.sum_horizontal(
        *(pl.col(k).is_not_null() for k in SCHEMA),
        *(pl.col("per_frame_features").struct.field(k).is_not_null() for k in _NESTED_KEYS),
    )).to_series().to_numpy()
    text = pl.Series(lines, dtype=pl.Binary).cast(pl.String)
    suspect = text.str.find_many(_KEY_LITERALS).list.len().to_numpy() > present
    if b"\\" in body:  # a one-byte search: JSON text rarely holds a backslash, and never without an escape
        suspect |= text.str.contains(_KEY_ESCAPE).to_numpy()
    twice = np.zeros(len(lines), dtype=bool)
    for i in np.flatnonzero(suspect):
        twice[i] = _gives_a_read_key_twice(_json_object(path, lines[i], numbers[i]))
    return twice


def corpus_files(path: str | Path) -> list[Path]:
    """The JSONL files a corpus path names: the file itself, every `*.jsonl` in a folder, or
    the files a glob pattern (`runs/*.jsonl`) matches; shards come sorted by path."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.jsonl") if p.is_file())
        if not files:
            raise FrgbError(f"{path}: a folder without *.jsonl corpus shards")
        return files
    if not path.exists() and glob.has_magic(str(path)):
        files = sorted(p for p in map(Path, glob.glob(str(path))) if p.is_file())
        if not files:
            raise FrgbError(f"{path}: no corpus file matches this pattern")
        return files
    return [path]


def read_rows(path: Path) -> tuple[pl.DataFrame, int, Counter, str]:
    """All rows of `path` (one file, or the shards of a folder or glob, see `corpus_files`) as
    one frame with the line count, the drops made while reading, and the SHA-256: of the file,
    or for shards of the sorted lines `<sha256>  <file name>` (what `sha256sum` prints), so it
    does not depend on where the shards lie or in which order they are found. Line numbers run
    on across shards in sorted order; errors name the shard and its own line."""
    files = corpus_files(path)
    if files == [Path(path)]:
        return _read_file(Path(path))
    frames, total, dropped, listing = [], 0, Counter(), []
    for shard in files:
        frame, lines, shard_dropped, sha = _read_file(shard)
        frames.append(frame.with_columns(pl.col("line") + total))
        total += lines
        dropped.update(shard_dropped)
        listing.append(f"{sha}  {shard.name}\n")
    listing.sort(key=lambda entry: (entry[66:], entry))
    return pl.concat(frames), total, dropped, hashlib.sha256("".join(listing).encode()).hexdigest()


def _read_file(path: Path) -> tuple[pl.DataFrame, int, Counter, str]:
    if not path.exists():
        raise FrgbError(f"{path}: no such file")
    if path.is_dir():
        raise FrgbError(f"{path}: is a directory, not a JSONL corpus file")
    digest = hashlib.sha256()
    dropped: Counter = Counter()
    frames, total = [], 0
    for block, first, last in _blocks(path):
        digest.update(block)
        if first == 1 and block.startswith(codecs.BOM_UTF8):  # some editors start UTF-8 files with one
            block = block[len(codecs.BOM_UTF8):]
        try:
            block.decode("utf-8")
        except UnicodeDecodeError as e:
            # A write cut short can split a character: that is the truncated final line below.
            torn_tail = last and not block.endswith(b"\n") and e.start >= block.rfind(b"\n") + 1
            line = first + block.count(b"\n", 0, e.start)
            if not torn_tail:
                raise FrgbError(f"{_where(path, line)}: not UTF-8 text (byte {block[e.start]:#04x})") from None
        raw = block.split(b"\n")
        if raw and raw[-1] == b"" and block.endswith(b"\n"):
            raw.pop()
        total = first + len(raw) - 1
        lines, numbers = [], []
        for i, text in enumerate(raw):
            text = text.strip()
            if not text:
                continue
            n = first + i
            torn = last and i == len(raw) - 1 and not block.endswith(b"\n")
            if torn and not _is_json(text):
                dropped[TRUNCATED] += 1
                continue
            if not text.startswith(b"{"):
                kind = "not a JSON object" if _is_json(text) else "malformed JSON"
                raise FrgbError(f"{_where(path, n)}: {kind}; every line must be one JSON object")
            lines.append(text)
            numbers.append(n)
        if lines:
            frame, twice = _parse_block(path, lines, numbers)
            frames.append(frame)
            if twice:
                dropped[DUPLICATE_KEY] += twice
    if not frames:
        if dropped[TRUNCATED]:
            raise FrgbError(f"{path}: no rows (its only line is truncated: no newline at its end, and not valid JSON)")
        raise FrgbError(f"{path}: no rows (the file is empty)")
    return pl.concat(frames), total, dropped, digest.hexdigest()


def _is_json(text: bytes) -> bool:
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return False
    return True


def _feature(name: str) -> pl.Expr:
    """A feature from any of the shapes real corpora use (v3, integer_ prefix, nested)."""
    mean, integer_mean = _FEATURE_KEYS[name]
    nested = pl.col("per_frame_features").struct
    return pl.coalesce(
        pl.col(mean), pl.col(integer_mean), nested.field(name), nested.field(f"integer_{name}")
    ).alias(name)


def load_corpus(path: str | Path, require_target: bool = True) -> Corpus:
    """Load, validate and encode a corpus; rows that cannot train are dropped and counted.

    With `require_target=False` (prediction) rows without a usable vmaf_score are kept."""
    path = Path(path)
    rows, total, dropped, sha = read_rows(path)
    feats = [_feature(f) for f in FEATURES]
    frame = (
        rows.lazy()
        .with_columns(
            *feats,
            pl.col("encoder").fill_null("").str.strip_chars().str.to_lowercase(),
            pl.coalesce(pl.col("src_sha256"), pl.col("src"), pl.lit("(no source)")).alias("group"),
            pl.coalesce(pl.col("src"), pl.col("src_sha256"), pl.lit("(no source)")).alias("source"),
            pl.col("vmaf_model").fill_null(""),
        )
        .with_columns(
            pl.when(pl.col("exit_status").is_not_null()
                    & (pl.col("exit_status").cast(pl.Float64, strict=False).fill_null(1) != 0)).then(pl.lit(FAILED))
            .when(pl.lit(require_target) & ~pl.col("vmaf_score").is_finite().fill_null(False)).then(pl.lit(NO_TARGET))
            .when(pl.lit(require_target) & ~pl.col("vmaf_score").is_between(0, 100)).then(pl.lit(BAD_TARGET))
            .when(~pl.all_horizontal(pl.col(f).is_finite().fill_null(False) for f in FEATURES)).then(pl.lit(NO_FEATURE))
            .when(pl.any_horizontal(pl.col(f) < 0 for f in FEATURES)).then(pl.lit(NEG_FEATURE))
            .when(pl.any_horizontal(pl.col(f) > FEATURE_MAX[f] for f in FEATURES)).then(pl.lit(BIG_FEATURE))
            .otherwise(pl.lit("")).alias("problem")
        )
        .select("line", "group", "source", "encoder", "preset", "crf", "vmaf_model", "vmaf_score", *FEATURES, "problem")
        .collect()
    )
    del rows  # every schema column of every line: not needed once projected
    codec, codec_problem = codec_blocks(
        frame["encoder"].to_list(), frame["preset"].to_list(), frame["crf"].fill_null(np.nan).to_numpy()
    )
    problem = frame["problem"].to_numpy().astype(object)
    problem = np.where(problem == "", codec_problem, problem)
    dropped.update(Counter(problem[problem != ""].tolist()))
    keep = np.flatnonzero(problem == "")
    features = frame.select(FEATURES).to_numpy().astype(np.float64)
    target = frame["vmaf_score"].fill_null(np.nan).to_numpy().astype(np.float64)
    text = [frame[c].rank("dense").to_numpy() for c in ("group", "source", "encoder")]
    take, duplicates = _canonical(keep, [*text, *features.T, *codec.T, target])
    if duplicates:
        dropped[DUPLICATE] += duplicates
    frame = frame[take]
    corpus = Corpus(
        path=str(path),
        sha256=sha,
        features=features[take],
        codec=codec[take],
        target=target[take],
        group=frame["group"].to_numpy().astype(str),
        source=frame["source"].to_numpy().astype(str),
        encoder=frame["encoder"].to_numpy().astype(str),
        preset=frame["preset"].to_numpy().astype(object),
        crf=frame["crf"].to_numpy().astype(np.float64),
        vmaf_model=frame["vmaf_model"].to_numpy().astype(str),
        line=frame["line"].to_numpy(),
        dropped=dict(dropped),
        lines=total,
    )
    if len(corpus) == 0:
        raise FrgbError(f"{path}: no usable rows ({corpus.drop_summary()})")
    return corpus


def _canonical(rows: np.ndarray, keys: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """The row indices `rows` in a canonical order with exact duplicates (rows equal in every
    key) left out, and how many were left out: the model never depends on the order of lines in
    the file. `keys` are numeric arrays over all rows, most significant first (text columns as
    codes in sort order); only indices are sorted, so the rows themselves are copied once."""
    order = rows[np.lexsort([key[rows] for key in reversed(keys)])]
    same = np.zeros(len(order), dtype=bool)
    if len(order) > 1:
        same[1:] = True
        for key in keys:
            value = key[order]
            same[1:] &= value[1:] == value[:-1]
    return order[~same], int(same.sum())
