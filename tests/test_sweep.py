"""Sweeps: the cross product, skipped variants, files, resume, seeds, ensembles, the leaderboard."""
from __future__ import annotations

import csv
import json
from html.parser import HTMLParser

import pytest
import yaml
from typer.testing import CliRunner

import promptcli
import promptcli.sweeps.runner as sweep_module
from conftest import REPO, write
from promptcli.cli import app
from promptcli.sweeps.ensemble import ensemble
from promptcli.evaluation.leaderboard import Scored, leaderboard
from promptcli.evaluation.outputs import Prediction, read_predictions
from promptcli.evaluation.stats import mcnemar_exact
from promptcli.spec.sweepfile import load_sweep
from promptcli.sweeps.runner import run_sweep

DATA = str(REPO / "examples/sst2.jsonl")
TEMPLATES = [str(REPO / "templates/sst2" / t) for t in ("manual.yaml", "manual-words.yaml", "cot.yaml")]


def sweep_file(tmp_path, tiny, **extra) -> str:
    spec = {"name": "test", "data": DATA, "templates": TEMPLATES, "models": [tiny["bert"], tiny["gpt2"]],
            "calibrate": ["none", "contextual"], "ensemble": True, "options": {"batch_size": 16}, **extra}
    return str(write(tmp_path / "sweep.yaml", yaml.safe_dump(spec)))


