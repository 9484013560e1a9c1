"""Faults while writing a model: a fit killed mid-write, a full disk, a failed rename, Ctrl-C,
concurrent fits.

Whatever happens, the output folder holds complete models only: each registry row and each
sidecar carry the SHA-256 of the .onnx beside them, every .onnx loads, and a failed, killed or
interrupted fit leaves the previous set of files (every target, point and interval, and the
registry) byte for byte as it was, or the whole new set, never a mix (a kill during the renames
leaves a journal, and the next writer puts the previous files back).
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
from frgb.artifacts import JOURNAL, REGISTRY, read_registry, recover, write_model, write_models
from frgb.errors import FrgbError
from frgb.evaluation import OnnxModel
from tests.helpers import child_env, frgb_child, invoke, sha256, write_jsonl

pytestmark = pytest.mark.slow  # child processes (see pyproject.toml)

#: What most fits in this module train: quick (no cross-validation, one target).
FIT = ["fit", "--id", "m", "--target", "onnxml", "--no-cv"]
#: A fit that writes every kind of file: both targets, point and interval (4 models + registry).
FIT_ALL = ["fit", "--id", "m", "--target", "onnxml", "--target", "libvmaf", "--intervals", "0.9", "--no-cv"]
ALL_IDS = ["m", "m_libvmaf", "m_interval", "m_libvmaf_interval"]

#: Installed as sitecustomize in a child process: at its n-th call of os.fsync or os.replace, the
#: child sends itself SIGKILL (FRGB_TEST_KILL_AT_FSYNC, FRGB_TEST_KILL_AT_REPLACE) or SIGINT, as
#: Ctrl-C does (FRGB_TEST_SIGINT_AT_FSYNC).
KILL_HOOK = """
import os, signal

def _hook(name, variable, signum):
    at, calls, real = int(os.environ.get(variable, "0")), [0], getattr(os, name)
    def call(*args, **kwargs):
        calls[0] += 1
        if calls[0] == at:
            os.kill(os.getpid(), signum)
        return real(*args, **kwargs)
    setattr(os, name, call)

_hook("fsync", "FRGB_TEST_KILL_AT_FSYNC", signal.SIGKILL)
_hook("replace", "FRGB_TEST_KILL_AT_REPLACE", signal.SIGKILL)
_hook("fsync", "FRGB_TEST_SIGINT_AT_FSYNC", signal.SIGINT)
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


def fitted_folder(folder: Path, fit: list[str], corpus: Path) -> Path:
    result = invoke(*fit, "--corpus", corpus, "--out", folder)
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture(scope="module")
def previous(corpora, tmp_path_factory) -> Path:
    """A folder holding a fitted model `m`: its .onnx, sidecar, registry and lock file."""
    return fitted_folder(tmp_path_factory.mktemp("previous"), FIT, corpora[0])


@pytest.fixture(scope="module")
def previous_set(corpora, tmp_path_factory) -> Path:
    """A folder holding the whole set of one fit: four models (both targets, point and interval)."""
    return fitted_folder(tmp_path_factory.mktemp("previous_set"), FIT_ALL, corpora[0])


def new_models(previous: Path, ids: list[str]) -> list[tuple[str, bytes, dict]]:
    """What the next write of `ids` writes: the same graphs, sidecars with new notes."""
    return [(i, (previous / f"{i}.onnx").read_bytes(), dict(json.loads((previous / f"{i}.json").read_text()),
                                                            notes="the new model")) for i in ids]


@pytest.fixture(scope="module")
def new_set(previous_set, tmp_path_factory) -> dict[str, str]:
    """The snapshot of `previous_set` after a complete write of `new_models` (no fault)."""
    folder = Path(shutil.copytree(previous_set, tmp_path_factory.mktemp("new_set") / "out"))
    write_models(folder, new_models(previous_set, ALL_IDS))
    return snapshot(folder)


@pytest.fixture()
def out(previous, tmp_path) -> Path:
    """A copy of the previous model's folder to damage."""
    return Path(shutil.copytree(previous, tmp_path / "out"))


@pytest.fixture()
def out_set(previous_set, tmp_path) -> Path:
    """A copy of the previous set's folder to damage."""
    return Path(shutil.copytree(previous_set, tmp_path / "out_set"))


