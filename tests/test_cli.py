"""`promptcli run / render / validate` end to end on tiny local models."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import promptcli
from conftest import EXAMPLE_ROWS, REPO, write
from helpers import sentences
from promptcli.cli import app

RUNNER = CliRunner()
MANUAL = str(REPO / "templates/sst2/manual.yaml")
CAUSAL = str(REPO / "tests/templates/causal.yaml")
EXAMPLES = str(REPO / "examples/sst2.jsonl")


def cli(*args: str):
    result = RUNNER.invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output + result.stderr
    return result


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("template,model", [(MANUAL, "roberta"), (MANUAL, "bert"), (CAUSAL, "gpt2"),
                                            (CAUSAL, "llama")])
def test_run_writes_predictions_metrics_and_run_record(tiny, tmp_path, template, model):
    out = tmp_path / "out"
    result = cli("run", template, "--data", EXAMPLES, "--model", tiny[model], "--out", out, "--format", "json",
                 "--quiet")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {"n", "accuracy", "macro_f1", "per_class", "confusion", "examples_per_s"} <= set(summary)
    predictions = read_lines(out / "predictions.jsonl")
    assert [p["index"] for p in predictions] == list(range(EXAMPLE_ROWS))
    for p in predictions:
        assert set(p) == {"index", "gold", "pred", "probs", "truncated"}
        assert set(p["probs"]) == {"negative", "positive"} and abs(sum(p["probs"].values()) - 1) < 1e-4
        assert p["pred"] == max(p["probs"], key=p["probs"].get)
    accuracy = sum(p["pred"] == p["gold"] for p in predictions) / len(predictions)
    assert summary["accuracy"] == pytest.approx(accuracy)
    assert json.loads((out / "metrics.json").read_text())["confusion"]["matrix"] == summary["confusion"]["matrix"]
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "finished" and record["scorer"] == ("mlm" if model in ("roberta", "bert") else "causal")
    assert set(record["hashes"]) == {"template", "verbalizer", "data", "model_config", "model"}
    assert record["timing"]["examples_per_s"] > 0 and record["memory"]["peak_rss_mb"] > 0
    # single-token words, slot at the end: one pass per example (+ one for a prefix all prompts share)
    shared = 1 / EXAMPLE_ROWS if record["work"]["shared_prefix_tokens"] else 0
    assert record["work"]["forward_passes_per_example"] == pytest.approx(1.0 + shared)


def test_table_output_shows_summary_per_class_and_confusion(tiny, tmp_path):
    result = cli("run", MANUAL, "--data", EXAMPLES, "--model", tiny["bert"], "--out", tmp_path / "o", "--quiet")
    assert result.exit_code == 0
    for text in ("accuracy", "macro-F1", "examples/s", "per class", "confusion", "precision"):
        assert text in result.stdout


def test_api_is_the_same_road(tiny, tmp_path):
    result = promptcli.run(MANUAL, EXAMPLES, tiny["bert"], out=tmp_path / "api", progress=False, batch_size=4)
    cli_result = cli("run", MANUAL, "--data", EXAMPLES, "--model", tiny["bert"], "--out", tmp_path / "cli",
                     "--format", "json", "--quiet")
    assert json.loads(cli_result.stdout)["accuracy"] == result.accuracy
    assert [p.index for p in result.predictions] == list(range(len(result.predictions)))  # row order
    assert [p.pred for p in result.predictions] == [p["pred"] for p in read_lines(tmp_path / "cli/predictions.jsonl")]


def test_api_accepts_rows_in_memory(tiny, tmp_path):
    rows = sentences(10)
    result = promptcli.run(MANUAL, rows, tiny["roberta"], out=tmp_path / "o", progress=False)
    assert result.metrics["n"] == 10 and result.record.config["data"] == "<rows>"


def _interrupt_after(batches: int):
    seen = {"n": 0}

    def on_batch(done, total):
        seen["n"] += 1
        if seen["n"] == batches:
            raise KeyboardInterrupt
    return on_batch


@pytest.mark.parametrize("model,template", [("roberta", MANUAL), ("gpt2", str(REPO / "templates/sst5/causal-phrases.yaml"))])
def test_interrupted_run_resumes_to_identical_files(tiny, tmp_path, model, template):
    data = write(tmp_path / "d.jsonl", "".join(json.dumps({"text": r["text"], "label": i % 5}) + "\n"
                                                for i, r in enumerate(sentences(30))))
    if "sst2" in template:
        data = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in sentences(30)))
    whole = promptcli.run(template, data, tiny[model], out=tmp_path / "whole", batch_size=4, progress=False)
    with pytest.raises(KeyboardInterrupt):
        promptcli.run(template, data, tiny[model], out=tmp_path / "cut", batch_size=4, progress=False,
                      on_batch=_interrupt_after(3))
    assert json.loads((tmp_path / "cut/run.json").read_text())["status"] == "interrupted"
    assert len(read_lines(tmp_path / "cut/predictions.jsonl")) == 12
    with open(tmp_path / "cut/predictions.jsonl", "a") as handle:  # a kill in the middle of a write
        handle.write('{"index": 3, "gold": "neg')
    result = cli("run", "--resume", tmp_path / "cut", "--quiet", "--format", "json")
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "cut/run.json").read_text())
    assert record["resumed_rows"] == 12 and record["status"] == "finished"
    for name in ("predictions.jsonl", "metrics.json"):
        assert (tmp_path / "cut" / name).read_bytes() == (whole.out_dir / name).read_bytes()


def test_killed_process_resumes_to_identical_files(tiny, tmp_path):
    """A real SIGKILL in the middle of a run, then --resume."""
    data = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in sentences(1500, seed=3)))
    base = [sys.executable, "-m", "promptcli.cli", "run", CAUSAL, "--data", str(data), "--model", tiny["gpt2"],
            "--batch-size", "2", "--quiet"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(base + ["--out", str(tmp_path / "cut")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    predictions = tmp_path / "cut/predictions.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not predictions.exists() or predictions.stat().st_size < 4000):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = len(predictions.read_text().splitlines())
    assert 0 < partial < 1500, "the run must be killed midway"
    assert json.loads((tmp_path / "cut/run.json").read_text())["status"] == "running"
    listed = json.loads(cli("runs", "list", "--format", "json").stdout)
    assert listed[0]["status"].startswith("stale")  # killed runs do not stay "running" in the run store
    subprocess.run(base[:4] + ["--resume", str(tmp_path / "cut"), "--quiet"], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(base + ["--out", str(tmp_path / "whole")], env=env, check=True, stdout=subprocess.DEVNULL)
    for name in ("predictions.jsonl", "metrics.json"):
        assert (tmp_path / "cut" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def test_sigterm_is_an_interruption_that_says_how_to_resume(tiny, tmp_path):
    """SIGTERM (a scheduler's stop, `kill`) once left run.json `running`; it is handled like Ctrl-C."""
    data = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in sentences(1500, seed=3)))
    out = tmp_path / "cut"
    proc = subprocess.Popen([sys.executable, "-m", "promptcli.cli", "run", CAUSAL, "--data", str(data), "--model",
                             tiny["gpt2"], "--batch-size", "2", "--quiet", "--no-cache", "--out", str(out)],
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    predictions = out / "predictions.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not predictions.exists() or predictions.stat().st_size < 4000):
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    assert f"promptcli run --resume {out}" in " ".join(stderr.split())


def test_long_inputs_truncate_data_fields_only(tiny, tmp_path):
    long_text = "the plot was bad and boring " * 40
    data = write(tmp_path / "d.jsonl", json.dumps({"text": long_text, "label": 0}) + "\n"
                 + json.dumps({"text": "great", "label": 1}) + "\n")
    result = cli("run", MANUAL, "--data", data, "--model", tiny["roberta"], "--out", tmp_path / "o", "--max-length",
                 "32", "--format", "json", "--quiet")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["counts"]["truncated"] == 1
    assert [p["truncated"] for p in read_lines(tmp_path / "o/predictions.jsonl")] == [True, False]
    shown = cli("render", MANUAL, "--data", data, "--model", tiny["roberta"], "--max-length", "32", "--format", "json")
    first = json.loads(shown.stdout.splitlines()[0])
    assert first["truncated"] and first["tokens"] <= 32
    assert " It was<mask>" in first["text"] and first["text"].endswith("<mask>.</s>")  # template words + slot survive


def test_unlabelled_data_gives_predictions_without_metrics(tiny, tmp_path):
    data = write(tmp_path / "d.jsonl", '{"text": "a fine film"}\n{"text": "a dull film"}\n')
    result = cli("run", MANUAL, "--data", data, "--model", tiny["bert"], "--out", tmp_path / "o", "--format", "json",
                 "--quiet")
    summary = json.loads(result.stdout)
    assert "accuracy" not in summary and sum(summary["predicted"].values()) == 2
    assert all(p["gold"] is None for p in read_lines(tmp_path / "o/predictions.jsonl"))


def test_skip_invalid_counts_rows(tiny, tmp_path):
    data = write(tmp_path / "d.jsonl", '{"text": "fine", "label": 1}\n{"text": ""}\n{oops\n{"text": "x", "label": 1}\n')
    failed = cli("run", MANUAL, "--data", data, "--model", tiny["bert"], "--out", tmp_path / "a", "--quiet")
    assert failed.exit_code == 3 and f"{data}:2: field 'text': empty text" in failed.stderr
    result = cli("run", MANUAL, "--data", data, "--model", tiny["bert"], "--out", tmp_path / "b", "--quiet",
                 "--skip-invalid")
    assert result.exit_code == 0 and "skipped 2 invalid rows" in result.stdout
    assert json.loads((tmp_path / "b/run.json").read_text())["counts"]["skipped"] == 2


@pytest.mark.parametrize("args,code,message", [
    (["run", MANUAL, "--data", "missing.jsonl", "--model", "{bert}"], 3, "missing.jsonl: data file not found"),
    (["run", MANUAL, "--data", EXAMPLES, "--model", "/nonexistent/model"], 4, "no model folder or file at '/nonexistent/model'"),
    (["run", "nope.yaml", "--data", EXAMPLES, "--model", "{bert}"], 7, "nope.yaml: file not found"),
    (["run", MANUAL, "--data", EXAMPLES, "--model", "{gpt2}", "--scorer", "mlm"], 4, "has no mask token"),
    (["run", MANUAL, "--data", EXAMPLES, "--model", "{bert}", "--device", "cuda"], 4, "no CUDA GPU"),
])
def test_errors_are_messages_with_exit_codes(tiny, tmp_path, args, code, message):
    args = [a.format(**tiny) for a in args] + ["--out", str(tmp_path / "o"), "--quiet"]
    result = cli(*args)
    assert result.exit_code == code, result.output
    assert message in result.stderr


def test_existing_output_folder_is_never_overwritten(tiny, tmp_path):
    out = tmp_path / "o"
    assert cli("run", MANUAL, "--data", EXAMPLES, "--model", tiny["bert"], "--out", out, "--quiet").exit_code == 0
    before = (out / "predictions.jsonl").read_bytes()
    again = cli("run", MANUAL, "--data", EXAMPLES, "--model", tiny["bert"], "--out", out, "--quiet")
    assert again.exit_code == 5 and "--resume" in again.stderr
    assert (out / "predictions.jsonl").read_bytes() == before


def test_resume_refuses_changed_inputs(tiny, tmp_path):
    data = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in sentences(8)))
    with pytest.raises(KeyboardInterrupt):
        promptcli.run(MANUAL, data, tiny["bert"], out=tmp_path / "o", batch_size=2, progress=False,
                      on_batch=_interrupt_after(1))
    write(data, data.read_text() + json.dumps({"text": "new", "label": 1}) + "\n")
    result = cli("run", "--resume", tmp_path / "o", "--quiet")
    assert result.exit_code == 5 and "the data changed" in result.stderr
    other = cli("run", "--resume", tmp_path / "o", "--model", tiny["roberta"], "--quiet")
    assert other.exit_code == 5 and "model: run has" in other.stderr


