"""`frgb corpus --scheduler`: the sweep on a Dask cluster, the client the only writer.

The client plans and writes; the workers hold the video. Before any encode, every worker checks
that it can read every source, and one worker per source renders its reference and sends back
only its SHA-256 and geometry: that is the source's key, the first one seen. Each encode task
then renders the reference on its own worker (or reuses the worker's cached copy), encodes,
decodes and scores it with the worker's own ffmpeg, and returns only the row. The client appends
rows as tasks finish, one whole line at a time, exactly as `build_corpus` does, so resume by key
is unchanged. A worker whose reference differs from the first one seen (another ffmpeg) records
a failed row saying so instead of scoring against it, and so does a worker whose ffmpeg lacks
libvmaf or the encoder.

Dask reruns the task of a worker that dies (up to `distributed.scheduler.allowed-failures`); the
future resolves once, so each key is written once. The retries are counted from the scheduler's
`remove-worker` events. Dask (`distributed`) is imported only here and only when asked for.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import logging
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterator

from frgb import __version__
from frgb.corpus.build import (
    Encode, Summary, _append, _encoder_version, encode_and_score, failed_row, plan, prepare_folders,
)
from frgb.corpus.ffmpeg import check_capabilities, ffmpeg_version, find_ffmpeg
from frgb.corpus.grid import Grid
from frgb.corpus.sources import (
    Reference, Source, fetch, parse_source, render_reference, resolve_source, source_url, url_filesystem,
)
from frgb.errors import FrgbError

#: Seconds to reach a scheduler, and to wait for its first worker.
CONNECT_TIMEOUT = 5.0
WORKERS_TIMEOUT = 60.0
#: Encode tasks kept on the cluster at once: per worker thread, and at least.
TASKS_PER_THREAD = 4
MIN_IN_FLIGHT = 64
MISMATCH = "reference mismatch"


@dataclass
class ClusterSummary(Summary):
    scheduler: str = ""
    workers: int = 0
    dashboard: str | None = None
    retried: int = 0  # tasks rerun because the worker running (or holding) them died
    mismatched: Counter = field(default_factory=Counter)  # src -> rows whose worker rendered other bytes


@dataclass(frozen=True)
class RefInfo:
    """What the client learns of a rendered reference: never its bytes."""

    name: str
    sha256: str
    width: int
    height: int
    fps: float
    frames: int
    worker: str
    ffmpeg_version: str

    def reference(self) -> Reference:
        """A stand-in `Reference` (no file) that gives rows and keys their source fields."""
        source = Source(self.name, (), "", self.fps, (self.width, self.height))
        return Reference(source, Path(), self.sha256, self.width, self.height, self.fps, self.frames)


@dataclass(frozen=True)
class EncodeTask:
    """Everything a worker needs for one encode: small, picklable, no video."""

    spec: str | dict
    duration: float
    ref: RefInfo
    encoder: str
    preset: str
    crf: float
    probe_preset: str  # the preset the encoder's version is probed with (as build_corpus does)
    run_id: str
    ffmpeg: str | None
    log_dir: str | None


def parse_scheduler(text: str) -> tuple[str, str | int]:
    """("local", N) for `local:N`, else ("remote", address)."""
    kind, colon, count = text.partition(":")
    if kind == "local" and not count.startswith("//"):
        if not colon or not count.isdigit() or int(count) < 1:
            raise FrgbError(f"--scheduler local:N wants N >= 1 worker processes, got {text!r}")
        return "local", int(count)
    if not text.strip() or ":" not in text:
        raise FrgbError(f"--scheduler wants a scheduler address such as tcp://host:8786, or local:N, got {text!r}")
    return "remote", text


def _distributed():
    try:
        import distributed
    except ImportError:
        raise FrgbError("--scheduler needs Dask's distributed: pip install 'frgb[cluster]'") from None
    return distributed


@contextmanager
def connect(scheduler: str, work_dir: Path | None = None):
    """A connected `distributed.Client` (and its `LocalCluster` for `local:N`), closed after."""
    kind, where = parse_scheduler(scheduler)
    distributed = _distributed()
    cluster = None
    try:
        if kind == "local":
            cluster = distributed.LocalCluster(
                n_workers=where, threads_per_worker=1, processes=True, dashboard_address=":0",
                local_directory=str(work_dir) if work_dir else None, silence_logs=logging.ERROR,
                preload=[__name__],  # dask_setup below: Ctrl-C is the client's to handle
            )
            client = distributed.Client(cluster)
        else:
            try:
                client = distributed.Client(where, timeout=CONNECT_TIMEOUT)
            except (OSError, TimeoutError, asyncio.TimeoutError, ValueError) as e:
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                reason = "" if reason.startswith("Timed out") else f" ({reason})"
                raise FrgbError(f"cannot reach a Dask scheduler at {where} within {CONNECT_TIMEOUT:g} s{reason}; "
                                "is `dask scheduler` running there?") from None
    except BaseException:
        if cluster is not None:
            cluster.close()
        raise
    try:
        try:
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT)
        except (TimeoutError, asyncio.TimeoutError):
            raise FrgbError(f"no Dask worker joined the scheduler at {client.scheduler.address} within "
                            f"{WORKERS_TIMEOUT:g} s; start some with `dask worker {client.scheduler.address}`") from None
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def dask_setup(worker) -> None:
    """Preload of the local cluster's workers: they share the terminal of the client, whose
    Ctrl-C cancels their tasks and closes them; they ignore it themselves."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