def fsyncs_of_one_write(folder: Path, models, monkeypatch) -> int:
    """How many times a write of `models` calls fsync (measured on a copy of `folder`)."""
    calls, real = [0], os.fsync

    def counting(fd):
        calls[0] += 1
        return real(fd)

    with tempfile.TemporaryDirectory() as tmp, monkeypatch.context() as patch:
        copy = Path(shutil.copytree(folder, Path(tmp) / "copy"))
        patch.setattr(artifacts.os, "fsync", counting)
        write_models(copy, models)
    return calls[0]


# --------------------------------------------------------------------------------------------
# SIGKILL


def hooked(tmp_path: Path, **at: int) -> dict[str, str]:
    """Environment for a child with KILL_HOOK: e.g. hooked(tmp, KILL_AT_FSYNC=2)."""
    hook = tmp_path / "hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(KILL_HOOK)
    return {"PYTHONPATH": str(hook), **{f"FRGB_TEST_{k}": str(v) for k, v in at.items()}}


def assert_killed(child: subprocess.Popen, during: str) -> None:
    _, stderr = child.communicate(timeout=600)
    assert child.returncode == -signal.SIGKILL, f"the child was not killed {during}: {stderr[-2000:]}"


def restore(out: Path, previous: Path, ids: tuple[str, ...] = ("m",)) -> None:
    """Write the previous models again, as the next fit would: it must undo a killed write's
    renames and clear its leftovers."""
    write_models(out, [(i, (previous / f"{i}.onnx").read_bytes(), json.loads((previous / f"{i}.json").read_text()))
                       for i in ids])
    assert leftovers(out) == [] and snapshot(out) == snapshot(previous)


#: A child that writes models of the previous folder with new sidecars (argv: out, previous,
#: ids...), as `frgb fit` writes its exports: one replacement.
WRITE_SET = """
import json, sys
from pathlib import Path
from frgb.artifacts import write_models
out, previous, ids = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
write_models(out, [(i, (previous / f"{i}.onnx").read_bytes(),
                    dict(json.loads((previous / f"{i}.json").read_text()), notes="the new model")) for i in ids])
"""


def write_set_child(out: Path, previous: Path, ids: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITE_SET, str(out), str(previous), *ids], env=child_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def recovered(out: Path) -> dict[str, str]:
    """What `out` holds once the next writer has recovered it (under the lock, as it does)."""
    with artifacts._locked(out):
        recover(out)
    return snapshot(out)


def test_a_write_killed_at_any_fsync_leaves_the_previous_set_or_the_new_one(previous_set, new_set, out_set,
                                                                            small_corpus, tmp_path, monkeypatch):
    """SIGKILL at every fsync of one write of four models and the registry: while staging the
    files and the journal, and after the renames. Until the journal is removed (the commit) the
    previous set survives; after it, the new set. Never a mix, and every model complete."""
    fsyncs = fsyncs_of_one_write(previous_set, new_models(previous_set, ALL_IDS), monkeypatch)
    assert fsyncs == 2 * len(ALL_IDS) + 1 + 3 + 1, "staged files, journal, three folder syncs"
    outcomes = []
    for kill_at in range(1, fsyncs + 1):
        folder = Path(shutil.copytree(previous_set, tmp_path / f"k{kill_at}"))
        assert_killed(write_set_child(folder, previous_set, ALL_IDS, hooked(tmp_path, KILL_AT_FSYNC=kill_at)),
                      f"at fsync {kill_at}")
        journal = (folder / JOURNAL).exists()
        after = recovered(folder)
        assert after in (snapshot(previous_set), new_set), f"killed at fsync {kill_at}: old and new files mixed"
        outcomes.append("new" if after == new_set else ("previous, from the journal" if journal else "previous"))
        assert_complete_models(folder, small_corpus)
    staged = 2 * len(ALL_IDS) + 1
    assert outcomes == ["previous"] * (staged + 1) + ["previous, from the journal"] * 2 + ["new"], outcomes
    restore(out_set, previous_set, tuple(ALL_IDS))