def test_render_json_shows_what_each_model_kind_receives(tiny):
    mlm = [json.loads(x) for x in cli("render", MANUAL, "--data", EXAMPLES, "--model", tiny["roberta"], "--limit", "2",
                                      "--format", "json").stdout.splitlines()]
    assert len(mlm) == 2 and mlm[0]["scorer"] == "mlm"
    assert mlm[0]["text"].startswith("<s>a warm") and "<mask>" in mlm[0]["text"]
    causal = json.loads(cli("render", CAUSAL, "--data", EXAMPLES, "--model", tiny["gpt2"], "--limit", "1",
                            "--format", "json").stdout)
    assert causal["context"].endswith("All in all, the movie was")
    assert causal["continuations"] == {"negative": [" terrible"], "positive": [" great"]}
    plain = json.loads(cli("render", str(REPO / "templates/sst2/co-star.yaml"), "--data", EXAMPLES, "--limit", "1",
                           "--format", "json").stdout)
    assert "# OBJECTIVE #" in plain["text"] and plain["text"].endswith("Verdict: the movie was {{ mask }}")


def test_render_table_is_readable(tiny):
    result = cli("render", str(REPO / "templates/sst2/xml.yaml"), "--data", EXAMPLES, "--limit", "2")
    assert result.exit_code == 0 and "<review>" in result.stdout and "row 1" in result.stdout


