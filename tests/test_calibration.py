"""Contextual calibration, domain-conditional PMI, the score cache and the run store."""
from __future__ import annotations

import json

import pytest
import torch
import yaml
from typer.testing import CliRunner

import promptcli
import promptcli.evaluation.calibration as calibration
from conftest import EXAMPLE_ROWS, REPO, write
from promptcli.cli import app
from promptcli.errors import RunError
from promptcli.evaluation.calibration import content_free_inputs, default_premise
from promptcli.evaluation.inputs import prepare
from promptcli.models.weights import load_model
from promptcli.scoring import make_scorer
from promptcli.scoring.labels import LabelDistribution, calibrate
from promptcli.spec.runconfig import RunConfig, ScoringConfig

DATA = str(REPO / "examples/sst2.jsonl")
MANUAL = str(REPO / "templates/sst2/manual.yaml")


def test_calibration_divides_by_the_content_free_distribution():
    # p = (.6, .4), p_cf = (.75, .25) → p / p_cf = (.8, 1.6) → (1/3, 2/3)
    out = calibrate(torch.tensor([[0.6, 0.4]]).log(), torch.tensor([0.75, 0.25])).exp()
    torch.testing.assert_close(out, torch.tensor([[1 / 3, 2 / 3]]))
    # a content-free distribution that is uniform changes nothing
    p = torch.tensor([[0.2, 0.5, 0.3]])
    torch.testing.assert_close(calibrate(p.log(), torch.full((3,), 1 / 3)).exp(), p)


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_calibrated_run_equals_the_plain_run_divided_by_p_cf(tiny, tmp_path, name):
    template = MANUAL if name == "bert" else str(REPO / "tests/templates/causal.yaml")
    plain = promptcli.run(template, DATA, tiny[name], out=tmp_path / "a", progress=False, cache=False)
    calibrated = promptcli.run(template, DATA, tiny[name], out=tmp_path / "b", progress=False, cache=False,
                               calibrate="contextual")
    p_cf = calibrated.record.calibration["contextual"]
    # p_cf is the mean distribution of the content-free inputs, scored on their own
    prepared = prepare(RunConfig(template=template, data=DATA, model=tiny[name]))
    scorer = make_scorer(load_model(prepared.info, device="cpu", dtype="float32"), ScoringConfig())
    inputs = content_free_inputs(prepared)  # the template's: "N/A", "", "{mask_token}"
    assert len(inputs) == (3 if name == "bert" else 2)  # the mask token only where there is one
    with torch.inference_mode():
        expected = LabelDistribution(prepared.verbalizer)(scorer.word_scores(inputs)).exp().mean(0)
    assert list(p_cf.values()) == pytest.approx(expected.tolist(), abs=1e-5)
    for a, b in zip(plain.predictions, calibrated.predictions):
        ratio = {label: a.probs[label] / p_cf[label] for label in a.probs}
        total = sum(ratio.values())
        assert b.probs == pytest.approx({k: v / total for k, v in ratio.items()}, abs=1e-4)


