"""The teacher prior reproduces libvmaf's own per-frame scores (runs libvmaf itself)."""

import json

import numpy as np
import pytest

from frgb.contract import FEATURES
from frgb.corpus.ffmpeg import run
from frgb.corpus.scoring import per_frame, vmaf_filter
from frgb.errors import FrgbError
from frgb.teacher import VmafTeacher


def libvmaf_log(ffmpeg, tmp_path, crf: int) -> dict:
    """Encode 1 s of a moving test pattern with x264 and score it with libvmaf (JSON log)."""
    ref, enc, log = tmp_path / "ref.y4m", tmp_path / f"enc{crf}.mp4", tmp_path / f"vmaf{crf}.json"
    if not ref.exists():
        run(ffmpeg, ["-loglevel", "error", "-f", "lavfi", "-i", "mandelbrot=size=320x180:rate=25", "-t", "1",
                     "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", str(ref)])
    run(ffmpeg, ["-loglevel", "error", "-i", str(ref), "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf),
                 str(enc)])
    done = run(ffmpeg, ["-loglevel", "error", "-i", str(enc), "-i", str(ref), "-lavfi",
                        vmaf_filter(log, ten_bit=False), "-f", "null", "-"])
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(log.read_text())


def test_teacher_matches_libvmaf_per_frame_within_1e3(ffmpeg, tmp_path):
    """The Python teacher, and the prior's ONNX subgraph on the same float32 features."""
    import onnxruntime as ort
    from skl2onnx.common.data_types import FloatTensorType

    from frgb.export.teacher_onnx import teacher_graph

    teacher = VmafTeacher(model="vmaf_v0.6.1").fit()
    graph = teacher_graph(teacher, "features", 17, output_names=["score"]).to_onnx(
        inputs=[("features", FloatTensorType([None, 6]))], target_opset=17)
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    worst = worst_graph = 0.0
    for crf in (18, 34, 48):
        frames = per_frame(libvmaf_log(ffmpeg, tmp_path, crf))
        X = np.column_stack([frames[f] for f in FEATURES])
        vmaf = np.array(frames["vmaf"])
        worst = max(worst, float(np.max(np.abs(teacher.predict(X) - vmaf))))
        prior = session.run(None, {"features": X.astype(np.float32)})[0].ravel()
        worst_graph = max(worst_graph, float(np.max(np.abs(prior - vmaf))))
    assert worst <= 1e-3, f"teacher differs from libvmaf's per-frame vmaf by {worst}"
    assert worst_graph <= 1e-3, f"the prior's graph differs from libvmaf's per-frame vmaf by {worst_graph}"


def test_teacher_predicts_the_shipped_rows_closely(small_corpus):
    pred = VmafTeacher().fit().predict(small_corpus.features)
    rmse = float(np.sqrt(np.mean((pred - small_corpus.target) ** 2)))
    assert rmse < 1.5 and np.corrcoef(pred, small_corpus.target)[0, 1] > 0.999


def test_4k_model_loads_and_differs():
    X = np.array([[0.95, 0.6, 0.9, 0.95, 0.97, 4.0]])
    assert VmafTeacher(model="vmaf_4k_v0.6.1").fit().predict(X)[0] != VmafTeacher().fit().predict(X)[0]


def test_unknown_model_is_a_clear_error():
    with pytest.raises(FrgbError, match="not a built-in"):
        VmafTeacher(model="vmaf_v9").fit()


def test_prior_follows_the_corpus_and_rows_of_another_model_are_counted(tmp_path):
    import json

    from frgb.loading import load_corpus
    from frgb.training import choose_prior
    from tests.conftest import shipped_rows, write_jsonl

    rows = [r for r in shipped_rows() if r["exit_status"] == 0][:30]
    for r in rows[:10]:
        r["vmaf_model"] = "vmaf_4k_v0.6.1"
    corpus = load_corpus(write_jsonl(tmp_path / "mixed.jsonl", rows))
    auto = choose_prior(corpus, "auto")
    assert auto.model == "vmaf_v0.6.1" and auto.other_rows == 10 and auto.others == {"vmaf_4k_v0.6.1": 10}
    forced = choose_prior(corpus, "vmaf_4k_v0.6.1")
    assert forced.model == "vmaf_4k_v0.6.1" and forced.other_rows == 20
    assert choose_prior(corpus, "none").model is None
    (tmp_path / "unknown.jsonl").write_text("".join(json.dumps(dict(r, vmaf_model="vmaf_v9")) + "\n" for r in rows))
    with pytest.raises(FrgbError, match="does not ship"):
        choose_prior(load_corpus(tmp_path / "unknown.jsonl"), "auto")
