"""The Markdown of frgb's reports: the evaluation report (`frgb report`), the interval report
(`frgb eval --intervals --report`), the codec-vector report (`frgb eval --vectors --report`) and
the tuning report (`frgb tune --report`), with one table helper. Every sentence that draws a conclusion is computed from the numbers, so a regenerated
report cannot contradict its own tables."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from frgb.baseline import ACTIVATION, HIDDEN_LAYERS, PATIENCE
from frgb.comparison import PROBE_STEP, VMAF_BANDS, Comparison, band_rmse
from frgb.contract import FEATURES
from frgb.intervals import QUANTILE_TREES
from frgb.loading import Corpus
from frgb.training import FitOptions
from frgb.tuning import HARM_TOLERANCE, Candidate, Tuning
from frgb.vectors import COVERAGE_BOUND, POINT_BOUND, VECTORS

#: The models in the evaluation report's tables, in order (those a comparison has).
TABLE_MODELS = ("frgb", "prior", "trees", "mlp", "prior+mlp")


def table(header: list[str], rows: list[list]) -> list[str]:
    """A Markdown table (first column left-aligned, the rest right-aligned), then a blank line."""
    align = ["---"] + ["---:"] * (len(header) - 1)
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |",
            *("| " + " | ".join(str(c) for c in row) + " |" for row in rows), ""]


def _f(v: float, digits: int) -> str:
    return "n/a" if v != v else f"{v:.{digits}f}"


def _metrics(m: dict) -> list[str]:
    return [_f(m["plcc"], 5), _f(m["srocc"], 4), _f(m["rmse"], 3)]


def _list(items: list[str]) -> str:
    if not items:
        return "none"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _headline(result: Comparison, names: list[str]) -> list[str]:
    rows = []
    for name in names:
        s = result.summary(name)
        rows.append([f"**{name}**", result.descriptions[name], *_metrics(s["mean_over_sources"]),
                     _f(s["pooled"]["plcc"], 5), _f(s["pooled"]["rmse"], 3),
                     _f(s["codec_blind"]["mean_over_sources"]["rmse"], 3)])
    return table(["model", "what", "mean PLCC", "mean SROCC", "mean RMSE", "pooled PLCC", "pooled RMSE",
                   "codec-blind mean RMSE"], rows)


def _versus(result: Comparison, a: str, b: str) -> list[str]:
    """Plain sentences: who wins, on how many folds, and where the other one wins."""
    sa, sb = result.summary(a), result.summary(b)
    ma, mb = sa["mean_over_sources"], sb["mean_over_sources"]
    w = {m: result.wins(a, b, m) for m in ("plcc", "srocc", "rmse")}
    lost = [s for s in result.folds if sa["per_source"][s]["rmse"] > sb["per_source"][s]["rmse"]]
    enc_lost = [e for e in sa["per_encoder"] if sa["per_encoder"][e]["rmse"] > sb["per_encoder"][e]["rmse"]]
    verdict = ("higher" if ma["plcc"] > mb["plcc"] else "lower" if ma["plcc"] < mb["plcc"] else "equal")
    lines = [
        f"**{a} against {b}**",
        "",
        f"- Mean LOSO PLCC: {a} {_f(ma['plcc'], 5)}, {b} {_f(mb['plcc'], 5)} ({a} {verdict}); "
        f"mean RMSE: {a} {_f(ma['rmse'], 3)}, {b} {_f(mb['rmse'], 3)} "
        f"({a} {'lower' if ma['rmse'] < mb['rmse'] else 'not lower'}).",
        f"- Per held-out source: RMSE {w['rmse']['wins']} won / {w['rmse']['losses']} lost, "
        f"PLCC {w['plcc']['wins']} won / {w['plcc']['losses']} lost / {w['plcc']['ties']} tied, "
        f"SROCC {w['srocc']['wins']} won / {w['srocc']['losses']} lost / {w['srocc']['ties']} tied "
        "(a tie: the two differ by less than 5e-5).",
        f"- Sources where {b} has the lower RMSE: {_list([f'`{s}`' for s in lost])}.",
        f"- Encoders (pooled over sources) where {b} has the lower RMSE: {_list([f'`{e}`' for e in enc_lost])}.",
    ]
    return lines


def _per_source(result: Comparison, names: list[str]) -> list[str]:
    """PLCC, SROCC and RMSE of `names` per held-out source, with the mean and pooled rows."""
    header = ["held-out source", "n"] + [f"{n} {m}" for n in names for m in ("PLCC", "SROCC", "RMSE")]
    rows = []
    for source in result.folds:
        per = [result.summary(n)["per_source"][source] for n in names]
        best = min(range(len(names)), key=lambda k: per[k]["rmse"])
        cells = []
        for k, m in enumerate(per):
            c = _metrics(m)
            cells += c[:2] + [f"**{c[2]}**" if k == best else c[2]]
        rows.append([f"`{source}`", per[0]["n"], *cells])
    means = [result.summary(n)["mean_over_sources"] for n in names]
    rows.append(["**mean over sources**", "", *[c for m in means for c in _metrics(m)]])
    pooled = [result.summary(n)["pooled"] for n in names]
    rows.append(["**pooled**", pooled[0]["n"], *[c for m in pooled for c in _metrics(m)]])
    return table(header, rows)


def _per_source_rmse(result: Comparison, names: list[str]) -> list[str]:
    """RMSE of every model per held-out source (the lowest in bold)."""
    rows = []
    for source in result.folds:
        rmse = [result.summary(n)["per_source"][source]["rmse"] for n in names]
        best = int(np.argmin(rmse))
        rows.append([f"`{source}`", *[f"**{_f(v, 3)}**" if k == best else _f(v, 3) for k, v in enumerate(rmse)]])
    rows.append(["**mean over sources**", *[_f(result.summary(n)["mean_over_sources"]["rmse"], 3) for n in names]])
    return table(["held-out source", *[f"{n} RMSE" for n in names]], rows)


def _per_encoder(result: Comparison, names: list[str]) -> list[str]:
    header = ["encoder", "n"] + [f"{n} {m}" for n in names for m in ("PLCC", "RMSE")]
    first = result.summary(names[0])["per_encoder"]
    rows = []
    for enc in first:
        per = [result.summary(n)["per_encoder"][enc] for n in names]
        best = min(range(len(names)), key=lambda k: per[k]["rmse"])
        cells = []
        for k, m in enumerate(per):
            rmse = _f(m["rmse"], 3)
            cells += [_f(m["plcc"], 5), f"**{rmse}**" if k == best else rmse]
        rows.append([f"`{enc}`", first[enc]["n"], *cells])
    return table(header, rows)


def _residual_effect(result: Comparison, groups: dict[str, dict], prior: dict[str, dict]) -> tuple[list, list]:
    helps = [(g, prior[g]["rmse"] - m["rmse"]) for g, m in groups.items() if prior[g]["rmse"] - m["rmse"] > 0.005]
    hurts = [(g, m["rmse"] - prior[g]["rmse"]) for g, m in groups.items() if m["rmse"] - prior[g]["rmse"] > 0.005]
    return sorted(helps, key=lambda t: -t[1]), sorted(hurts, key=lambda t: -t[1])


def _residual_section(result: Comparison) -> list[str]:
    """Where the residual trees improve on the prior alone, and where they do harm."""
    if "prior" not in result.predictions:
        return ["No teacher prior was used, so there is no residual to assess.", ""]
    frgb, prior = result.summary("frgb"), result.summary("prior")
    lines = []
    for what, key in (("source", "per_source"), ("encoder", "per_encoder")):
        helps, hurts = _residual_effect(result, frgb[key], prior[key])
        fmt = lambda items: _list([f"`{g}` ({d:.2f})" for g, d in items])
        lines.append(f"- Per {what}: the trees lower the prior's RMSE by more than 0.005 VMAF on "
                     f"{len(helps)} of {len(frgb[key])} ({fmt(helps)}), and raise it on {len(hurts)} ({fmt(hurts)}).")
    fp, pp = frgb["mean_over_sources"], prior["mean_over_sources"]
    lines.append(f"- Overall: mean RMSE {_f(pp['rmse'], 3)} (prior alone) -> {_f(fp['rmse'], 3)} (prior + trees); "
                 f"mean SROCC {_f(pp['srocc'], 4)} -> {_f(fp['srocc'], 4)}; codec-blind mean RMSE "
                 f"{_f(prior['codec_blind']['mean_over_sources']['rmse'], 3)} -> "
                 f"{_f(frgb['codec_blind']['mean_over_sources']['rmse'], 3)}.")
    bands = list(zip(band_rmse(result, "prior"), band_rmse(result, "frgb")))
    helped = [b[0][0] for b in bands if b[0][2] - b[1][2] > 0.005]
    harmed = [b[0][0] for b in bands if b[1][2] - b[0][2] > 0.005]
    lines.append(f"- By VMAF band: the trees help in {_list(helped)} and hurt in {_list(harmed)}.")
    return lines + [""]


def _share(falls: dict[str, float] | None) -> str:
    return "-" if not falls else f"{100 * np.mean(list(falls.values())):.2f} %"


def _monotone_section(result: Comparison, pairs: list[tuple[str, str]], options: FitOptions,
                      violations: dict[str, dict[str, float]]) -> list[str]:
    """`pairs`: (model, the same model with the monotone setting flipped)."""
    pairs = [(base, flip, base) if flip.endswith("monotone") else (base, base, flip) for base, flip in pairs]
    if not pairs:
        return []
    rows = []
    for base, on, off in pairs:
        for label, name in (("unconstrained", off), ("monotone", on)):
            s = result.summary(name)
            rows.append([f"{base} ({label})", *_metrics(s["mean_over_sources"]), _f(s["pooled"]["rmse"], 3),
                         _f(s["codec_blind"]["mean_over_sources"]["rmse"], 3),
                         _share(violations.get(name))])
    for name in ("prior", "mlp", "prior+mlp"):
        if name in result.predictions:
            s = result.summary(name)
            rows.append([name, *_metrics(s["mean_over_sources"]), _f(s["pooled"]["rmse"], 3),
                         _f(s["codec_blind"]["mean_over_sources"]["rmse"], 3),
                         _share(violations.get(name))])
    lines = table(["model", "mean PLCC", "mean SROCC", "mean RMSE", "pooled RMSE", "codec-blind RMSE",
                    "probes where raising a feature lowers the score"], rows)
    verdicts = []
    favours = {}
    for base, on, off in pairs:
        mon, unc = result.summary(on)["mean_over_sources"], result.summary(off)["mean_over_sources"]
        w = result.wins(on, off, "rmse")
        delta = mon["rmse"] - unc["rmse"]
        favours[base] = "monotone" if delta < -0.005 else "unconstrained" if delta > 0.005 else "neither"
        verdicts.append(f"- {base}: monotone constraints change mean LOSO RMSE by {delta:+.3f} VMAF "
                        f"({_f(unc['rmse'], 3)} -> {_f(mon['rmse'], 3)}), PLCC {_f(unc['plcc'], 5)} -> "
                        f"{_f(mon['plcc'], 5)}; per source the constrained model has the lower RMSE on "
                        f"{w['wins']} of {sum(w.values())} folds.")
    if "prior" in violations:
        per = violations["prior"]
        falls = ", ".join(f"{f} {100 * v:.1f} %" for f, v in per.items())
        verdicts.append(f"- The teacher itself is not monotone in every constrained feature: raising one feature "
                        f"lowers the prior's score on this share of rows: {falls}. Constraints on the residual "
                        "trees cannot make frgb monotone where the teacher is not, and a constraint that the "
                        "target does not obey usually costs accuracy.")
    default = "monotone" if options.monotone else "unconstrained"
    verdict = favours.get("frgb", "neither")
    if verdict == "neither":
        verdicts.append(f"- For frgb the difference is within 0.005 VMAF; the default stays **{default}** "
                        "(`FitOptions.monotone`).")
    elif verdict == default:
        verdicts.append(f"- The numbers favour **{verdict}** for frgb, which is the default (`FitOptions.monotone`).")
    else:
        verdicts.append(f"- The numbers favour **{verdict}** for frgb, but the default is {default}: "
                        "reconsider `FitOptions.monotone`.")
    return lines + verdicts + [""]


def _corpus_section(corpus: Corpus) -> list[str]:
    n_sources = len(set(corpus.group.tolist()))
    lines = [f"`{corpus.path}` (SHA-256 `{corpus.sha256[:16]}...`): {len(corpus)} rows used, "
             f"{n_sources} sources, {len(set(corpus.encoder.tolist()))} encoders; rows dropped: "
             f"{corpus.drop_summary()}. Measured VMAF: median {np.median(corpus.target):.1f}, "
             f"{np.mean(corpus.target >= 95) * 100:.0f} % of rows at 95 or above.", ""]
    rows = []
    for source in sorted(set(corpus.source.tolist())):
        t = corpus.target[corpus.source == source]
        f = corpus.features[corpus.source == source]
        rows.append([f"`{source}`", len(t), f"{t.min():.1f}", f"{np.median(t):.1f}", f"{t.max():.1f}",
                     f"{f[:, FEATURES.index('motion2')].mean():.2f}"])
    lines += table(["source", "rows", "VMAF min", "VMAF median", "VMAF max", "motion2"], rows)
    rows = []
    for enc in sorted(set(corpus.encoder.tolist())):
        m = corpus.encoder == enc
        t, crf = corpus.target[m], corpus.crf[m]
        presets = sorted({str(p) for p in corpus.preset[m]})
        rows.append([f"`{enc}`", int(m.sum()), ", ".join(presets), f"{crf.min():g}-{crf.max():g}",
                     f"{t.min():.1f}-{t.max():.1f}"])
    lines += table(["encoder", "rows", "presets", "CRF / QP", "VMAF range"], rows)
    hist = np.histogram(corpus.target, bins=VMAF_BANDS)[0]
    lines += table(["VMAF band"] + [f"{a}-{b}" for a, b in zip(VMAF_BANDS[:-1], VMAF_BANDS[1:])],
                    [["rows", *hist.tolist()]])
    return lines


def _bandstable(result: Comparison, names: list[str]) -> list[str]:
    bands = {n: band_rmse(result, n) for n in names}
    rows = [[b[0], b[1], *[_f(bands[n][k][2], 3) for n in names]] for k, b in enumerate(bands[names[0]])]
    return table(["measured VMAF", "rows", *[f"{n} RMSE" for n in names]], rows)


def evaluation_markdown(result: Comparison, options: FitOptions, prior: str | None, figures: dict[str, str],
           violations: dict[str, float], pairs: list[tuple[str, str]], epochs: list[int], mlp_max_iter: int,
           command: str, bench: str | None) -> str:
    names = [n for n in TABLE_MODELS if n in result.predictions]
    corpus = result.corpus
    lines = [
        "# frgb evaluation: leave-one-source-out, against the MLP baseline",
        "",
        f"Generated by `{command}` from `{Path(corpus.path).name}` ({len(corpus)} rows, "
        f"{len(result.folds)} sources). Every model below is trained once per source on the other sources and "
        "scored on the held-out one; all models use exactly the same folds (keyed by `src_sha256`, else `src`). "
        "\"Mean\" figures are means over the held-out sources; \"pooled\" figures are computed over all "
        "out-of-fold predictions at once. The codec-blind column feeds the contract's codec-blind vector "
        "instead of each row's codec block.",
        "",
        "## Headline",
        "",
        *_headline(result, names),
    ]
    if "mlp" in names:
        lines += _versus(result, "frgb", "mlp") + [""]
    if "prior" in names:
        lines += _versus(result, "frgb", "prior") + [""]
    if "prior+mlp" in names:
        lines += _versus(result, "frgb", "prior+mlp") + [""]
    if "trees" in names:
        lines += _versus(result, "frgb", "trees") + [""]
    lines += [
        "Models:",
        "",
        f"- **frgb**: `frgb fit`'s model with options `{options}`: teacher prior `{prior}` plus LightGBM "
        "(settings from `frgb.model.DEFAULT_TREES`) on the residual, trained with codec-blind copies of every row.",
        "- **prior**: the VMAF model's own SVR on the six features (`VmafTeacher().fit().predict(features)`), "
        "no training at all.",
        "- **trees**: what `frgb fit --prior none` trains: the same LightGBM pipeline fitted on the score itself, "
        "with the settings `frgb tune --prior none` chose (`frgb.model.PLAIN_TREES`): frgb without its prior, "
        "fairly tuned.",
        f"- **mlp**: the `fr_regressor_v2`-shaped baseline (`frgb.baseline`): standardised features concatenated "
        f"with the codec block, hidden layers {HIDDEN_LAYERS}, **{ACTIVATION}** activation, one output, Adam on "
        "the squared error, seed fixed, target standardised (`TransformedTargetRegressor`), early stopping "
        f"on a 10 % validation split after {PATIENCE} epochs without improvement (cap {mlp_max_iter} epochs), "
        "trained on the same rows as frgb (codec-blind copies included) and clipped to [0, 100] like frgb. "
        + (f"Per fold it trained for {min(epochs)} to {max(epochs)} epochs (median {int(np.median(epochs))}); "
           f"{sum(e >= mlp_max_iter for e in epochs)} of {len(epochs)} folds reached the cap." if epochs else ""),
        "- **prior+mlp** (second baseline): the prior plus the same MLP fitted on its residual instead of the "
        "score: the prior with a smooth learner on the residual instead of trees.",
        "",
        "## Leave-one-source-out, per held-out source",
        "",
        "frgb against the MLP baseline on each fold (the lower RMSE in bold):",
        "",
        *_per_source(result, [n for n in ("frgb", "mlp") if n in names]),
        "RMSE of every model on each fold (the lowest in bold):",
        "",
        *_per_source_rmse(result, names),
        "## Per encoder (out-of-fold predictions pooled over sources)",
        "",
        *_per_encoder(result, names),
        "## Where the residual trees help the prior",
        "",
        *_residual_section(result),
        "## Figures",
        "",
        f"![Predicted against measured VMAF]({figures['scatter']})",
        "",
        "The box plots show the models within a VMAF point of each other (trees without the prior are in the "
        "scatter and the tables: their spread would set the scale).",
        "",
        f"![Residuals per encoder]({figures['by_encoder']})",
        "",
        f"![Residuals per source]({figures['by_source']})",
        "",
        f"![Error against VMAF range]({figures['by_range']})",
        "",
        *_bandstable(result, names),
        "### Feature importance and SHAP",
        "",
        "Gain (share of the total split gain) and mean absolute SHAP contribution (LightGBM `pred_contrib`) per "
        "input, of models fitted on the whole corpus. With the prior, these describe only the residual trees "
        "(a correction of a few tenths of a VMAF point); the prior's own dependence on the features is not "
        "included. Without the prior the trees carry the whole score.",
        "",
        f"![Feature importance and SHAP]({figures['importance']})",
        "",
        "## Experiment: monotone constraints",
        "",
        "Constraint: the prediction must not fall when adm2 or a VIF scale rises, all else equal (motion2 and the "
        "codec block are free); LightGBM `monotone_constraints` with the `advanced` method. With the prior the "
        "constraints apply to the residual trees only, so the sum is monotone only as far as the SVR is. The last "
        f"column probes the models fitted on the whole corpus: for every row and each of the five constrained "
        f"features, the feature is raised by {PROBE_STEP} of its standard deviation and a fall of more than 0.01 "
        "VMAF is counted (share over rows and the five features).",
        "",
        *_monotone_section(result, pairs, options, violations),
        "## Fit cost",
        "",
    ]
    if bench:
        lines += [bench.strip(), ""]
    else:
        lines += ["Run `python benchmarks/bench_fit.py --cli --out reports/bench_fit.md` and regenerate this report "
                  "to include the fit-time and peak-memory table.", ""]
    lines += ["## Corpus", "", *_corpus_section(corpus)]
    return "\n".join(lines).rstrip() + "\n"


# The interval report.

def _settings(trees: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in trees.items() if k != "n_jobs")


def intervals_markdown(result: dict, command: str) -> str:
    """reports/intervals.md from `evaluate_loso`'s result."""
    levels = result["levels"]
    top = max(levels, key=float)
    corpus = Path(result["corpus"]).resolve()
    if corpus.is_relative_to(Path.cwd()):
        corpus = corpus.relative_to(Path.cwd())
    point = result["point_loso"]

    def lowest(summary: dict) -> str:
        enc, fig = min(summary["per_encoder"].items(), key=lambda kv: kv[1]["coverage"])
        return f"{fig['coverage']:.3f} ({enc})"

    summary = table(
        ["level", "coverage", "mean width", "median width", "lowest encoder", "codec-blind coverage",
         "codec-blind mean width", "one pooled margin: coverage", "lowest encoder", "mean width"],
        [[f"{float(L):g}", f"{v['coverage']:.3f}", f"{v['mean_width']:.3f}", f"{v['median_width']:.3f}", lowest(v),
          f"{v['codec_blind']['coverage']:.3f}", f"{v['codec_blind']['mean_width']:.3f}",
          f"{v['one_pooled_margin']['coverage']:.3f}", lowest(v["one_pooled_margin"]),
          f"{v['one_pooled_margin']['mean_width']:.3f}"] for L, v in levels.items()],
    )
    encoders = sorted(levels[top]["per_encoder"])
    per_encoder = table(
        ["encoder", "rows", *(f"coverage {float(L):g}" for L in levels), f"mean width {top}", "point RMSE"],
        [[e, levels[top]["per_encoder"][e]["n"], *(f"{v['per_encoder'][e]['coverage']:.3f}" for v in levels.values()),
          f"{levels[top]['per_encoder'][e]['mean_width']:.3f}", f"{point['per_encoder'][e]['rmse']:.3f}"]
         for e in encoders],
    )
    per_source = table(
        ["source", "rows", f"coverage {top}", f"mean width {top}", "point RMSE"],
        [[s, f["n"], f"{f['coverage']:.3f}", f"{f['mean_width']:.3f}", f"{point['per_source'][s]['rmse']:.3f}"]
         for s, f in levels[top]["per_source"].items()],
    )
    lines = [
        "# Prediction intervals",
        "",
        f"Leave-one-source-out on `{corpus}` ({result['rows_used']} rows, {result['sources']} sources, "
        f"SHA-256 `{result['corpus_sha256'][:16]}…`), teacher prior `{result['prior']}`. For each source, the "
        "interval model is fitted and calibrated on the other sources only (its calibration is itself "
        "cross-conformal over those sources), then that source's rows are predicted. Coverage is the share of "
        "held-out rows with lower <= vmaf_score <= upper; width is upper - lower in VMAF points.",
        "",
        f"Reproduce with `{command}` (about three minutes on an idle two-core machine).",
        "",
        f"**At {top}: coverage {levels[top]['coverage']:.3f}, mean width {levels[top]['mean_width']:.3f} VMAF, "
        f"lowest per-encoder coverage {lowest(levels[top])}. The point model beside it: LOSO RMSE "
        f"{point['pooled']['rmse']:.3f} pooled, {point['mean_rmse_over_sources']:.3f} mean over sources.**",
        "",
        "## Coverage and width at each level",
        "",
        *summary,
        f"The columns on the right recompute the same held-out folds with one margin for all rows instead of "
        f"one per encoder slot (calibrate_by = `{result['calibrate_by']}` is what frgb fits and exports).",
        "",
        "## Per encoder",
        "",
        *per_encoder,
        f"## Per source, at {top}",
        "",
        *per_source,
        "## Method",
        "",
        "- Point score: the model `frgb fit` exports (teacher prior + LightGBM on its residual), unchanged.",
        "- Bounds: two LightGBM quantile models (alpha = (1 - level) / 2 and 1 - (1 - level) / 2) on the same "
        "residual, same rows (codec-blind copies included), then the conformal margin of conformalized quantile "
        "regression (Romano et al., 2019): lower = lo - margin, upper = hi + margin, clipped to [0, 100] and "
        "widened to contain the score (lower <= score <= upper on every row, in the graph with Min/Max).",
        f"- Quantile trees: their own LightGBM settings ({_settings(QUANTILE_TREES)}), not the point "
        "model's (tuned for RMSE): on this corpus they gave intervals about a quarter narrower at the same "
        "coverage (see `QUANTILE_TREES` in frgb/intervals.py for the settings compared).",
        "- Calibration: cross-conformal by source. Every row's conformity score max(lo - y, y - hi) comes from "
        "quantile models fitted without the row's source; the margin is the ceil((n + 1) level)-th smallest "
        "score. One margin per codec one-hot slot (Mondrian by encoder); the `unknown` slot takes the larger of "
        "the margins of out-of-vocabulary encoders (e.g. libaom-av1) and of the codec-blind copies, which both "
        "reach it. In the graph a row's margin is `codec @ margins`.",
        "- Why this way: one extra model family (LightGBM) instead of an ensemble, no new dependency, exact "
        "export with the point graph's parts; calibrating on other sources is what makes coverage hold on a "
        "new source, since rows of one source share their errors.",
        "- What is guaranteed and what is measured: conformal coverage is guaranteed for exchangeable rows. "
        "Sources are not exchangeable rows: a source that the others do not resemble gets less coverage "
        "(per-source table), and the figures above are measured, not proven.",
    ]
    return "\n".join(lines) + "\n"