def test_pmi_equals_brute_force(tiny, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    template = str(REPO / "tests/templates/causal.yaml")
    result = promptcli.run(template, DATA, tiny["gpt2"], out=tmp_path / "o", progress=False, normalize="pmi",
                           limit=8, cache=False)
    tok = AutoTokenizer.from_pretrained(tiny["gpt2"])
    model = AutoModelForCausalLM.from_pretrained(tiny["gpt2"]).eval()

    def loglik(context: str, word: str) -> float:
        ids, full = tok(context)["input_ids"], tok(context + word)["input_ids"]
        with torch.inference_mode():
            lp = model(torch.tensor([full])).logits[0].log_softmax(-1)
        return sum(float(lp[i - 1, full[i]]) for i in range(len(ids), len(full)))

    premise = "All in all, the movie was"  # the template's words between the review and the slot
    rows = [json.loads(line) for line in open(DATA)]
    for p in result.predictions:
        context = f"Review: {rows[p.index]['text']}\nAll in all, the movie was"
        scores = torch.tensor([loglik(context, f" {w}") - loglik(premise, f" {w}") for w in ("terrible", "great")])
        assert list(p.probs.values()) == pytest.approx(scores.softmax(-1).tolist(), abs=1e-4)


def test_default_premise_is_the_templates_own_words(tiny):
    prepared = prepare(RunConfig(template=MANUAL, data=DATA, model=tiny["bert"], limit=1))
    assert default_premise(prepared) == "It was "


def test_content_free_and_premise_terms_are_computed_once(tiny, tmp_path, monkeypatch):
    calls = {"content_free": 0, "premise": 0}
    real_cf, real_premise = calibration.content_free_inputs, calibration.premise_input

    def counted(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(calibration, "content_free_inputs", counted("content_free", real_cf))
    monkeypatch.setattr(calibration, "premise_input", counted("premise", real_premise))
    result = promptcli.run(str(REPO / "tests/templates/causal.yaml"), DATA, tiny["gpt2"], out=tmp_path / "o",
                           progress=False, calibrate="contextual", normalize="pmi", batch_size=4, cache=False)
    assert calls == {"content_free": 1, "premise": 1}
    # every example + 2 content-free inputs + 1 premise, plus at most one shared prefix
    assert EXAMPLE_ROWS + 3 <= result.record.work["forward_passes"] <= EXAMPLE_ROWS + 4


def test_pmi_and_calibration_are_refused_where_they_cannot_apply(tiny, tmp_path):
    with pytest.raises(RunError, match="pmi.*causal"):
        promptcli.run(MANUAL, DATA, tiny["bert"], out=tmp_path / "a", progress=False, normalize="pmi")
    cot = write(tmp_path / "cot.yaml", yaml.safe_dump({"kind": "cot", "text": "{{ text }}", "answer_pattern": "(\\w+)",
                                                       "verbalizer": "../" * 0 + str(REPO / "verbalizers/sst2.yaml")}))
    with pytest.raises(RunError, match="not to kind 'cot'"):
        promptcli.run(str(cot), DATA, tiny["gpt2"], out=tmp_path / "b", progress=False, calibrate="contextual")


def test_score_cache_hits_skip_the_model_and_change_nothing(tiny, tmp_path):
    first = promptcli.run(MANUAL, DATA, tiny["roberta"], out=tmp_path / "a", progress=False, calibrate="contextual")
    second = promptcli.run(MANUAL, DATA, tiny["roberta"], out=tmp_path / "b", progress=False, calibrate="contextual")
    n = EXAMPLE_ROWS + 3  # every example + 3 content-free inputs
    assert first.record.cache == {"hits": 0, "misses": n, "writes": n, "corrupt": 0}
    assert second.record.cache == {"hits": n, "misses": 0, "writes": 0, "corrupt": 0}
    assert second.record.work["model_calls"] == 0 and second.record.timing["load_model_s"] == 0
    assert (tmp_path / "a/predictions.jsonl").read_bytes() == (tmp_path / "b/predictions.jsonl").read_bytes()
    # scores do not depend on the batch size, so another batching reuses them too
    other = promptcli.run(MANUAL, DATA, tiny["roberta"], out=tmp_path / "c", progress=False, batch_size=7)
    assert other.record.cache["misses"] == 0
    changed = promptcli.run(MANUAL, DATA, tiny["roberta"], out=tmp_path / "e", progress=False,
                            verbalizer=str(REPO / "verbalizers/sst2-words.yaml"))
    assert changed.record.cache["hits"] == 0  # other label words: other keys
    assert second.summary()["cached"] == 1.0 and first.summary()["cached"] == 0.0  # `--format json` says so
    off = promptcli.run(MANUAL, DATA, tiny["roberta"], out=tmp_path / "d", progress=False, cache=False)
    assert off.record.cache is None and off.record.work["model_calls"] > 0


def test_the_cache_key_holds_the_resolved_precision_and_device(tiny, tmp_path, monkeypatch):
    """Keyed on the literal `dtype: auto` and no device, CPU float32 scores would be served to a GPU run,
    where auto means bfloat16."""
    import promptcli.evaluation.predict as predict

    first = promptcli.run(MANUAL, DATA, tiny["roberta"], out=tmp_path / "a", progress=False)
    explicit = promptcli.run(MANUAL, DATA, tiny["roberta"], out=tmp_path / "b", progress=False, dtype="float32")
    assert explicit.record.cache["misses"] == 0  # auto on a CPU is float32: the same scores
    half = promptcli.run(MANUAL, DATA, tiny["roberta"], out=tmp_path / "c", progress=False, dtype="bfloat16")
    assert half.record.cache["hits"] == 0
    assert first.predictions and half.predictions

    prepared = prepare(RunConfig(template=MANUAL, data=DATA, model=tiny["roberta"]))
    on_cpu = predict.ScorePredictor(prepared, load=None).key_options
    monkeypatch.setattr(predict, "resolve_device", lambda device: torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    on_gpu = predict.ScorePredictor(prepared, load=None).key_options
    assert (on_cpu["device"], on_cpu["dtype"]) == ("cpu", "float32")
    assert (on_gpu["device"], on_gpu["dtype"]) == ("cuda", "bfloat16")


def test_a_corrupted_cache_is_reported_and_rebuilt(tiny, tmp_path):
    home = tmp_path / "promptcli-home"
    home.mkdir(exist_ok=True)
    (home / "scores.sqlite").write_bytes(b"this is not a database" * 100)
    result = CliRunner().invoke(app, ["run", MANUAL, "--data", DATA, "--model", tiny["bert"], "--out",
                                      str(tmp_path / "o"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "warning" in result.stderr and "scores.sqlite" in result.stderr
    assert list(home.glob("scores.sqlite.corrupt-*"))  # kept aside, never trusted
    assert json.loads((tmp_path / "o/run.json").read_text())["cache"]["writes"] == EXAMPLE_ROWS


def test_runs_are_recorded_and_can_be_listed_shown_and_compared(tiny, tmp_path):
    a = promptcli.run(MANUAL, DATA, tiny["bert"], out=tmp_path / "a", progress=False)
    b = promptcli.run(str(REPO / "templates/sst2/manual-words.yaml"), DATA, tiny["bert"], out=tmp_path / "b",
                      progress=False)
    runner = CliRunner()
    listed = json.loads(runner.invoke(app, ["runs", "list", "--format", "json"]).stdout)
    assert [(r["id"], r["name"], r["status"]) for r in listed[:2]] == [
        (b.record.store_id, "sst2-manual-words", "finished"), (a.record.store_id, "sst2-manual", "finished")]
    assert runner.invoke(app, ["runs", "list"]).exit_code == 0
    shown = json.loads(runner.invoke(app, ["runs", "show", str(a.record.store_id)]).stdout)
    assert shown["metrics"]["accuracy"] == a.accuracy and shown["record"]["hashes"] == a.record.hashes
    compared = runner.invoke(app, ["runs", "compare", str(a.record.store_id), str(b.record.store_id)])
    assert compared.exit_code == 0 and f"McNemar's exact test on {EXAMPLE_ROWS} shared examples" in compared.stdout
    assert "hash.verbalizer" in compared.stdout  # what differs is shown
    missing = runner.invoke(app, ["runs", "show", "999"])
    assert missing.exit_code == 6 and "999" in missing.stderr


def test_an_extreme_content_free_distribution_is_shown_and_warned(tiny, tmp_path, monkeypatch, capsys):
    """A label the content-free inputs almost never get (<1%) is inflated by calibration: say so."""
    from rich.console import Console

    from promptcli.report.terminal import summary_table

    result = promptcli.run(str(REPO / "tests/templates/causal.yaml"), DATA, tiny["gpt2"], out=tmp_path / "a",
                           progress=False, calibrate="contextual", cache=False)
    p_cf = result.record.calibration["contextual"]
    console = Console(record=True, width=200)
    console.print(summary_table(result))
    text = console.export_text()
    assert "content-free p (calibration)" in text and f"negative {100 * p_cf['negative']:.2f}" in text
    quiet = "dividing by so small a probability" not in capsys.readouterr().err
    assert quiet == (min(p_cf.values()) >= 0.01)

    monkeypatch.setattr(calibration, "EXTREME", 1.0)  # every label is now "extreme"
    promptcli.run(str(REPO / "tests/templates/causal.yaml"), DATA, tiny["gpt2"], out=tmp_path / "b",
                  progress=False, calibrate="contextual", cache=False)
    err = capsys.readouterr().err
    assert "contextual calibration: the content-free inputs give negative" in err and "--calibrate none" in err