# ----------------------------------------------------------------------------------------------
# On the workers. Each worker process keeps its rendered references (and fetched URL sources) in
# Dask's local directory for the worker, which Dask removes with the worker; nothing is shipped.

_LOCK = threading.Lock()
_KEY_LOCKS: dict[str, threading.Lock] = {}
_REFS: dict[str, Reference] = {}
_TOOLS: dict[str | None, tuple[str, str]] = {}
_VERSIONS: dict[tuple[str, str, str], str | None] = {}
_SCRATCH: list[Path] = []


def _key_lock(key: str) -> threading.Lock:
    with _LOCK:
        return _KEY_LOCKS.setdefault(key, threading.Lock())


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return "this process"


def _scratch() -> Path:
    """This worker's folder for references, fetched sources and encodes."""
    try:
        from distributed import get_worker

        base = Path(get_worker().local_directory)
    except (ImportError, ValueError):  # not on a worker (called directly): a folder for the process
        with _LOCK:
            if not _SCRATCH:
                _SCRATCH.append(Path(tempfile.mkdtemp(prefix="frgb-worker-")))
                atexit.register(shutil.rmtree, _SCRATCH[0], True)
        base = _SCRATCH[0]
    folder = base / "frgb"
    (folder / "work").mkdir(parents=True, exist_ok=True)
    return folder


def _ffmpeg(option: str | None) -> tuple[str, str]:
    """This worker's ffmpeg (`--ffmpeg` as given, else its own frgb install's) and its version."""
    with _key_lock(f"ffmpeg {option}"):
        if option not in _TOOLS:
            exe = find_ffmpeg(option)
            _TOOLS[option] = (exe, ffmpeg_version(exe))
        return _TOOLS[option]


def _version(exe: str, encoder: str, preset: str) -> str | None:
    key = (exe, encoder, preset)
    with _key_lock(f"version {key}"):
        if key not in _VERSIONS:
            _VERSIONS[key] = _encoder_version(exe, encoder, preset, _scratch() / "work")
        return _VERSIONS[key]


def _reference(exe: str, spec: str | dict, duration: float) -> Reference:
    """The source rendered on this worker, once per (spec, duration, ffmpeg)."""
    key = json.dumps([spec, duration, exe], sort_keys=True)
    with _key_lock(f"ref {key}"):
        ref = _REFS.get(key)
        if ref is None or not ref.path.exists():
            folder = _scratch()
            ref = render_reference(exe, resolve_source(spec, duration, folder / "src"), duration, folder / "refs")
            _REFS[key] = ref
        return ref