# The tuning report.

def tuning_markdown(tuning: Tuning, corpus: Corpus, command: str, baseline: Tuning | None = None) -> str:
    """reports/tuning.md: every candidate's held-out figures and the choice."""
    def row(c: Candidate) -> list:
        p = c.params
        return [p.get("n_estimators"), p.get("learning_rate", "-"), p.get("num_leaves", "-"),
                p.get("min_child_samples", "-"), f"{c.rmse:.4f}", f"{c.plcc:.5f}", f"{c.blind_rmse:.4f}",
                f"{c.worst_harm:+.3f}", "yes" if c.eligible else "no"]

    header = ["trees", "learning rate", "leaves", "min leaf", "LOSO RMSE", "LOSO PLCC", "codec-blind RMSE",
              "worst source vs prior", "eligible"]
    ranked = sorted(tuning.candidates, key=lambda c: c.rmse)
    lines = [
        "# Choosing the default LightGBM settings",
        "",
        f"Leave-one-source-out on `{os.path.relpath(corpus.path)}` ({len(corpus)} rows, {len(set(corpus.group.tolist()))} sources), "
        f"teacher prior `{tuning.prior}`, trees fitted on the residual (with codec-blind copies of every row). "
        "Figures are means over the held-out sources. A setting is eligible only if no held-out source gets "
        f"more than {HARM_TOLERANCE} VMAF worse than the prior alone and the codec-blind vector stays at least as "
        "good as the prior; the eligible setting with the lowest mean RMSE is the default "
        "(`frgb.model.DEFAULT_TREES`).",
        "",
        "Reproduce with:",
        "",
        "```",
        command,
        "```",
        "",
        f"**Chosen**: {tuning.best.params} (LOSO RMSE {tuning.best.rmse:.4f}, PLCC {tuning.best.plcc:.5f}).",
        "",
        *table(header, [row(c) for c in ranked]),
    ]
    if baseline is not None and baseline.best is not None:
        b = baseline.best
        lines += [f"Without the prior (plain LightGBM on the score, same search), the best setting was {b.params}: "
                  f"LOSO RMSE {b.rmse:.4f}, PLCC {b.plcc:.5f}. It is the default of `frgb fit --prior none` "
                  "(`frgb.model.PLAIN_TREES`)."]
    return "\n".join(lines) + "\n"


