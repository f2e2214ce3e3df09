"""Options are checked once and mean the same on every road: the API, the CLI, --resume and --ensemble."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import promptcli
from conftest import REPO, write
from helpers import sentences
from promptcli.cli import app
from promptcli.errors import RunError
from promptcli.evaluation.inputs import prepare
from promptcli.spec.options import Normalize, values
from promptcli.spec.runconfig import RunConfig

CAUSAL = str(REPO / "tests/templates/causal.yaml")
EXAMPLES = str(REPO / "examples/sst2.jsonl")


@pytest.mark.parametrize("option,value,expected", [
    ("normalize", "token", "normalize='token' is not one of: none, tokens, chars, pmi"),
    ("calibrate", "yes", "calibrate='yes' is not one of"),
    ("dtype", "float64", "dtype='float64' is not one of"),
    ("batch_size", 0, "batch_size=0"),
    ("batchsize", 8, "unknown option 'batchsize'"),
])
def test_the_api_checks_run_options(tiny, tmp_path, option, value, expected):
    """`promptcli.run(..., normalize="token")` once ran without normalisation, silently."""
    with pytest.raises(RunError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        promptcli.run(CAUSAL, EXAMPLES, tiny["gpt2"], out=tmp_path / "o", progress=False, **{option: value})
    assert not (tmp_path / "o").exists()  # refused before anything was written


def test_the_api_takes_pathlib_paths_for_every_file_option(tiny, tmp_path):
    """`promptcli.run(..., train=Path(...))` was refused ("Input should be a valid string") once options became a
    pydantic model; every file option takes a str or a Path, and run.json stores them as text."""
    from pathlib import Path

    rows = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in sentences(12)))
    result = promptcli.run(Path(CAUSAL), rows, Path(tiny["gpt2"]), out=tmp_path / "run", progress=False,
                           train=rows, shots=2, verbalizer=REPO / "verbalizers/polarity.yaml")
    stored = json.loads((tmp_path / "run/run.json").read_text())["config"]
    assert result.metrics["n"] == 12 and stored["train"] == str(rows) and stored["model"] == tiny["gpt2"]
    promptcli.tune(Path(CAUSAL), rows, Path(tiny["gpt2"]), out=tmp_path / "prompt", dev=rows, progress=False,
                   virtual_tokens=2, epochs=1, verbalizer=REPO / "verbalizers/polarity.yaml")
    assert (tmp_path / "prompt/adapter_model.safetensors").exists()


def test_cli_choices_are_the_specs_values():
    """One list of allowed values: the CLI's --normalize choices are the spec's Literal."""
    from promptcli.cli.common import Normalize as CliNormalize

    assert [m.value for m in CliNormalize] == list(values(Normalize))
    result = CliRunner().invoke(app, ["run", CAUSAL, "--data", EXAMPLES, "--normalize", "token"])
    assert result.exit_code == 2 and "token" in result.output


def interrupted_run(tiny, tmp_path, **options):
    """A 30-row run stopped by Ctrl-C after its second batch of 4; returns the data file."""
    data = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in sentences(30)))
    calls = {"n": 0}

    def stop(done, total):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        promptcli.run(CAUSAL, data, tiny["gpt2"], out=tmp_path / "cut", batch_size=4, progress=False, on_batch=stop,
                      **options)
    return data


def test_resume_takes_a_new_batch_size(tiny, tmp_path):
    """`--batch-size` with `--resume` was dropped without a word; it changes no prediction, so it is taken."""
    data = interrupted_run(tiny, tmp_path)
    whole = promptcli.run(CAUSAL, data, tiny["gpt2"], out=tmp_path / "whole", batch_size=4, progress=False)
    result = CliRunner().invoke(app, ["run", "--resume", str(tmp_path / "cut"), "--batch-size", "7", "--quiet"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "cut/run.json").read_text())
    assert record["config"]["batch_size"] == 7 and record["resumed_rows"] == 8
    resumed = [json.loads(line) for line in (tmp_path / "cut/predictions.jsonl").read_text().splitlines()]
    assert [p["pred"] for p in resumed] == [p.pred for p in whole.predictions]
    for mine, theirs in zip(resumed, whole.predictions):
        assert mine["probs"] == pytest.approx(theirs.probs, rel=1e-5)


def test_resume_refuses_an_option_that_would_change_predictions(tiny, tmp_path):
    promptcli.run(CAUSAL, EXAMPLES, tiny["gpt2"], out=tmp_path / "o", progress=False, limit=4)
    with pytest.raises(RunError, match="normalize: run has None, now 'chars'"):
        promptcli.run(resume=tmp_path / "o", normalize="chars", progress=False)


def test_ensemble_passes_every_run_option_to_its_members(tiny, tmp_path):
    """`run T1 T2 --ensemble` once ignored --verbalizer, --max-length, --label-field, --data-format,
    --skip-invalid, --scorer, --prefix-cache and the rest."""
    rows = [{"review": r["text"], "gold": r["label"]} for r in sentences(12)] + [{"review": "", "gold": "positive"}]
    data = write(tmp_path / "d.txt", "".join(json.dumps(r) + "\n" for r in rows))
    second = write(tmp_path / "second.yaml", "kind: manual\ntext: '{{ review }} In short, {{ mask }}'\n"
                   f"verbalizer: {REPO / 'verbalizers/sst2.yaml'}\n")
    first = write(tmp_path / "first.yaml", "kind: manual\ntext: 'Review: {{ review }} It was {{ mask }}'\n"
                  f"verbalizer: {REPO / 'verbalizers/sst2.yaml'}\n")
    words = write(tmp_path / "words.yaml", "labels: {negative: [bad], positive: [good]}\n")
    result = CliRunner().invoke(app, [
        "run", str(first), str(second), "--ensemble", "--data", str(data), "--model", tiny["gpt2"],
        "--verbalizer", str(words), "--label-field", "gold", "--data-format", "jsonl", "--skip-invalid",
        "--max-length", "64", "--scorer", "causal", "--no-prefix-cache", "--batch-size", "5",
        "--out", str(tmp_path / "out"), "--quiet", "--format", "json"])
    assert result.exit_code == 0, result.output
    configs = [json.loads(p.read_text())["config"] for p in (tmp_path / "out/variants").glob("*/run.json")]
    assert len(configs) == 2
    for config in configs:
        assert config["verbalizer"] == str(words) and config["label_field"] == "gold"
        assert config["data_format"] == "jsonl" and config["skip_invalid"] is True and config["max_length"] == 64
        assert config["scorer"] == "causal" and config["prefix_cache"] is False and config["batch_size"] == 5
    board = json.loads(result.stdout)["leaderboard"]
    assert any(r["variant"].startswith("ensemble") for r in board) and all(r["n"] == 12 for r in board)


def test_ensemble_refuses_a_soft_prompt(tiny, tmp_path):
    result = CliRunner().invoke(app, ["run", CAUSAL, str(REPO / "templates/sst2/causal.yaml"), "--ensemble",
                                      "--data", EXAMPLES, "--model", tiny["gpt2"], "--soft-prompt", str(tmp_path)])
    assert result.exit_code == 2 and "one template" in result.output


def test_gold_labels_are_looked_up_not_rebuilt(tiny):
    """Generation looks up each example's gold label; `gold` was rebuilt over every row at each lookup."""
    prepared = prepare(RunConfig(template=CAUSAL, data=EXAMPLES, model=tiny["gpt2"]))
    assert prepared.gold is prepared.gold and prepared.fields is prepared.fields
    assert len(prepared.gold) == len(prepared.encoded)