def test_validate_shipped_specs_and_a_broken_one(tiny, tmp_path):
    ok = cli("validate", REPO / "templates", REPO / "verbalizers", "--model", tiny["llama"])
    assert ok.exit_code == 0, ok.stdout
    assert ok.stdout.count(" ok ") == len(list(REPO.glob("templates/**/*.yaml")) + list(REPO.glob("verbalizers/*.yaml")))
    cloze = [REPO / "templates/sst2/manual.yaml", REPO / "templates/sst5/manual-fewshot.yaml"]
    assert cli("validate", *cloze, "--model", tiny["roberta"]).exit_code == 0
    mlm = cli("validate", REPO / "templates/sst2/cot.yaml", REPO / "templates/sst2/chat.yaml", "--model", tiny["roberta"])
    # files that are fine but cannot run on this model are n/a, with the reason, not errors
    assert mlm.exit_code == 0 and mlm.stdout.count("n/a") == 2 and mlm.stdout.count("needs a causal model") == 2
    write(tmp_path / "bad.yaml", "kind: manual\ntext: '{{ text }}'\nverbalizer: {labels: {a: x, b: y}}\n")
    write(tmp_path / "v.yaml", "labels: {a: [Great], b: [great]}\n")
    bad = cli("validate", tmp_path, "--model", tiny["bert"])
    assert bad.exit_code == 7, bad.stderr
    assert "no answer slot" in bad.stdout and "cannot be told apart" in bad.stdout