class Figures(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = []

    def handle_starttag(self, tag, attrs):
        if tag == "figure":
            self.ids.append(dict(attrs).get("id"))


def test_sweep_runs_the_cross_product_and_writes_the_reports(tiny, tmp_path):
    spec = load_sweep(sweep_file(tmp_path, tiny))
    state = run_sweep(spec, tmp_path / "out", progress=False).to_dict()
    variants = state["variants"].values()
    assert len(variants) == 3 * 2 * 2
    skipped = {v["name"]: v["reason"] for v in variants if v["status"] == "skipped"}
    assert len(skipped) == 3  # cot on the masked LM (×2), cot with calibration
    assert sum("needs a causal model" in r for r in skipped.values()) == 2
    assert sum("not to kind 'cot'" in r for r in skipped.values()) == 1
    rows = state["leaderboard"]
    assert len(rows) == 9 + 4  # finished variants + one ensemble per model × calibration
    assert sum(r["variant"].startswith("ensemble") for r in rows) == 4
    values = [r["value"] for r in rows]
    assert values == sorted(values, reverse=True) and rows[0]["p_value"] is None
    assert all(r["low"] <= r["value"] <= r["high"] for r in rows)
    out = tmp_path / "out"
    with open(out / "leaderboard.csv") as handle:
        assert [r["variant"] for r in csv.DictReader(handle)] == [r["variant"] for r in rows]
    assert json.loads((out / "leaderboard.json").read_text()) == rows
    assert "| 1 |" in (out / "report.md").read_text()
    figures = Figures()
    figures.feed((out / "report.html").read_text())
    assert {"leaderboard-chart", "confusion-0", "confusion-1", "reliability-0", "reliability-1"} <= set(figures.ids)


def test_models_load_once_per_sweep(tiny, tmp_path, monkeypatch):
    import promptcli.evaluation.runner as runner_module

    loads = []
    real = runner_module.load_model

    def counted(info, **kwargs):
        loads.append(info.name)
        return real(info, **kwargs)

    monkeypatch.setattr(runner_module, "load_model", counted)
    spec = load_sweep(sweep_file(tmp_path, tiny, templates=TEMPLATES[:2], calibrate=["none"]))
    state = run_sweep(spec, tmp_path / "out", progress=False, cache=False)
    assert sum(v.status == "finished" for v in state.variants.values()) == 4  # 2 templates × 2 models
    assert loads == [tiny["bert"], tiny["gpt2"]]  # each model once, in the sweep's order


def test_an_interrupted_sweep_resumes_without_recomputing(tiny, tmp_path, monkeypatch):
    spec = load_sweep(sweep_file(tmp_path, tiny, templates=TEMPLATES[:2], calibrate=["none"]))
    real_run = sweep_module.run
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_run(*args, **kwargs)

    monkeypatch.setattr(sweep_module, "run", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, tmp_path / "out", progress=False, cache=False)
    finished = sorted((tmp_path / "out/variants").glob("*/predictions.jsonl"))
    assert len(finished) == 2
    stamps = [p.stat().st_mtime_ns for p in finished]
    calls["n"] = 100  # no more interruptions
    state = run_sweep(spec, tmp_path / "out", progress=False, cache=False).to_dict()
    assert calls["n"] == 100 + 2  # only the two unfinished variants ran
    assert [p.stat().st_mtime_ns for p in finished] == stamps
    assert len(state["leaderboard"]) == 4 + 2


def test_a_different_sweep_in_the_same_folder_is_refused(tiny, tmp_path):
    spec = load_sweep(sweep_file(tmp_path, tiny, templates=TEMPLATES[:1], calibrate=["none"], models=[tiny["bert"]]))
    run_sweep(spec, tmp_path / "out", progress=False)
    other = spec.model_copy(update={"metric": "log_loss"})
    with pytest.raises(Exception, match="different sweep"):
        run_sweep(other, tmp_path / "out", progress=False)


def test_seeds_are_summarised_as_mean_and_std_via_the_cli(tiny, tmp_path):
    result = CliRunner().invoke(app, [
        "sweep", TEMPLATES[0], "--data", DATA, "--model", tiny["gpt2"], "--train", DATA, "--shots", "0,2",
        "--seeds", "1,2,3", "--out", str(tmp_path / "out"), "--format", "json", "--quiet"])
    assert result.exit_code == 0, result.output
    rows = {r["variant"]: r for r in json.loads(result.stdout)["leaderboard"]}
    assert set(rows) == {"manual · shots=0", "manual · shots=2"}
    few = rows["manual · shots=2"]
    accuracies = []
    for folder in sorted((tmp_path / "out/variants").glob("manual-*shots-2*")):
        preds = read_predictions(folder / "predictions.jsonl")
        accuracies.append(sum(p.pred == p.gold for p in preds) / len(preds))
    mean = sum(accuracies) / 3
    std = (sum((a - mean) ** 2 for a in accuracies) / 2) ** 0.5
    assert few["seeds"] == 3 and few["value"] == pytest.approx(mean) and few["std"] == pytest.approx(std)
    assert rows["manual · shots=0"]["std"] == pytest.approx(0.0, abs=1e-12)  # zero-shot: the seed changes nothing


def _preds(correct: list[bool], confidence: float = 0.9) -> list[Prediction]:
    out = []
    for i, ok in enumerate(correct):
        gold = "positive" if i % 2 else "negative"
        pred = gold if ok else ("negative" if gold == "positive" else "positive")
        probs = {pred: confidence, ("negative" if pred == "positive" else "positive"): 1 - confidence}
        out.append(Prediction(index=i, gold=gold, pred=pred, probs=probs, truncated=False))
    return out


def test_leaderboard_ranks_and_tests_against_the_best():
    labels = ["negative", "positive"]
    a = [True] * 30 + [False] * 10  # 75%
    b = [True] * 22 + [False] * 18  # 55%
    rows = leaderboard([Scored("b", "b", labels, _preds(b), 10.0), Scored("a", "a", labels, _preds(a), 20.0)])
    assert [r.variant for r in rows] == ["a", "b"] and rows[0].value == 0.75
    assert rows[1].p_value == pytest.approx(mcnemar_exact(a, b).p_value) and rows[1].test == "mcnemar"
    by_loss = leaderboard([Scored("sure", "sure", labels, _preds(a, 0.99), 1.0),
                           Scored("unsure", "unsure", labels, _preds(a, 0.6), 1.0)], metric="log_loss")
    assert by_loss[0].metric == "log_loss" and by_loss[0].value < by_loss[1].value  # lower is better


def test_ensemble_is_the_mean_of_label_log_probs():
    labels = ["negative", "positive"]
    one = [Prediction(0, "positive", "positive", {"negative": 0.2, "positive": 0.8}, False)]
    two = [Prediction(0, "positive", "negative", {"negative": 0.6, "positive": 0.4}, False)]
    # mean log-probs: neg (ln .2 + ln .6)/2, pos (ln .8 + ln .4)/2 → softmax ∝ √(.12), √(.32)
    (out,) = ensemble([one, two], labels)
    assert out.probs["positive"] == pytest.approx(0.32 ** 0.5 / (0.12 ** 0.5 + 0.32 ** 0.5), abs=1e-6)
    (weighted,) = ensemble([one, two], labels, weights=[3, 1])
    assert weighted.probs["positive"] > out.probs["positive"]


def test_run_with_several_templates_and_ensemble(tiny, tmp_path):
    result = CliRunner().invoke(app, ["run", TEMPLATES[0], TEMPLATES[1], "--ensemble", "--data", DATA, "--model",
                                      tiny["bert"], "--out", str(tmp_path / "o"), "--format", "json", "--quiet"])
    assert result.exit_code == 0, result.output
    names = [r["variant"] for r in json.loads(result.stdout)["leaderboard"]]
    assert sorted(names) == ["ensemble", "manual", "manual-words"]
    refused = CliRunner().invoke(app, ["run", TEMPLATES[0], TEMPLATES[1], "--data", DATA, "--model", tiny["bert"]])
    assert refused.exit_code == 2 and "--ensemble" in refused.output


def test_a_repeated_sweep_reads_the_score_cache_and_says_so(tiny, tmp_path):
    spec = load_sweep(sweep_file(tmp_path, tiny, templates=TEMPLATES[:2], models=[tiny["bert"]],
                                    calibrate=["none"], ensemble=False))
    first = run_sweep(spec, tmp_path / "first", progress=False).to_dict()["leaderboard"]
    again = run_sweep(spec, tmp_path / "again", progress=False).to_dict()["leaderboard"]
    assert [r["cached"] for r in first] == [0.0, 0.0] and [r["cached"] for r in again] == [1.0, 1.0]
    assert [r["value"] for r in again] == [r["value"] for r in first]
    assert (tmp_path / "again/report.md").read_text().count("(cached)") == 2


def test_templates_sharing_a_file_name_stay_separate_rows(tiny, tmp_path):
    """Two `causal.yaml` in different folders once merged into one row (averaged like seeds)."""
    text = {"a": "'Review: {{ text }} It was {{ mask }}'", "b": "'{{ text }} All in all it was {{ mask }}'"}
    paths = [write(tmp_path / folder / "causal.yaml", f"kind: manual\ntext: {body}\n"
                   f"verbalizer: {REPO / 'verbalizers/sst2.yaml'}\n") for folder, body in text.items()]
    result = CliRunner().invoke(app, ["sweep", *map(str, paths), "--data", DATA, "--model", tiny["gpt2"],
                                      "--out", str(tmp_path / "out"), "--format", "json", "--quiet"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["leaderboard"]
    assert sorted(r["variant"] for r in rows) == ["a/causal", "b/causal"]
    assert all(r["seeds"] == 1 for r in rows)


def test_a_sweep_that_runs_nothing_fails_and_strict_fails_a_partial_one(tiny, tmp_path):
    """A sweep whose variants were all skipped once exited 0 with an empty leaderboard."""
    cot = write(tmp_path / "cot.yaml", f"kind: cot\ntext: '{{{{ text }}}}'\nanswer_pattern: '(\\\\w+)'\n"
                f"verbalizer: {REPO / 'verbalizers/sst2.yaml'}\n")
    nothing = CliRunner().invoke(app, ["sweep", str(cot), "--data", DATA, "--model", tiny["bert"], "--out",
                                       str(tmp_path / "a"), "--quiet"])
    assert nothing.exit_code == 5 and "no variant could run" in nothing.stderr and "needs a causal model" in nothing.stderr
    partial = CliRunner().invoke(app, ["sweep", str(cot), str(REPO / "templates/sst2/manual.yaml"), "--data", DATA,
                                       "--model", tiny["bert"], "--out", str(tmp_path / "b"), "--quiet", "--strict"])
    assert partial.exit_code == 5 and "1 of 2 variants were skipped (--strict)" in partial.stderr
    assert (tmp_path / "b/report.md").exists()  # the report is still written


@pytest.mark.parametrize("args,message", [
    (["--shots", "-1"], "shots"),
    (["--show", "nonexistent"], "show: no variant is named 'nonexistent'"),
    (["--model", "no/such-folder"], "cannot load model"),
])
def test_a_sweep_that_cannot_work_stops_before_writing_anything(tiny, tmp_path, args, message):
    model = [] if "--model" in args else ["--model", tiny["bert"]]
    result = CliRunner().invoke(app, ["sweep", str(REPO / "templates/sst2/manual.yaml"), "--data", DATA, *model,
                                      "--out", str(tmp_path / "o"), "--quiet", *args])
    assert result.exit_code != 0 and message in result.stderr and "internal error" not in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("correction,tied", [("holm", {"best", "six", "six-b"}), ("bh", {"best"}),
                                             ("none", {"best"})])
def test_leaderboard_adjusts_for_many_comparisons_and_names_the_rows_tied_with_the_best(correction, tied):
    from promptcli.evaluation import stats

    labels = ["negative", "positive"]

    def wrong(rows: range) -> list[bool]:
        return [i not in rows for i in range(40)]

    # McNemar against the best, which is right everywhere: d discordant rows give p = 2^(1 - d)
    variants = {"best": wrong(range(0)), "six": wrong(range(0, 6)), "six-b": wrong(range(6, 12)),
                "seven": wrong(range(0, 7)), "ten": wrong(range(0, 10))}
    rows = leaderboard([Scored(n, n, labels, _preds(c), 1.0) for n, c in variants.items()], correction=correction)
    raw = {r.variant: r.p_value for r in rows if r.p_value is not None}
    assert raw == pytest.approx({"six": 2 ** -5, "six-b": 2 ** -5, "seven": 2 ** -6, "ten": 2 ** -9})
    adjust = {"holm": stats.holm, "bh": stats.benjamini_hochberg, "none": list}[correction]
    assert {r.variant: r.p_adjusted for r in rows[1:]} == pytest.approx(dict(zip(raw, adjust(list(raw.values())))))
    assert {r.variant for r in rows if r.tied} == tied  # every raw p is below 0.05; Holm keeps "six" tied
    assert all(r.significant == (not r.tied) for r in rows[1:]) and rows[0].significant is None


@pytest.mark.parametrize("ensemble_only", [False, True])
def test_report_on_evaluates_the_chosen_variant_once_on_rows_the_ranking_never_saw(tiny, tmp_path, ensemble_only):
    rows = [json.loads(line) for line in open(DATA)]
    select = write(tmp_path / "select.jsonl", "".join(json.dumps(r) + "\n" for r in rows[:20]))
    report = write(tmp_path / "report.jsonl", "".join(json.dumps(r) + "\n" for r in rows[20:36]))
    spec = {"data": str(select), "report_on": str(report), "templates": TEMPLATES[:2], "models": [tiny["gpt2"]],
            "calibrate": ["none", "contextual"], "ensemble": ensemble_only, "options": {"batch_size": 8}}
    state = sweep_module.sweep(spec, tmp_path / "out", progress=False)
    best, chosen = state.leaderboard[0], state.report
    assert best.n == 20 and chosen["variant"] == best.variant and chosen["selection"]["value"] == best.value
    assert chosen["report"]["n"] == 16 and chosen["reported_on"] == str(report)
    # the report number is an ordinary run of the chosen variant on the report rows
    variant = next(v for v in state.variants.values() if v.name == best.variant) if not best.variant.startswith(
        "ensemble") else None
    if variant is not None:
        again = promptcli.run(variant.variant.template, report, tiny["gpt2"], calibrate=variant.variant.calibrate,
                              out=tmp_path / "again", progress=False, cache=False, store=False)
        assert chosen["report"]["value"] == pytest.approx(again.accuracy)
    # an ensemble is evaluated with its members: both templates ran on the report rows
    assert len(list((tmp_path / "out/report-on").iterdir())) == (1 if variant is not None else 2)
    text = (tmp_path / "out/report.md").read_text()
    assert "Selected on one split, reported on another" in text and "evaluated once" in text
    assert json.loads((tmp_path / "out/sweep.json").read_text())["report"] == chosen
    with pytest.raises(promptcli.PromptcliError, match="report_on is the selection data"):
        sweep_module.sweep({**spec, "report_on": str(select)}, tmp_path / "same", progress=False)


def test_adaptive_sweep_drops_clear_losers_early_and_keeps_the_true_best(tiny, tmp_path):
    """A constructed race: gold labels are what the 'straight' verbalizer predicts, so it is right on every
    row and its mirror image ('swapped') wrong on every row; a third variant sits in between."""
    from helpers import sentences

    template = write(tmp_path / "t.yaml", yaml.safe_dump({"kind": "manual", "text": "{{ text }} It was {{ mask }}",
                                                          "verbalizer": "straight.yaml"}))
    for name, labels in (("straight", {"negative": ["bad"], "positive": ["good"]}),
                         ("swapped", {"negative": ["good"], "positive": ["bad"]}),
                         ("other", {"negative": ["boring"], "positive": ["fun"]})):
        write(tmp_path / f"{name}.yaml", yaml.safe_dump({"labels": labels}))
    rows = sentences(90, seed=5)
    first = promptcli.run(template, rows, tiny["gpt2"], out=tmp_path / "gold", progress=False, cache=False,
                          store=False)
    by_index = {p.index: p.pred for p in first.predictions}
    data = write(tmp_path / "data.jsonl", "".join(json.dumps({**r, "label": by_index[i]}) + "\n"
                                                  for i, r in enumerate(rows)))
    spec = {"data": str(data), "templates": [str(template)], "models": [tiny["gpt2"]],
            "verbalizers": [str(tmp_path / f"{n}.yaml") for n in ("straight", "swapped", "other")]}
    full = sweep_module.sweep(spec, tmp_path / "full", progress=False)
    adaptive = sweep_module.sweep({**spec, "adaptive": 30}, tmp_path / "adaptive", progress=False)
    tied = [{r.variant for r in s.leaderboard if r.tied} for s in (full, adaptive)]
    assert tied[0] == tied[1] == {"t · verbalizer=straight"} and full.leaderboard[0].value == 1.0
    race = adaptive.race
    assert race["slice_rows"] == 30 and "t · verbalizer=swapped" in race["dropped"]
    assert race["full"] == 90 * 3 and race["computed"] == 30 * 3 + 60 * (3 - len(race["dropped"]))
    assert race["saved"] == 60 * len(race["dropped"]) > 0
    statuses = {v.name: v.status for v in adaptive.variants.values()}
    assert statuses["t · verbalizer=swapped"] == "dropped" and statuses["t · verbalizer=straight"] == "finished"
    assert not any("swapped" in p.name for p in (tmp_path / "adaptive/variants").iterdir())
    assert "## Adaptive" in (tmp_path / "adaptive/report.md").read_text()
    with pytest.raises(promptcli.PromptcliError, match="adaptive sweeps choose their own"):
        sweep_module.sweep({**spec, "adaptive": 30, "options": {"limit": 50}}, tmp_path / "bad", progress=False)

    # within a subsample: the slice is drawn from the subsample's rows, and the work counts those rows
    inside = sweep_module.sweep({**spec, "adaptive": 20, "options": {"subsample": 60}}, tmp_path / "inside",
                                progress=False)
    assert inside.race["full"] == 60 * 3 and inside.race["slice_rows"] == 20
    def indices(folder):
        return {json.loads(line)["index"] for line in (folder / "predictions.jsonl").read_text().splitlines()}
    (sliced,) = [indices(f) for f in (tmp_path / "inside/slice").iterdir() if "straight" in f.name]
    (whole,) = [indices(f) for f in (tmp_path / "inside/variants").iterdir() if "straight" in f.name]
    assert len(sliced) == 20 and len(whole) == 60 and sliced < whole
