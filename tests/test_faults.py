"""Faults while writing a model: a fit killed mid-write, a full disk, concurrent fits.

Whatever happens, the output folder holds complete models only: each registry row and each
sidecar carry the SHA-256 of the .onnx beside them, every .onnx loads, and a failed or killed
fit leaves the previous model, sidecar and registry byte for byte as they were.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from frgb import artifacts
from frgb.artifacts import REGISTRY, read_registry, write_model
from frgb.errors import FrgbError
from frgb.evaluation import OnnxModel
from tests.helpers import child_env, frgb_child, invoke, sha256, write_jsonl

pytestmark = pytest.mark.slow  # child processes (see pyproject.toml)

#: What every fit in this module trains: quick (no cross-validation, one target).
FIT = ["fit", "--id", "m", "--target", "onnxml", "--no-cv"]

#: Installed as sitecustomize in a child process: SIGKILL itself at its n-th fsync. A model
#: write fsyncs the staged .onnx (1), sidecar (2) and registry (3), then the folder (4).
KILL_HOOK = """
import os, signal

_at, _calls, _fsync = int(os.environ["FRGB_TEST_KILL_AT_FSYNC"]), [0], os.fsync
def _fsync_then_maybe_die(fd):
    _calls[0] += 1
    if _calls[0] == _at:
        os.kill(os.getpid(), signal.SIGKILL)
    return _fsync(fd)
os.fsync = _fsync_then_maybe_die
"""




def snapshot(folder: Path) -> dict[str, str]:
    """SHA-256 of every visible file (temporary files and the lock file start with a dot)."""
    return {p.name: sha256(p) for p in sorted(folder.iterdir()) if not p.name.startswith(".")}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def assert_complete_models(folder: Path, corpus) -> None:
    """Every registry row names an .onnx whose SHA-256 it and the sidecar carry, and which runs."""
    rows = read_registry(folder)
    assert rows, "registry.json lists no model"
    for row in rows:
        onnx = folder / row["onnx"]
        sidecar = json.loads(onnx.with_suffix(".json").read_text())
        assert row["sha256"] == sidecar["sha256"] == sha256(onnx), f"{row['id']}: .onnx, sidecar and registry disagree"
        assert np.isfinite(OnnxModel(onnx).predict(corpus)).all()






@pytest.fixture(scope="module")
def corpora(small_corpus_path, tmp_path_factory) -> tuple[Path, Path]:
    """The corpus of the previous model, and a smaller one (two sources) that gives another model."""
    rows = [json.loads(line) for line in small_corpus_path.read_text().splitlines()]
    sources = sorted({r["src"] for r in rows})[:2]
    other = write_jsonl(tmp_path_factory.mktemp("corpus") / "other.jsonl", [r for r in rows if r["src"] in sources])
    return small_corpus_path, other


@pytest.fixture(scope="module")
def previous(corpora, tmp_path_factory) -> Path:
    """A folder holding a fitted model `m`: its .onnx, sidecar, registry and lock file."""
    folder = tmp_path_factory.mktemp("previous")
    result = invoke(*FIT, "--corpus", corpora[0], "--out", folder)
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture()
def out(previous, tmp_path) -> Path:
    """A copy of the previous model's folder to damage."""
    return Path(shutil.copytree(previous, tmp_path / "out"))


# --------------------------------------------------------------------------------------------
# SIGKILL


def hooked(tmp_path: Path, kill_at: int) -> dict[str, str]:
    """Environment for a child that SIGKILLs itself at its `kill_at`-th fsync."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILL_HOOK)
    return {"PYTHONPATH": str(hook), "FRGB_TEST_KILL_AT_FSYNC": str(kill_at)}


def assert_killed(child: subprocess.Popen, during: str) -> None:
    _, stderr = child.communicate(timeout=600)
    assert child.returncode == -signal.SIGKILL, f"the child was not killed {during}: {stderr[-2000:]}"


def restore(out: Path, previous: Path) -> None:
    """Write the previous model again, as the next fit would: it must clear a killed write's leftovers."""
    write_model(out, "m", (previous / "m.onnx").read_bytes(), json.loads((previous / "m.json").read_text()))
    assert leftovers(out) == [] and snapshot(out) == snapshot(previous)