def vectors_markdown(results: list[dict], corpus: Corpus, command: str) -> str:
    """reports/codec-vectors.md from `vector_loso`'s results, one per layout and codec guard."""
    senders = {v.name: v.sender for v in VECTORS}
    level = results[0]["level"]
    lines = [
        "# Codec vectors real callers send",
        "",
        f"Leave-one-source-out on the shipped corpus ({len(corpus)} rows, {results[0]['sources']} sources, SHA-256 "
        f"`{corpus.sha256[:16]}…`), teacher prior `{results[0]['prior']}`: for each source, frgb "
        + (f"with its {level:g} interval model (`frgb fit --intervals {level:g}`) " if level is not None else "")
        + "is fitted on the other sources, then that source's rows are scored with each codec vector below "
        "in place of their own. Bounds: under every vector no row's point score moves more than "
        f"{POINT_BOUND:g} VMAF from its score under the card vector"
        + (f", and interval coverage stays within {COVERAGE_BOUND:g} of {level:g}." if level is not None else "."),
        "",
        f"Reproduce with `{command}` (about two minutes per layout on an idle two-core machine).",
        "",
        *table(["vector", "who sends it"], [[f"`{name}`", sender] for name, sender in senders.items()]),
    ]
    for result in results:
        guard = "on" if result["codec_guard"] else "off"
        broken = [name for name, v in result["vectors"].items() if not v["holds"]]
        lines += [
            f"## {result['layout']} ({result['codec_width']} wide), codec guard {guard}",
            "",
            ("**Every bound holds.**" if not broken else f"**Out of bounds: {_list(broken)}.**"),
            "",
            *table(["vector", "mean RMSE over sources", "pooled RMSE", "pooled PLCC", "max move", "mean move",
                    *(["coverage", "mean width", "lowest encoder"] if level is not None else []), "bounds"],
                   [[f"`{name}`", _f(v["mean_rmse_over_sources"], 4), _f(v["rmse"], 4), _f(v["plcc"], 5),
                     _f(v["max_move"], 4), _f(v["mean_move"], 4),
                     *([_f(v["interval"]["coverage"], 3), _f(v["interval"]["mean_width"], 3),
                        "{1:.3f} ({0})".format(*min(v["interval"]["per_encoder"].items(), key=lambda kv: kv[1]))]
                       if level is not None else []), "hold" if v["holds"] else "**out**"]
                    for name, v in result["vectors"].items()]),
        ]
        if broken and not result["codec_guard"]:
            lines += [f"Without the codec guard every vector is scored as given. The card's default files are made "
                      f"this way (the behaviour they always had); `frgb fit --codec-guard` adds the guard "
                      f"to a {result['layout']} graph.", ""]
    if level is not None and any(r["codec_guard"] for r in results):
        lines += [
            "With the guard, `blind`, `libvmaf`, `zeros` and every encoder slot without training rows (the "
            "fork-v2 hardware slots) are one block, the codec-blind vector, and take the widest margin of the "
            "trained slots; so is `unknown` with any preset and CRF, which is how the corpus's one encoder "
            "outside the vocabulary, libaom-av1, is scored under the `card` vector (see its lowest-encoder "
            "coverage).",
            "",
        ]
    return "\n".join(lines) + "\n"