def test_a_write_killed_during_its_renames_is_undone_by_the_next_writer(previous_set, out_set, small_corpus, tmp_path):
    """SIGKILL before each rename (the journal's, then each file's): the folder may hold a mix
    until the next writer runs, which puts every previous file back from the journal."""
    mixed = 0
    for kill_at in range(1, 2 * len(ALL_IDS) + 3):
        folder = Path(shutil.copytree(previous_set, tmp_path / f"r{kill_at}"))
        assert_killed(write_set_child(folder, previous_set, ALL_IDS, hooked(tmp_path, KILL_AT_REPLACE=kill_at)),
                      f"at rename {kill_at}")
        mixed += snapshot(folder) != snapshot(previous_set)
        assert (folder / JOURNAL).exists() == (kill_at > 1), f"rename {kill_at}: the journal"
        restore(folder, previous_set, tuple(ALL_IDS))  # the next fit's write: recover, then its own files
        assert_complete_models(folder, small_corpus)
    # Killed before renames 3..10, 1..8 files were in place; the new graphs are the previous bytes,
    # so the folder differs once the first sidecar (rename 3) is in: before renames 4..10.
    assert mixed == 2 * len(ALL_IDS) - 1, "the kills did not interrupt the renames half-way"


def test_fit_killed_during_export_leaves_the_previous_set(out_set, previous_set, corpora, small_corpus, tmp_path):
    """A real multi-target fit with intervals, killed while staging its fifth file."""
    child = frgb_child(*FIT_ALL, "--corpus", corpora[1], "--out", out_set, **hooked(tmp_path, KILL_AT_FSYNC=5))
    assert_killed(child, "writing the third graph")
    assert snapshot(out_set) == snapshot(previous_set), "the previous files changed"
    assert_complete_models(out_set, small_corpus)
    restore(out_set, previous_set, tuple(ALL_IDS))


def test_fit_killed_during_its_renames_leaves_the_previous_set_once_recovered(out_set, previous_set, corpora,
                                                                             small_corpus, tmp_path):
    child = frgb_child(*FIT_ALL, "--corpus", corpora[1], "--out", out_set, **hooked(tmp_path, KILL_AT_REPLACE=4))
    assert_killed(child, "renaming its files into place")
    assert recovered(out_set) == snapshot(previous_set)
    assert_complete_models(out_set, small_corpus)
    restore(out_set, previous_set, tuple(ALL_IDS))


# --------------------------------------------------------------------------------------------
# Ctrl-C


def test_fit_interrupted_by_ctrl_c_says_nothing_was_changed_and_changes_nothing(out_set, previous_set, corpora,
                                                                              tmp_path):
    """A real `frgb fit` sent SIGINT while it stages its files: exit 130, one line, every file as it was."""
    child = frgb_child(*FIT_ALL, "--corpus", corpora[1], "--out", out_set, **hooked(tmp_path, SIGINT_AT_FSYNC=3))
    _, stderr = child.communicate(timeout=600)
    assert child.returncode == 130, stderr[-2000:]
    assert stderr.splitlines() == ["frgb: interrupted: nothing was changed"]
    assert snapshot(out_set) == snapshot(previous_set) and leftovers(out_set) == []


def test_ctrl_c_while_fitting_changes_nothing(out_set, previous_set, corpora, monkeypatch):
    import frgb.pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(frgb.pipeline, "fit_intervals", interrupted)
    result = invoke(*FIT_ALL, "--corpus", corpora[1], "--out", out_set)
    assert result.exit_code == 130
    assert result.output.splitlines() == ["frgb: interrupted: nothing was changed"]
    assert snapshot(out_set) == snapshot(previous_set)


