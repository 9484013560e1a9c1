"""Per-frame use: a libvmaf build that calls the graph once per frame (batch 1) and pools the scores.

    python benchmarks/per_frame.py [--rows data/per-frame.jsonl] [--make] [--model-dir model]
                                   [--report reports/per-frame.md] [--jobs 2]

frgb is trained on per-encode rows (the mean of each feature over the frames, target the mean
of libvmaf's per-frame VMAF). libvmaf's successor instead runs a rank-2 model per frame with that
frame's six features and pools the per-frame outputs (mean). This measures, on encodes whose rows
carry every frame's features, how far each way of scoring lands from `vmaf_score`:

- per encode:  the graph on the row's mean features (what frgb is trained for);
- per frame:   the graph on each frame, batch 1, then the mean, with the codec block the row's
               own (card vector) and with the one libvmaf's successor sends (unknown = 1,
               preset_norm = crf_norm = 0);
- the prior alone (VMAF's own SVR, frgb/teacher.py), per encode and per frame.

`--make` encodes and scores the sources of GRID with the shipped ffmpeg + libvmaf
(`pip install -e '.[corpus]'`), keeping every libvmaf log, and writes the rows with their
per-frame features (`frames`) to --rows. The sources are not among the shipped corpus's 17, so
every model here meets them as new content.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

from frgb.contract import FEATURES, layout_for_vocab
from frgb.loading import load_corpus
from frgb.teacher import VmafTeacher
from frgb.vectors import card_blocks

REPO = Path(__file__).resolve().parent.parent
#: Sources outside the shipped corpus, and a small grid of the software encoders.
GRID = {
    "duration": 2.0,
    "sources": ["still:ihc:pan@640x360", "still:motorcycle_right:zoom@480x270", "still:moon:shake@480x270"],
    "encoders": {
        "libx264": {"presets": ["veryfast", "medium"], "crfs": [18, 28, 38, 48]},
        "libx265": {"presets": ["medium"], "crfs": [18, 28, 38, 48]},
        "libsvtav1": {"presets": ["8"], "crfs": [24, 36, 48, 60]},
        "libvpx-vp9": {"presets": ["good"], "crfs": [24, 36, 48, 60]},
    },
}
#: The graphs measured (libvmaf's loader takes the _libvmaf files), card and fork-v2 layouts.
GRAPHS = ("frgb_libvmaf.onnx", "frgb_fork_v2_libvmaf.onnx")


def make_rows(rows_path: Path, jobs: int) -> None:
    """Encode and score GRID with libvmaf, then write each row with its per-frame features."""
    from frgb.corpus.build import build_corpus, row_key
    from frgb.corpus.ffmpeg import find_ffmpeg
    from frgb.corpus.grid import Grid, encoder_grid
    from frgb.corpus.scoring import per_frame, read_log

    grid = Grid(tuple(GRID["sources"]), tuple(encoder_grid(e, s["presets"], s["crfs"])
                                              for e, s in GRID["encoders"].items()), GRID["duration"])
    with tempfile.TemporaryDirectory() as work:
        corpus, logs = Path(work) / "rows.jsonl", Path(work) / "logs"
        build_corpus(grid, corpus, find_ffmpeg(), jobs=jobs, log_dir=logs)
        out = []
        for line in corpus.read_text().splitlines():
            row = json.loads(line)
            if row["exit_status"] != 0:
                continue
            log = logs / f"{hashlib.sha256(repr(row_key(row)).encode()).hexdigest()[:20]}.json"
            frames = per_frame(read_log(log))
            row["frames"] = {k: [round(v, 6) for v in vs] for k, vs in frames.items()}
            out.append(row)
    out.sort(key=lambda r: (r["src"], r["encoder"], str(r["preset"]), r["crf"]))
    rows_path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in out))


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_one(sess: ort.InferenceSession, features: np.ndarray, codec: np.ndarray) -> float:
    """One batch-1 call, inputs by position (one concatenated input or two)."""
    inputs = sess.get_inputs()
    arrays = [np.hstack([features, codec])] if len(inputs) == 1 else [features, codec]
    feeds = {v.name: a.astype(np.float32)[None, :] for v, a in zip(inputs, arrays)}
    return float(sess.run(None, feeds)[0].reshape(-1)[0])


def measure(rows_path: Path, model_dir: Path) -> dict:
    corpus = load_corpus(rows_path)
    raw = {(r["src"], r["encoder"], str(r["preset"]), float(r["crf"])): r["frames"]
           for r in map(json.loads, rows_path.read_text().splitlines())}
    frames = [raw[(s, e, str(p), float(c))] for s, e, p, c in zip(corpus.source, corpus.encoder, corpus.preset,
                                                                   corpus.crf)]
    per_frame_features = [np.column_stack([f[name] for name in FEATURES]) for f in frames]
    target = corpus.target
    teacher = VmafTeacher().fit()
    results = {
        "prior alone, per encode (mean features)": teacher.predict(corpus.features),
        "prior alone, per frame then mean": np.array([teacher.predict(x).mean() for x in per_frame_features]),
    }
    for name in GRAPHS:
        path = model_dir / name
        sidecar = json.loads(path.with_suffix(".json").read_text())
        layout = layout_for_vocab(sidecar["encoder_vocab"])
        sess = session(path)
        card = card_blocks(layout, corpus)
        successor = np.zeros(layout.codec_width)
        successor[layout.codec_width - 3] = 1.0
        results[f"{name}, per encode (mean features)"] = np.array(
            [run_one(sess, f, c) for f, c in zip(corpus.features, card)])
        results[f"{name}, per frame then mean, the row's codec block"] = np.array(
            [np.mean([run_one(sess, frame, c) for frame in x]) for x, c in zip(per_frame_features, card)])
        results[f"{name}, per frame then mean, libvmaf's block (unknown, 0, 0)"] = np.array(
            [np.mean([run_one(sess, frame, successor) for frame in x]) for x in per_frame_features])
    moves = {name: float(np.abs(results[f"{name}, per frame then mean, the row's codec block"]
                                - results[f"{name}, per frame then mean, libvmaf's block (unknown, 0, 0)"]).max())
             for name in GRAPHS}
    figures = {}
    for name, pred in results.items():
        error = pred - target
        figures[name] = {"rmse": float(np.sqrt(np.mean(error**2))), "bias": float(error.mean()),
                         "max_abs": float(np.abs(error).max())}
    return {"rows": len(corpus), "frames": int(sum(len(x) for x in per_frame_features)),
            "sources": sorted(set(corpus.source.tolist())), "encoders": sorted(set(corpus.encoder.tolist())),
            "figures": figures, "block_moves": moves}


def markdown(result: dict, command: str) -> str:
    lines = [
        "# Per-frame use: the graph called once per frame, then pooled",
        "",
        f"{result['rows']} encodes ({result['frames']} frames) of {len(result['sources'])} sources that are not in "
        f"the shipped corpus ({', '.join(result['sources'])}), by {', '.join(result['encoders'])}, scored by "
        "libvmaf (vmaf_v0.6.1); each row in `data/per-frame.jsonl` carries every frame's six features "
        "(`frames`). The target is `vmaf_score`, the mean of libvmaf's per-frame VMAF. Every graph call is "
        "batch 1, as a libvmaf build that runs the model per frame makes it.",
        "",
        f"Reproduce with `{command}` (add `--make` to encode and score the rows again).",
        "",
        "| how | RMSE vs vmaf_score | mean error (bias) | largest error |",
        "|---|---:|---:|---:|",
        *(f"| {name} | {f['rmse']:.3f} | {f['bias']:+.3f} | {f['max_abs']:.3f} |"
          for name, f in result["figures"].items()),
        "",
    ]
    fig = result["figures"]
    prior_frame, prior_encode = fig["prior alone, per frame then mean"], fig["prior alone, per encode (mean features)"]
    frgb_encode = fig[f"{GRAPHS[0]}, per encode (mean features)"]
    closer = "closer to" if frgb_encode["rmse"] < prior_encode["rmse"] else "no closer to"
    for name in GRAPHS:
        encode, frame = fig[f"{name}, per encode (mean features)"], fig[f"{name}, per frame then mean, the row's codec block"]
        blind = fig[f"{name}, per frame then mean, libvmaf's block (unknown, 0, 0)"]
        lines += [f"- `{name}`: per encode RMSE {encode['rmse']:.3f}; per frame then pooled {frame['rmse']:.3f} "
                  f"(bias {frame['bias']:+.3f}), and {blind['rmse']:.3f} with the block libvmaf sends."]
    lines += [
        "",
        "## What to expect, and which file",
        "",
        f"Per frame, the prior alone is VMAF's own per-frame model: pooled, it gives `vmaf_score` itself (RMSE "
        f"{prior_frame['rmse']:.4f}). frgb's residual trees learn what that model misses when it is applied to a "
        "row's *mean* features; applied to each frame they correct a gap that per-frame scoring does not have, "
        "so pooled per-frame frgb scores sit about that much away from `vmaf_score` (table above). Per encode, "
        f"on the mean features, frgb ({frgb_encode['rmse']:.3f}) is {closer} `vmaf_score` than the prior on the "
        f"same means ({prior_encode['rmse']:.3f}). So:",
        "",
        "- a libvmaf build that runs the graph per frame (batch 1, codec block zero-filled with `unknown` set) "
        "can load `model/frgb_fork_v2_libvmaf.onnx` (14 wide) or `model/frgb_libvmaf.onnx` (8 wide): the slot it "
        "sets, w - 3, is `unknown` in both, the fork-v2 graph's guard scores that block exactly codec-blind, and "
        f"the pooled scores under it differ from those under each row's own block by at most "
        f"{max(result['block_moves'].values()):.4f} VMAF; the `_interval` files add `lower` and "
        "`upper` per frame. Expect the per-frame figures above, not the per-encode ones;",
        "- to reproduce libvmaf's pooled VMAF from per-frame features, pool libvmaf's own per-frame score;",
        "- to predict the pooled VMAF of an encode from its pooled features, call the graph once per encode with "
        "the mean features (what frgb is trained and evaluated for).",
        "",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=Path, default=REPO / "data" / "per-frame.jsonl")
    parser.add_argument("--make", action="store_true", help="encode and score the rows first (needs ffmpeg+libvmaf)")
    parser.add_argument("--model-dir", type=Path, default=REPO / "model")
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    if args.make:
        make_rows(args.rows, args.jobs)
    result = measure(args.rows, args.model_dir)
    command = shlex.join(["python", "benchmarks/per_frame.py", *(argv if argv is not None else sys.argv[1:])])
    text = markdown(result, command.replace(" --make", ""))
    if args.report:
        args.report.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
