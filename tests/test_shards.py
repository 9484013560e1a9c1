"""A corpus in shards (what several `frgb corpus` clients write): a folder or a glob of JSONL
files loads as one corpus, whatever the order or split of its shards; errors name the shard."""

from __future__ import annotations

import hashlib
import json
import random
import subprocess

import numpy as np
import pytest

from frgb.errors import FrgbError
from frgb.loading import TRUNCATED, load_corpus
from tests.helpers import invoke

ARRAYS = ("features", "codec", "target", "group", "encoder", "crf")


@pytest.fixture(scope="module")
def lines(small_corpus_path) -> list[str]:
    return small_corpus_path.read_text().splitlines(keepends=True)


def shard(folder, lines, parts, seed=0):
    """Write `lines`, shuffled with `seed`, as `parts` shards `part-<i>.jsonl` in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    mixed = random.Random(seed).sample(lines, len(lines))
    for i in range(parts):
        (folder / f"part-{i}.jsonl").write_text("".join(mixed[i::parts]))
    return folder


def same_rows(a, b) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ARRAYS) and a.dropped == b.dropped


def test_a_folder_and_a_glob_of_shards_load_as_the_one_file(small_corpus_path, lines, tmp_path):
    whole = load_corpus(small_corpus_path)
    folder = shard(tmp_path / "runs", lines, 3)
    (folder / "notes.txt").write_text("not a shard")
    by_folder, by_glob = load_corpus(folder), load_corpus(str(folder / "*.jsonl"))
    assert same_rows(by_folder, whole) and same_rows(by_glob, whole)
    assert by_folder.lines == len(lines) and sorted(by_folder.line.tolist()) == list(range(1, len(lines) + 1))
    assert by_folder.sha256 == by_glob.sha256 != whole.sha256


def test_the_corpus_hash_of_shards_is_sha256sum_of_their_sorted_listing(lines, tmp_path):
    """Documented: sha256 of the lines `<sha256>  <name>` sorted by name (what `sha256sum` prints)."""
    folder = shard(tmp_path / "runs", lines, 3)
    listing = subprocess.run("sha256sum *.jsonl | LC_ALL=C sort -k2", shell=True, cwd=folder, capture_output=True,
                             check=True).stdout
    assert load_corpus(folder).sha256 == hashlib.sha256(listing).hexdigest()
    moved = folder.rename(tmp_path / "elsewhere")  # where the shards lie does not matter
    assert load_corpus(moved).sha256 == hashlib.sha256(listing).hexdigest()


def test_the_model_does_not_depend_on_how_rows_are_split_into_shards(small_corpus_path, lines, tmp_path):
    one = shard(tmp_path / "a", lines, 2, seed=1)
    other = shard(tmp_path / "b", lines, 5, seed=2)
    onnx = []
    for corpus in (small_corpus_path, one, str(other / "part-*.jsonl")):
        out = tmp_path / f"out{len(onnx)}"
        result = invoke("fit", "--corpus", corpus, "--out", out, "--no-cv", "--target", "onnxml")
        assert result.exit_code == 0, result.output
        onnx.append((out / "frgb.onnx").read_bytes())
        sidecar = json.loads((out / "frgb.json").read_text())
    assert onnx[0] == onnx[1] == onnx[2]
    assert sidecar["run_provenance"]["corpus_sha256"] == load_corpus(str(other / "part-*.jsonl")).sha256


@pytest.fixture(scope="module")
def model(fitted, small_corpus, tmp_path_factory):
    from frgb.export.package import export

    return export(fitted, small_corpus, tmp_path_factory.mktemp("model"), "m", "onnxml", {"smoke": True}, {}).onnx_path


def test_eval_takes_a_folder_of_shards(model, small_corpus_path, lines, tmp_path):
    folder = shard(tmp_path / "runs", lines, 3)
    got = [json.loads(invoke("eval", model, "--corpus", c, "--json").output) for c in (small_corpus_path, folder)]
    assert got[1]["rows_used"] == got[0]["rows_used"] and got[1]["rmse"] == pytest.approx(got[0]["rmse"], abs=1e-9)


def test_errors_name_the_shard_and_its_line(model, lines, tmp_path):
    folder = shard(tmp_path / "runs", lines, 2)
    bad = folder / "part-1.jsonl"
    bad_lines = bad.read_text().splitlines(keepends=True)
    bad.write_text("".join(bad_lines[:11]) + '{"src": "x", "crf": }\n' + "".join(bad_lines[11:]))
    message = f"{bad}:12: malformed JSON (Expecting value at column 21)"
    with pytest.raises(FrgbError) as error:
        load_corpus(folder)
    assert str(error.value) == message
    for args in (("fit", "--corpus", folder, "--out", tmp_path / "o", "--no-cv"), ("eval", model, "--corpus", folder)):
        assert invoke(*args).output.splitlines() == [f"frgb: error: {message}"]
    result = invoke("fit", "--corpus", tmp_path / "nothing-*.jsonl", "--out", tmp_path / "o", "--no-cv")
    assert result.output.splitlines() == [f"frgb: error: {tmp_path}/nothing-*.jsonl: no corpus file matches this pattern"]
    assert not (tmp_path / "o").exists()


def test_a_shard_torn_by_a_killed_client_loses_only_its_last_line(small_corpus_path, lines, tmp_path):
    folder = shard(tmp_path / "runs", lines, 2)
    torn = folder / "part-0.jsonl"
    torn.write_text(torn.read_text() + lines[0][:100])  # a client killed while it appended a row
    corpus, whole = load_corpus(folder), load_corpus(small_corpus_path)
    assert corpus.dropped == {**whole.dropped, TRUNCATED: 1}
    assert all(np.array_equal(getattr(corpus, k), getattr(whole, k)) for k in ARRAYS)
