"""Reproducibility: the same corpus, options and seed give byte-identical files, whatever the
thread count and whatever the order of the corpus's lines.

Each fit is a real `frgb fit` in a child process, run in a folder of its own with the same
relative paths, so that the command line and corpus path the sidecar records are the same.
The sidecar has no timestamp, so whole files are hashed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random

import pytest

from frgb.artifacts import REGISTRY, dumps
from tests.helpers import frgb_child, sha256

pytestmark = pytest.mark.slow  # child processes (see pyproject.toml)

SIDECARS = ("frgb.json", "frgb_libvmaf.json")
FILES = ("frgb.onnx", "frgb_libvmaf.onnx", *SIDECARS, REGISTRY)
COMMAND = ("fit", "--corpus", "corpus.jsonl", "--out", "out", "--seed", "7")


@pytest.fixture(scope="module")
def runs(small_corpus_path, tmp_path_factory) -> dict[str, dict]:
    """Three fits at once: the corpus with one thread, with one per core, and with its lines
    shuffled; for each, the SHA-256 of every file it wrote and its sidecars. Each process gets
    its own string-hash seed, as separate runs do (set order follows it: skl2onnx's order of
    opset imports once did, and half of all pairs of fits differed)."""
    lines = small_corpus_path.read_text().splitlines(keepends=True)
    shuffled = random.Random(0).sample(lines, len(lines))
    setups = {"one thread": (lines, "1", "1"), "all cores": (lines, str(os.cpu_count()), "3"),
              "shuffled": (shuffled, "1", "3")}
    children = {}
    for name, (corpus, threads, hash_seed) in setups.items():
        folder = tmp_path_factory.mktemp("run")
        (folder / "corpus.jsonl").write_text("".join(corpus))
        children[name] = (folder, frgb_child(*COMMAND, cwd=folder, OMP_NUM_THREADS=threads, PYTHONHASHSEED=hash_seed))
    result = {}
    for name, (folder, child) in children.items():
        _, stderr = child.communicate(timeout=900)
        assert child.returncode == 0, f"{name}: {stderr[-2000:]}"
        out = folder / "out"
        result[name] = {"sha256": {f: sha256(out / f) for f in FILES},
                        "sidecars": {f: json.loads((out / f).read_text()) for f in SIDECARS},
                        "corpus_sha256": sha256(folder / "corpus.jsonl")}
    return result


def test_two_fits_with_the_same_corpus_options_and_seed_give_identical_files(runs):
    a, b = runs["one thread"], runs["all cores"]
    assert [f for f in FILES if a["sha256"][f] != b["sha256"][f]] == [], "these files differ between the two fits"


def test_the_order_of_corpus_lines_does_not_change_the_model(runs):
    """The loader sorts rows canonically: the graphs and registry are byte-identical. The sidecars
    differ only in run_provenance.corpus_sha256, the SHA-256 of the input file's bytes."""
    a, b = runs["one thread"], runs["shuffled"]
    assert a["corpus_sha256"] != b["corpus_sha256"]
    for f in ("frgb.onnx", "frgb_libvmaf.onnx", REGISTRY):
        assert a["sha256"][f] == b["sha256"][f], f"{f} depends on the order of the corpus's lines"
    for f, sidecar in b["sidecars"].items():
        assert sidecar["run_provenance"]["corpus_sha256"] == b["corpus_sha256"]
        sidecar["run_provenance"]["corpus_sha256"] = a["corpus_sha256"]
        assert hashlib.sha256(dumps(sidecar)).hexdigest() == a["sha256"][f], f"{f} differs beyond the corpus file's SHA-256"
