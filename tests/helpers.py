"""Helpers the tests share (imported by test modules; fixtures live in conftest.py)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from frgb.contract import FEATURES
from frgb.loading import SHIPPED_CORPUS

REPO = Path(__file__).resolve().parent.parent


def shipped_rows() -> list[dict]:
    return [json.loads(line) for line in SHIPPED_CORPUS.read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def historical(row: dict, shape: str) -> dict:
    """The same measurement written the way older corpora wrote it."""
    out = {k: v for k, v in row.items() if not k.endswith(("_mean", "_std"))}
    means = {f: row[f"{f}_mean"] for f in FEATURES}
    if shape == "nested":
        out.update(schema_version=1, per_frame_features=means)
    elif shape == "nested_integer":
        out.update(schema_version=2, per_frame_features={f"integer_{f}": v for f, v in means.items()})
    elif shape == "integer_prefix":
        out.update({f"integer_{f}_mean": v for f, v in means.items()})
    else:
        out.update({f"{f}_mean": v for f, v in means.items()})
    return out


def invoke(*args):
    """`frgb ARGS` in this process (Typer's CliRunner); never a traceback on the way out."""
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def child_env(**extra: str) -> dict[str, str]:
    """Environment for `sys.executable -m cli.main` children: this checkout importable, one
    thread each (the machine's cores are shared by the children)."""
    path = os.pathsep.join(p for p in (extra.pop("PYTHONPATH", ""), str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", **extra}


def frgb_child(*args, cwd: Path | None = None, **env: str) -> subprocess.Popen:
    """`frgb ARGS` in a child process (`sys.executable -m cli.main`), output captured."""
    return subprocess.Popen([sys.executable, "-m", "cli.main", *map(str, args)], env=child_env(**env), cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