def check_sources(specs: list, duration: float) -> dict:
    """Run on every worker: frgb's version and, per source spec, why it cannot be read (or None)."""
    problems = []
    for spec in specs:
        try:
            url = source_url(spec)
            if url is None:
                parse_source({k: v for k, v in spec.items() if k != "src"} if isinstance(spec, dict) else spec, duration)
            else:
                fs, path = url_filesystem(url)
                if not fs.isfile(path):
                    raise FrgbError(f"source {url!r}: no such file")
            problems.append(None)
        except FrgbError as e:
            problems.append(str(e))
        except Exception as e:  # the URL's filesystem refused: credentials, network, ...
            problems.append(f"source {source_url(spec)!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return {"frgb": __version__, "problems": problems}


def render_task(spec: str | dict, duration: float, ffmpeg: str | None) -> RefInfo:
    exe, version = _ffmpeg(ffmpeg)
    ref = _reference(exe, spec, duration)
    return RefInfo(ref.source.name, ref.sha256, ref.width, ref.height, ref.fps, ref.frames, _worker_name(), version)


def encode_task(task: EncodeTask) -> dict:
    """One encode on this worker: its row (a failed row when this worker cannot do it)."""
    job = Encode(task.ref.reference(), task.encoder, task.preset, task.crf)
    context = {"run_id": task.run_id, "ffmpeg_version": None, "encoder_versions": {}}
    try:
        exe, context["ffmpeg_version"] = _ffmpeg(task.ffmpeg)
        check_capabilities(exe, [task.encoder])
        context["encoder_versions"] = {task.encoder: _version(exe, task.encoder, task.probe_preset)}
        ref = _reference(exe, task.spec, task.duration)
    except FrgbError as e:
        return failed_row(job, context, 1, f"on worker {_worker_name()}: {e}", attempts=0)
    if ref.sha256 != task.ref.sha256:
        reason = (f"{MISMATCH}: worker {_worker_name()} (ffmpeg {context['ffmpeg_version']}) rendered {ref.source.name} "
                  f"to sha256 {ref.sha256}, not {task.ref.sha256} as {task.ref.worker} (ffmpeg "
                  f"{task.ref.ffmpeg_version}) did; not scored")
        return {**failed_row(job, context, 1, reason, attempts=0), "src_sha256_rendered": ref.sha256}
    log_dir = Path(task.log_dir) if task.log_dir else None
    return encode_and_score(exe, replace(job, ref=ref), context, _scratch() / "work", log_dir)


# ----------------------------------------------------------------------------------------------
# On the client.


def _stage(spec: str | dict, folder: Path) -> str | dict:
    """A `memory://` source (in this process only) copied to `folder` for the local cluster's
    workers, which share this machine's disk; every other spec as given."""
    url = source_url(spec)
    if url is None or not url.startswith("memory://"):
        return spec
    fields = dict(spec) if isinstance(spec, dict) else {"spec": spec}
    text = str(fields.pop("spec", None) or fields.pop("path"))
    return {**fields, "spec": f"{fetch(url, folder)}{text[len(url):]}", "src": fields.get("src") or url}


def _check_workers(client, specs: list, duration: float) -> None:
    """Every worker runs this frgb and reads every source, or a one-line error says which not."""
    answers = client.run(check_sources, specs, duration, on_error="return")
    missing: dict[str, list[str]] = {}
    for worker, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            raise FrgbError(f"worker {worker} cannot run frgb's tasks ({type(answer).__name__}: {answer}); install "
                            "frgb with its corpus and cluster extras on every worker")
        if answer["frgb"] != __version__:
            raise FrgbError(f"worker {worker} runs frgb {answer['frgb']}, this client {__version__}: install the same "
                            "frgb on every worker")
        for problem in answer["problems"]:
            if problem:
                missing.setdefault(problem, []).append(worker)
    if missing:
        problem, workers = next(iter(missing.items()))
        raise FrgbError(f"{len(workers)} of {len(answers)} workers cannot read a source (first {workers[0]}): {problem}; "
                        "every worker must read every source: a path they all share, or an fsspec URL")


def _render(client, specs: list, duration: float, ffmpeg: str | None, run_id: str) -> list[RefInfo]:
    futures = [client.submit(render_task, spec, duration, ffmpeg, key=f"frgb-render-{run_id}-{i}", pure=False)
               for i, spec in enumerate(specs)]
    try:
        return client.gather(futures)
    except FrgbError:
        raise
    except Exception as e:
        raise FrgbError(f"rendering a reference on the cluster failed: {type(e).__name__}: {e}") from None


def _in_flight(client) -> int:
    threads = sum(client.nthreads().values())
    return max(MIN_IN_FLIGHT, TASKS_PER_THREAD * threads)


def _row(future, result, job: Encode, run_id: str) -> dict:
    """The row a finished future gives; a task that raised (or killed its workers) is a failed row."""
    if future.status == "finished":
        return result
    if future.status == "error":
        error = result[1]  # (type, exception, traceback)
        text = str(error).splitlines()[0] if str(error) else ""
        reason = f"on the cluster: {type(error).__name__}" + (f": {text}" if text else "")
        return failed_row(job, {"run_id": run_id, "ffmpeg_version": None, "encoder_versions": {}}, 1, reason, 0)
    raise FrgbError(f"the cluster lost task {future.key} ({future.status}): did the scheduler go away? Every "
                    "finished row is in the output; rerun the same command to resume")


def _sweep(client, tasks: Iterator[tuple[Encode, EncodeTask]], out: Path, summary: ClusterSummary, run_id: str,
           on_row: Callable[[dict], None]) -> None:
    from distributed import as_completed

    running: dict[str, tuple[Encode, object]] = {}
    flow = as_completed(with_results=True, raise_errors=False)  # results gathered as they finish
    limit, checked = _in_flight(client), time.monotonic()
    numbers = itertools.count()

    def top_up() -> None:
        for job, task in tasks:
            future = client.submit(encode_task, task, key=f"frgb-encode-{run_id}-{next(numbers)}", pure=False)
            running[future.key] = (job, future)
            flow.add(future)
            if len(running) >= limit:
                return

    top_up()
    try:
        for future, result in flow:
            job, _ = running.pop(future.key)
            row = _row(future, result, job, run_id)
            future.release()
            _append(out, row)
            summary.written += 1
            summary.failed += row["exit_status"] != 0
            if "src_sha256_rendered" in row:
                summary.mismatched[row["src"]] += 1
            on_row(row)
            if time.monotonic() - checked > 5:  # workers may have joined or left
                limit, checked = _in_flight(client), time.monotonic()
            top_up()
    except BaseException:
        client.cancel([f for _, f in running.values()])
        raise


def _retried(client, run_id: str) -> int:
    """Tasks of this run that the scheduler gave back to be rerun because their worker died."""
    prefixes = (f"frgb-encode-{run_id}-", f"frgb-render-{run_id}-")
    return sum(
        sum(str(key).startswith(prefixes) for key in event.get("processing-tasks", ()))
        for _, event in client.get_events("all")
        if isinstance(event, dict) and event.get("action") == "remove-worker"
    )


def build_corpus_on_cluster(
    grid: Grid,
    out: Path,
    scheduler: str,
    ffmpeg: str | None = None,
    work_dir: Path | None = None,
    log_dir: Path | None = None,
    retry_failed: bool = False,
    on_cluster: Callable[[ClusterSummary], None] = lambda summary: None,
    on_plan: Callable[[int, int], None] = lambda planned, skipped: None,
    on_row: Callable[[dict], None] = lambda row: None,
) -> ClusterSummary:
    """`build_corpus` with the encodes on a Dask cluster: `scheduler` is an address or `local:N`."""
    if not grid.sources or not grid.encoders:
        raise FrgbError("the grid needs at least one source and one encoder")
    kind, _ = parse_scheduler(scheduler)
    for spec in grid.sources:
        url = source_url(spec) or ""
        if kind == "remote" and url.startswith("memory://"):
            raise FrgbError(f"source {url!r}: fsspec's memory:// filesystem lives inside this process only, so the "
                            f"workers of {scheduler} cannot read it; put it where they can (a shared path, s3://, "
                            "gs://, https://) or use --scheduler local:N")
    prepare_folders(out, work_dir, None)  # --log-dir is the workers' path: they make it
    _distributed()
    started = time.perf_counter()
    run_id = uuid.uuid4().hex
    staging = Path(tempfile.mkdtemp(prefix="frgb-cluster-", dir=work_dir))
    try:
        specs = [_stage(spec, staging) for spec in grid.sources]
        with connect(scheduler, work_dir) as client:
            summary = ClusterSummary(scheduler=client.scheduler.address, workers=len(client.nthreads()))
            try:
                summary.dashboard = client.dashboard_link
            except (KeyError, AttributeError, TypeError):
                summary.dashboard = None
            _check_workers(client, specs, grid.duration)
            infos = _render(client, specs, grid.duration, ffmpeg, run_id)
            on_cluster(summary)
            by_sha = {}
            for spec, info in zip(specs, infos):
                summary.sources[info.name] = info.sha256
                by_sha.setdefault(info.sha256, (spec, info))
            pending, summary.planned = plan(grid, [info.reference() for _, info in by_sha.values()], out, retry_failed)
            pending = list({job.key: job for job in pending}.values())  # a point listed twice is encoded once
            summary.skipped = summary.planned - len(pending)
            on_plan(len(pending), summary.skipped)
            probe = {e.encoder: e.presets[-1] for e in grid.encoders}
            tasks = (
                (job, EncodeTask(by_sha[job.ref.sha256][0], grid.duration, by_sha[job.ref.sha256][1], job.encoder,
                                 job.preset, job.crf, probe[job.encoder], run_id, ffmpeg,
                                 str(log_dir) if log_dir else None))
                for job in pending
            )
            _sweep(client, tasks, out, summary, run_id, on_row)
            summary.retried = _retried(client, run_id)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary.seconds = time.perf_counter() - started
    return summary


def report_lines(summary: ClusterSummary) -> list[str]:
    """What the command adds after its summary line: retries and references that differed."""
    lines = [f"{summary.retried} tasks retried after a worker died"]
    for src, n in sorted(summary.mismatched.items()):
        lines.append(f"warning: {n} rows of {src}: a worker rendered another reference than the first one seen "
                     "(another ffmpeg?); recorded as failed, not scored. Give every worker the same ffmpeg, then "
                     "rerun with --retry-failed")
    return lines