#: A child that writes the previous model's .onnx with a new sidecar, as `frgb fit` does.
WRITE_ONE = """
import json, sys
from pathlib import Path
from frgb.artifacts import write_model
out, previous = Path(sys.argv[1]), Path(sys.argv[2])
sidecar = dict(json.loads((previous / "m.json").read_text()), notes="the new model")
write_model(out, "m", (previous / "m.onnx").read_bytes(), sidecar)
"""


@pytest.mark.parametrize("kill_at, during", [(1, "writing the .onnx"), (2, "writing the sidecar"),
                                             (3, "writing registry.json"), (4, "syncing the folder, after the renames")])
def test_model_write_killed_at_any_point_leaves_a_complete_model(kill_at, during, out, previous, small_corpus, tmp_path):
    child = subprocess.Popen([sys.executable, "-c", WRITE_ONE, str(out), str(previous)], env=child_env(**hooked(tmp_path, kill_at)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert_killed(child, during)
    if kill_at < 4:
        assert snapshot(out) == snapshot(previous), f"killed {during}: the previous model changed"
    else:
        assert json.loads((out / "m.json").read_text())["notes"] == "the new model", "the new model is not in place"
    assert_complete_models(out, small_corpus)
    restore(out, previous)


def test_fit_killed_during_export_leaves_the_previous_model(out, previous, corpora, small_corpus, tmp_path):
    child = frgb_child(*FIT, "--corpus", corpora[1], "--out", out, **hooked(tmp_path, 2))
    assert_killed(child, "writing the sidecar")
    assert snapshot(out) == snapshot(previous), "the previous model changed"
    assert_complete_models(out, small_corpus)
    restore(out, previous)


# --------------------------------------------------------------------------------------------
# Full disk


def _fail_fsync_at(monkeypatch, n: int) -> None:
    """Make the n-th fsync from now fail as a full disk does."""
    calls, real = [0], os.fsync

    def fsync(fd):
        calls[0] += 1
        if calls[0] == n:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(artifacts.os, "fsync", fsync)


@pytest.mark.parametrize("failing_at, file", [(1, "m.onnx"), (2, "m.json"), (3, REGISTRY)])
def test_full_disk_while_writing_any_file_changes_nothing(failing_at, file, out, monkeypatch):
    before = snapshot(out)
    _fail_fsync_at(monkeypatch, failing_at)
    with pytest.raises(FrgbError) as error:
        write_model(out, "m", b"new model", {"id": "m", "kind": "fr", "opset": 17, "notes": ""})
    assert str(error.value) == f"could not write {out / file}: disk full; nothing was changed"
    assert snapshot(out) == before and leftovers(out) == []


def test_fit_on_a_full_disk_is_a_one_line_error(out, corpora, monkeypatch):
    before = snapshot(out)
    _fail_fsync_at(monkeypatch, 2)
    result = invoke(*FIT, "--corpus", corpora[1], "--out", out)
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"frgb: error: could not write {out / 'm.json'}: disk full; nothing was changed"]
    assert snapshot(out) == before and leftovers(out) == []


def _private_mounts() -> list[str] | None:
    """A command prefix that runs its command in a private mount namespace where it may mount
    a tmpfs (root, or an unprivileged user namespace), or None where neither is allowed."""
    if not shutil.which("unshare"):
        return None
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    prefix = ["unshare", *user, "--mount", "--propagation", "private"]  # no mount can reach the host
    with tempfile.TemporaryDirectory() as folder:
        probe = subprocess.run([*prefix, "mount", "-t", "tmpfs", "-o", "size=64k", "frgb-probe", folder],
                               capture_output=True)
    return prefix if probe.returncode == 0 else None


#: Run in the private namespace: a 1 MiB tmpfs over OUT holding the previous model and a filler
#: that leaves 40 KiB free, then the fit, then a manifest of what OUT holds.
FULL_DISK = """
set -e
mount -t tmpfs -o size=1m frgb-full "$OUT"
cp -p "$PREVIOUS"/* "$PREVIOUS"/.registry.json.lock "$OUT"/
cat /dev/zero > "$OUT/filler" 2>/dev/null || true
truncate -s -8K "$OUT/filler"  # less room than the smallest .onnx frgb writes
set +e
"$PYTHON" -m cli.main fit --id m --target onnxml --no-cv --corpus "$CORPUS" --out "$OUT" 2> "$ERR"
echo $? > "$RC"
"$PYTHON" -c 'import hashlib, os, sys, json; d = sys.argv[1]; print(json.dumps({n: hashlib.sha256(open(os.path.join(d, n), "rb").read()).hexdigest() for n in os.listdir(d)}))' "$OUT" > "$MANIFEST"
"""


def test_fit_onto_a_real_full_disk_is_a_one_line_error_and_changes_nothing(previous, corpora, tmp_path):
    prefix = _private_mounts()
    if prefix is None:
        pytest.skip("cannot mount a tmpfs in a private mount namespace here (the simulated full-disk tests still run)")
    paths = {name: tmp_path / name for name in ("OUT", "ERR", "RC", "MANIFEST")}
    paths["OUT"].mkdir()
    env = child_env(PREVIOUS=str(previous), CORPUS=str(corpora[1]), PYTHON=sys.executable,
                    **{k: str(v) for k, v in paths.items()})
    subprocess.run([*prefix, "sh", "-c", FULL_DISK], env=env, check=True, timeout=600)
    out = paths["OUT"]  # the tmpfs is gone with its namespace: read what the script recorded
    assert paths["RC"].read_text().strip() == "2"
    assert paths["ERR"].read_text().splitlines() == [f"frgb: error: could not write {out / 'm.onnx'}: disk full; "
                                                     "nothing was changed"]
    manifest = json.loads(paths["MANIFEST"].read_text())
    assert sorted(manifest) == sorted(["filler", ".registry.json.lock", *snapshot(previous)]), "a partial file was left"
    assert {k: v for k, v in manifest.items() if k in snapshot(previous)} == snapshot(previous)


# --------------------------------------------------------------------------------------------
# Concurrent fits


def test_concurrent_fits_into_one_folder_keep_every_model(corpora, small_corpus, tmp_path):
    ids = ["m0", "m1"]
    children = [frgb_child("fit", "--id", i, "--target", "onnxml", "--no-cv", "--corpus", corpora[1], "--out", tmp_path)
                for i in ids]
    for child in children:
        _, stderr = child.communicate(timeout=600)
        assert child.returncode == 0, stderr[-2000:]
    assert [r["id"] for r in read_registry(tmp_path)] == ids
    assert_complete_models(tmp_path, small_corpus)
    assert leftovers(tmp_path) == []


#: A child that waits for `go`, then `n` times writes the shared model and one of its own. After
#: each write it reads the shared model holding the registry lock, as a careful reader would,
#: and exits 1 if that model's .onnx, sidecar and registry row do not come from one write.
WRITER = """
import hashlib, json, os, sys, time
from pathlib import Path
from frgb.artifacts import _locked, read_registry, write_model
folder, k, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
while not (folder / "go").exists():
    time.sleep(0.001)
for i in range(n):
    for name in ("shared", f"w{k}-{i}"):
        write_model(folder, name, os.urandom(3000), {"id": name, "kind": "fr", "opset": 17, "notes": f"writer {k}"})
        with _locked(folder):
            onnx = hashlib.sha256((folder / "shared.onnx").read_bytes()).hexdigest()
            sidecar = json.loads((folder / "shared.json").read_text())["sha256"]
            row = [r["sha256"] for r in read_registry(folder) if r["id"] == "shared"]
        if not [onnx] == [sidecar] == row:
            sys.exit(f"writer {k}: shared.onnx, shared.json and registry.json are from different writes")
"""


def test_concurrent_writers_never_lose_a_row_or_mix_files(tmp_path):
    """Four writers race on models of their own and on a shared one: no registry row is lost, and
    whoever holds the registry lock sees each model whole (the .onnx, sidecar and registry row
    of one write). Without the lock around all three writes, mixed models were seen."""
    writers, n = 4, 12
    children = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(k), str(n)], env=child_env(),
                                 stderr=subprocess.PIPE, text=True) for k in range(writers)]
    time.sleep(0.5)  # let every child import and wait
    (tmp_path / "go").touch()
    for child in children:
        _, stderr = child.communicate(timeout=600)
        assert child.returncode == 0, stderr[-2000:]
    rows = read_registry(tmp_path)
    assert sorted(r["id"] for r in rows) == sorted(["shared"] + [f"w{k}-{i}" for k in range(writers) for i in range(n)])
    for row in rows:
        onnx = tmp_path / row["onnx"]
        assert row["sha256"] == json.loads(onnx.with_suffix(".json").read_text())["sha256"] == sha256(onnx), row["id"]
    assert leftovers(tmp_path) == []