def test_ctrl_c_during_the_renames_waits_for_them_and_names_every_file_written(out_set, previous_set, corpora,
                                                                              monkeypatch):
    """SIGINT at the second rename is held until the whole set is in place; the line then names
    every file written."""
    calls, real = [0], os.replace

    def replace(src, dst):
        calls[0] += 1
        if calls[0] == 2:
            signal.raise_signal(signal.SIGINT)
        return real(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", replace)
    result = invoke(*FIT_ALL, "--corpus", corpora[1], "--out", out_set)
    assert result.exit_code == 130
    written = ", ".join(str(out_set / f"{i}{ext}") for i in ALL_IDS for ext in (".onnx", ".json")) + f", {out_set / REGISTRY}"
    assert result.output.splitlines() == [f"frgb: interrupted: {written} had been written in full; nothing else was changed"]
    assert all(json.loads((out_set / f"{i}.json").read_text())["run_provenance"]["corpus_sha256"]
               == sha256(corpora[1]) for i in ALL_IDS), "the new set is not entirely in place"
    assert not (out_set / JOURNAL).exists() and leftovers(out_set) == []


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


def test_a_full_disk_at_any_fsync_of_a_whole_set_changes_nothing(out_set, previous_set, monkeypatch):
    """Four models and the registry: failing at each file's fsync, at the journal's, and at the
    folder syncs after the renames (those are undone): the previous set stays, byte for byte."""
    models = new_models(previous_set, ALL_IDS)
    fsyncs = fsyncs_of_one_write(previous_set, models, monkeypatch)
    files = [f"{i}{ext}" for i in ALL_IDS for ext in (".onnx", ".json")] + [REGISTRY]
    blamed = files + [JOURNAL, JOURNAL, REGISTRY, REGISTRY]
    assert len(blamed) == fsyncs
    before = snapshot(out_set)
    for failing_at, file in enumerate(blamed, 1):
        with monkeypatch.context() as patch:
            _fail_fsync_at(patch, failing_at)
            with pytest.raises(FrgbError) as error:
                write_models(out_set, models)
        assert str(error.value) == f"could not write {out_set / file}: disk full; nothing was changed", failing_at
        assert snapshot(out_set) == before and leftovers(out_set) == [] and not (out_set / JOURNAL).exists()


def _fail_replace_at(monkeypatch, *calls: int) -> None:
    """Make the given calls of os.replace from now (1 = the next) fail with an I/O error."""
    count, real = [0], os.replace

    def replace(src, dst):
        count[0] += 1
        if count[0] in calls:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return real(src, dst)

    monkeypatch.setattr(artifacts.os, "replace", replace)


def test_a_failed_rename_is_undone_and_changes_nothing(out_set, previous_set, monkeypatch):
    """A rename that fails (here with EIO) after some files were replaced: they are put back."""
    models = new_models(previous_set, ALL_IDS)
    files = [f"{i}{ext}" for i in ALL_IDS for ext in (".onnx", ".json")] + [REGISTRY]
    before = snapshot(out_set)
    for k, file in enumerate(files, 2):  # rename 1 is the journal's
        with monkeypatch.context() as patch:
            _fail_replace_at(patch, k)
            with pytest.raises(FrgbError) as error:
                write_models(out_set, models)
        assert str(error.value) == f"could not write {out_set / file}: Input/output error; nothing was changed"
        assert snapshot(out_set) == before and leftovers(out_set) == [], file


def test_a_rename_that_cannot_be_undone_names_the_files_replaced_and_the_next_write_undoes_it(out_set, previous_set,
                                                                                             monkeypatch):
    models = new_models(previous_set, ALL_IDS)
    with monkeypatch.context() as patch:
        _fail_replace_at(patch, 4, 5)  # the third file's rename fails, and so does undoing the second
        with pytest.raises(FrgbError) as error:
            write_models(out_set, models)
    assert str(error.value) == (f"could not write {out_set / 'm_libvmaf.onnx'}: Input/output error; m.onnx, m.json "
                                f"replaced and could not be put back (Input/output error); the next frgb fit into "
                                f"{out_set} puts the previous files back")
    assert (out_set / JOURNAL).exists()
    restore(out_set, previous_set, tuple(ALL_IDS))


def test_fit_on_a_full_disk_is_a_one_line_error(out, corpora, monkeypatch):
    before = snapshot(out)
    _fail_fsync_at(monkeypatch, 2)
    result = invoke(*FIT, "--corpus", corpora[1], "--out", out)
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"frgb: error: could not write {out / 'm.json'}: disk full; nothing was changed"]
    assert snapshot(out) == before and leftovers(out) == []


def test_multi_target_fit_on_a_full_disk_changes_no_file(out_set, corpora, monkeypatch):
    """A fit writing four models and the registry, failing at its sixth file (m_interval.json):
    five files were staged, none was renamed."""
    before = snapshot(out_set)
    _fail_fsync_at(monkeypatch, 6)
    result = invoke(*FIT_ALL, "--corpus", corpora[1], "--out", out_set)
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"frgb: error: could not write {out_set / 'm_interval.json'}: disk full; "
                                          "nothing was changed"]
    assert snapshot(out_set) == before and leftovers(out_set) == []


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