@pytest.mark.parametrize("option,value", [("optimizer", "rmsprop"), ("schedule", "exponential"),
                                          ("precision", "fp8"), ("init", "zeros")])
def test_tune_refuses_unknown_choices(tiny, tmp_path, option, value):
    """`tune --optimizer sgd` trained with AdamW, `--schedule cosine` was linear, `--precision fp8` was fp32."""
    with pytest.raises(RunError, match=f"{option}='{value}' is not one of"):
        promptcli.tune(CAUSAL, EXAMPLES, tiny["gpt2"], out=tmp_path / "p", progress=False, **{option: value})
    result = CliRunner().invoke(app, ["tune", CAUSAL, "--train", EXAMPLES, f"--{option}", value])
    assert result.exit_code == 2 and value in result.output


def test_resume_keeps_the_runs_choice_of_score_cache(tiny, tmp_path):
    """`--no-cache` was forgotten by `--resume` (the resumed part wrote its scores to the cache)."""
    interrupted_run(tiny, tmp_path, cache=False)
    result = CliRunner().invoke(app, ["run", "--resume", str(tmp_path / "cut"), "--quiet"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "cut/run.json").read_text())
    assert record["score_cache"] is False and "cache" not in record  # no cache opened, nothing written to one


@pytest.mark.parametrize("options,message", [
    ({"device": "meta"}, "device='meta' is not one of: auto, cpu, cuda, cuda:N, mps"),
    ({"device": "cuda"} if not __import__("torch").cuda.is_available() else {"device": "cuda:99"}, "cuda"),
    ({"scorer": "causal", "template": str(REPO / "templates/sst2/manual.yaml"), "model": "bert"}, "is a masked LM"),
])
def test_options_that_cannot_work_are_refused_before_anything_is_written(tiny, tmp_path, options, message):
    """A bad --device once failed after the folder and its run-store record existed, leaving both stuck."""
    options = dict(options)
    template = options.pop("template", CAUSAL)
    model = tiny[options.pop("model", "gpt2")]
    with pytest.raises(promptcli.PromptcliError, match=message):
        promptcli.run(template, EXAMPLES, model, out=tmp_path / "o", progress=False, **options)
    assert not (tmp_path / "o").exists()


def test_out_naming_a_file_and_resuming_a_finished_run(tiny, tmp_path, capsys):
    taken = write(tmp_path / "taken", "")
    with pytest.raises(RunError, match="the output folder is a file"):
        promptcli.run(CAUSAL, EXAMPLES, tiny["gpt2"], out=taken, progress=False)
    done = promptcli.run(CAUSAL, EXAMPLES, tiny["gpt2"], out=tmp_path / "o", progress=False, limit=4)
    before = {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()}
    again = promptcli.run(resume=tmp_path / "o", progress=False)
    assert "holds a finished run; nothing to resume" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "o").iterdir()} == before  # nothing rewritten
    assert again.metrics == done.metrics