MISTAKES = [  # (arguments, exit code, words the message must hold): each names the thing to fix
    (["run", MANUAL, "--data", str(REPO / "examples"), "--model", "{bert}"], 3, "this is a folder, not a data file"),
    (["run", MANUAL, "--data", EXAMPLES, "--model", "./no/such/folder"], 4, "no model folder or file at './no/such/folder'"),
    (["run", MANUAL, "--data", EXAMPLES, "--model", EXAMPLES], 4, "is a file; --model takes a model folder"),
    (["run", MANUAL, "--data", EXAMPLES, "--model", "{bert}", "--store", str(REPO / "examples")], 6,
     "this is a folder; give the database file's path"),
    (["run", MANUAL, "--data", EXAMPLES, "--model", "{bert}", "--max-length", "0"], 2, "max-length"),
    (["runs", "list", "--kind", "bogus"], 2, "bogus"),
    # an option value the parser lets through but the run refuses is a command-line mistake too: exit 2,
    # while 7 is kept for spec files (it was 5, "output/resume problem")
    (["run", MANUAL, "--data", EXAMPLES, "--model", "{bert}", "--device", "meta"], 2, "device='meta' is not one of"),
]


@pytest.mark.parametrize("args,code,words", MISTAKES, ids=[m[2][:30] for m in MISTAKES])
def test_mistakes_name_what_to_fix(tiny, tmp_path, args, code, words):
    args = [a.format(**tiny) for a in args] + (["--out", str(tmp_path / "o")] if args[0] == "run" else [])
    result = cli(*args)
    assert result.exit_code == code, result.output
    assert words in " ".join(result.output.split()) and "internal error" not in result.output


def test_validate_passes_on_the_shipped_files_with_a_causal_model_and_speaks_json(tiny):
    """The README's `promptcli validate templates/ verbalizers/ --model …` exited 2 on the chat templates."""
    result = cli("validate", str(REPO / "templates"), str(REPO / "verbalizers"), "--model", tiny["gpt2"],
                 "--format", "json")
    assert result.exit_code == 0, result.output
    findings = json.loads(result.stdout)
    by_status = {f["path"]: f["status"] for f in findings}
    assert by_status[str(REPO / "templates/sst2/chat.yaml")] == "n/a"  # the tiny gpt2 has no chat template
    assert by_status[str(REPO / "templates/sst2/causal.yaml")] == "ok"
    assert all(status != "error" for status in by_status.values())
    described = next(f["message"] for f in findings if f["path"].endswith("verbalizers/sst2.yaml"))
    assert 'negative: "terrible"' in described  # words quoted: "Sci/Tech" stays one word
