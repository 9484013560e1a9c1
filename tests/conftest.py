"""Shared fixtures: small real corpora cut from the shipped one, a fitted model, the CLI runner.
(Helpers that tests import are in tests/helpers.py.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from frgb.loading import load_corpus
from frgb.training import FitOptions, fit_model
from tests.helpers import invoke, shipped_rows, write_jsonl


@pytest.fixture(scope="session")
def cli():
    """Run `frgb ARGS` in-process: `cli("fit", "--out", path)` gives Typer's result."""
    return invoke


@pytest.fixture(scope="session")
def small_corpus_path(tmp_path_factory) -> Path:
    """Four whole sources of the shipped corpus (every encoder of each): fast to fit."""
    rows = shipped_rows()
    sources = sorted({r["src"] for r in rows})[:4]
    path = tmp_path_factory.mktemp("corpus") / "small.jsonl"
    return write_jsonl(path, [r for r in rows if r["src"] in sources])


@pytest.fixture(scope="session")
def small_corpus(small_corpus_path):
    return load_corpus(small_corpus_path)


@pytest.fixture(scope="session")
def fitted(small_corpus):
    return fit_model(small_corpus, FitOptions(), "vmaf_v0.6.1")


@pytest.fixture(scope="session")
def ffmpeg():
    """An ffmpeg with libvmaf (the imageio-ffmpeg wheel's), or skip."""
    from frgb.corpus.ffmpeg import check_capabilities, find_ffmpeg
    from frgb.errors import FrgbError

    try:
        exe = find_ffmpeg()
        check_capabilities(exe, ["libx264"])
    except FrgbError as e:
        pytest.skip(f"no ffmpeg with libvmaf: {e}")
    return exe


@pytest.fixture()
def rng():
    return np.random.default_rng(0)

