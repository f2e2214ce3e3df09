"""The benchmark's equivalences, checked without timing anything: the generated lm-eval tasks
read the same prompt text (demonstrations included) and tokens as promptcli; the floors do the
model work promptcli does (same batches, rows and token positions, the same scores and the same
generated text); and the PEFT loop trains the prompt `promptcli tune` trains."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import jinja2
import pytest
import torch

from conftest import shared_path, write
from helpers import Pipeline, sentences

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.floor import causal_floor, common_prefix, mlm_floor  # noqa: E402
from bench.floor_generate import candidates, generate_floor  # noqa: E402
from bench.lmeval_task import NotExpressible, fixed_demonstrations, task_config, write_task  # noqa: E402
from bench.prompt_tuning import PeftLoop, prepare_training, tune_options  # noqa: E402
from bench.quality import TASKS, Splits, cell, k_shot, read_rows, save  # noqa: E402
from bench.scenarios import METHOD_NAMES, SCENARIOS, promptcli_method  # noqa: E402
from promptcli.scoring.labels import combine
from promptcli.evaluation.batches import plan_batches  # noqa: E402

MIXED = {"negative": ["terrible", "dreadful"], "positive": ["great", "magnificent"]}


def target(config: dict, row: dict) -> str:
    return jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(config["doc_to_target"]).render(**row)


def test_task_for_the_causal_scenarios():
    config = task_config(str(SCENARIOS["b"].template), "dev.jsonl", "t")
    assert config["doc_to_text"] == "Review: {{ text }}\nAll in all, the movie was"
    assert config["doc_to_choice"] == [" terrible", " great"]  # the space before the slot moves into the choice
    assert config["target_delimiter"] == ""
    assert [target(config, {"label": v}) for v in ("negative", "positive", 0, 1)] == ["0", "1", "0", "1"]
    five = task_config(str(SCENARIOS["c"].template), "test.jsonl", "t")
    assert five["doc_to_choice"][1] == " not good at all"
    assert target(five, {"label": "very positive"}) == "4"


@pytest.mark.parametrize("text, labels, problem", [
    ("{{ text }} It was {{ mask }}.", {"negative": ["bad"], "positive": ["good"]}, "after the answer slot"),
    ("{{ text }} It was {{ mask }}", MIXED, "has 2 words"),
])
def test_templates_without_an_lm_eval_equivalent(tmp_path, text, labels, problem):
    write(tmp_path / "v.yaml", json.dumps({"labels": labels}))
    template = write(tmp_path / "t.yaml", json.dumps({"kind": "manual", "text": text, "verbalizer": "v.yaml"}))
    with pytest.raises(NotExpressible, match=problem):
        task_config(str(template), "d.jsonl", "t")


@pytest.mark.parametrize("name, text", [
    ("gpt2", "review : {{ text }} . it was {{ mask }}"),
    ("llama", "review : {{ text }} . it was {{ mask }}"),
    ("gpt2", "{{ text }} it was {{ mask }} ."),  # text after the slot: continuations = word + suffix
    ("roberta", "{{ text }} it was {{ mask }} ."),
    ("bert", "review : {{ text }} . it was {{ mask }}"),
])
def test_floor_does_the_model_work_of_promptcli(tiny, tmp_path, name, text):
    pipe = Pipeline(tmp_path, tiny[name], text, MIXED, sentences(24))
    batches = plan_batches(pipe.encoded, 8)
    scorer = pipe.scorer(batch_size=8)
    build = mlm_floor if pipe.loaded.kind == "mlm" else causal_floor
    floor = build(pipe.loaded.model, pipe.loaded.tokenizer, batches, 8, naive=False)
    with torch.inference_mode():
        for batch in batches:
            scorer.word_scores(batch)
        floor.step()
    assert (floor.positions, floor.sequences) == (scorer.positions, scorer.sequences)


def test_lm_eval_reads_the_same_prompts_and_tokens(tiny, tmp_path):
    pytest.importorskip("lm_eval")
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    rows = sentences(6)
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = "review : {{ text }} . it was {{ mask }}"
    pipe = Pipeline(tmp_path / "spec", tiny["gpt2"], text, {"negative": ["terrible"], "positive": ["great"]}, rows)
    write_task(tmp_path / "task", str(tmp_path / "spec" / "template.yaml"), str(data), "bench_check")
    task = TaskManager(include_path=str(tmp_path / "task"), include_defaults=False).load(["bench_check"])
    task = task["tasks"]["bench_check"]
    lm = HFLM(pretrained=tiny["gpt2"], batch_size=4, device="cpu", dtype="float32")
    docs = list(task.eval_docs)
    assert len(docs) == len(rows)
    for doc, enc in zip(docs, pipe.encoded):
        context = task.doc_to_text(doc)
        example = pipe.prepared.dataset.examples[enc.index]
        assert context == pipe.prepared.encoder.prompt(example.fields, [], "").prefix.rstrip()
        assert task.doc_to_target(doc) == ["negative", "positive"].index(doc["label"])
        for choice, word in zip(task.doc_to_choice(doc), enc.words.ids):
            ctx_ids, cont_ids = lm._encode_pair(context, task.config.target_delimiter + choice)
            assert (tuple(ctx_ids), tuple(cont_ids)) == (enc.context, word)


# --- scenarios (d) few-shot, (e) self-consistency, (f) soft-prompt training -------------------------------

def fewshot_inputs(folder: Path, model: str, words: dict, shots: int = 2, rows: list[dict] | None = None):
    """A few-shot template (fixed, balanced demonstrations) with its training and data files, prepared."""
    from promptcli.evaluation.inputs import prepare
    from promptcli.spec.runconfig import RunConfig

    write(folder / "v.yaml", json.dumps({"labels": words}))
    template = write(folder / "t.yaml", json.dumps({
        "kind": "manual", "text": "review : {{ text }} . it was {{ mask }}", "verbalizer": "v.yaml",
        "demonstrations": {"count": shots, "select": "balanced", "seed": 13, "separator": "\n\n"}}))
    train = write(folder / "train.jsonl", "".join(json.dumps(r) + "\n" for r in sentences(6, seed=1)))
    data = write(folder / "data.jsonl", "".join(json.dumps(r) + "\n" for r in (rows or sentences(10, seed=2))))
    config = RunConfig(template=str(template), data=str(data), model=model, device="cpu", dtype="float32",
                       train=str(train))
    return config, prepare(config)


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_fewshot_floor_scores_like_promptcli(tiny, tmp_path, name):
    from promptcli.models.weights import load_model
    from promptcli.scoring import make_scorer
    from promptcli.spec.runconfig import ScoringConfig

    _, prepared = fewshot_inputs(tmp_path, tiny[name], MIXED)
    assert all(e.demos == 2 and not e.dropped for e in prepared.encoded)
    loaded = load_model(prepared.info, device="cpu", dtype="float32")
    batches = plan_batches(prepared.encoded, 4)
    scorer = make_scorer(loaded, ScoringConfig(batch_size=4))
    prefix = common_prefix(prepared.encoded)
    floor = causal_floor(loaded.model, loaded.tokenizer, batches, 4, naive=False, prefix=prefix)
    kept: dict[int, list[float]] = {}
    with torch.inference_mode():
        assert scorer.share_prefix([e.context for e in prepared.encoded]) == len(prefix) > 10  # demos shared
        floor.step(kept)
        mine = {e.index: row for batch in batches for e, row in zip(batch, scorer.word_scores(batch))}
    verbalizer = prepared.verbalizer
    for index, row in mine.items():
        theirs = combine(verbalizer, torch.tensor([kept[index]])).log_softmax(-1)[0]
        torch.testing.assert_close(theirs, combine(verbalizer, row[None]).log_softmax(-1)[0], atol=1e-4, rtol=0)
    assert (floor.positions, floor.sequences) == (scorer.positions, scorer.sequences)  # the prefix counted once


def test_lm_eval_fewshot_task_is_promptclis_prompt(tiny, tmp_path):
    pytest.importorskip("lm_eval")
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from promptcli.models.weights import load_model
    from promptcli.scoring import make_scorer
    from promptcli.spec.runconfig import ScoringConfig

    config, prepared = fewshot_inputs(tmp_path, tiny["gpt2"], {"negative": ["terrible"], "positive": ["great"]})
    write_task(tmp_path / "task", config.template, config.data, "bench_fewshot", config.train)
    manager = TaskManager(include_path=str(tmp_path / "task"), include_defaults=False)
    task = manager.load(["bench_fewshot"])["tasks"]["bench_fewshot"]
    assert task.config.num_fewshot == 2
    lm = HFLM(pretrained=tiny["gpt2"], batch_size=4, device="cpu", dtype="float32")
    for doc, example, enc in zip(task.eval_docs, prepared.dataset.examples, prepared.encoded):
        context = task.fewshot_context(doc, 2)
        demos = prepared.selector.select(example).demos
        assert context == prepared.encoder.prompt(example.fields, demos, "").prefix.rstrip()  # byte for byte
        for choice, word in zip(task.doc_to_choice(doc), enc.words.ids):
            assert tuple(map(tuple, lm._encode_pair(context, choice))) == (enc.context, word)
    out = lm_eval.simple_evaluate(model=lm, tasks=["bench_fewshot"], task_manager=manager, log_samples=True,
                                  bootstrap_iters=0)
    scorer = make_scorer(load_model(prepared.info, device="cpu", dtype="float32"), ScoringConfig())
    with torch.inference_mode():
        mine = scorer.word_scores(prepared.encoded)
    theirs = {s["doc_id"]: [float(r[0]) for r in s["filtered_resps"]] for s in out["samples"]["bench_fewshot"]}
    torch.testing.assert_close(torch.tensor([theirs[i] for i in range(len(mine))]), mine, atol=1e-4, rtol=0)


def test_demonstrations_that_change_per_query_have_no_lm_eval_equivalent(tiny, tmp_path):
    clash = sentences(6, seed=1)[:1] + sentences(4, seed=2)  # the first query is also a training row
    config, _ = fewshot_inputs(tmp_path, tiny["gpt2"], {"negative": ["terrible"], "positive": ["great"]},
                               rows=clash)
    with pytest.raises(NotExpressible, match="equals a query"):
        fixed_demonstrations(config.template, config.data, config.train)


@pytest.mark.shared
def test_scenario_d_shows_16_shared_demonstrations():
    data = shared_path("data", "sst2")
    rows = fixed_demonstrations(str(SCENARIOS["d"].template), str(data / "dev.jsonl"),
                                str(data / "train-16-13.jsonl"))
    assert [r["label"] for r in rows] == ["negative", "positive"] * 8  # balanced: labels take turns


def self_consistency(folder: Path, model: str, decoding: dict, samples: int = 3):
    from promptcli.evaluation.inputs import prepare
    from promptcli.spec.runconfig import RunConfig

    write(folder / "v.yaml", json.dumps({"labels": {"negative": ["terrible"], "positive": ["great"]}}))
    template = write(folder / "sc.yaml", json.dumps({
        "kind": "self-consistency", "text": "review : {{ text }} . it was", "verbalizer": "v.yaml",
        "answer_pattern": "(great|terrible)", "samples": samples, "decoding": decoding}))
    return prepare(RunConfig(template=str(template), data="<rows>", model=model, device="cpu", dtype="float32"),
                   sentences(6))


def test_generate_floor_writes_what_promptcli_writes(tiny, tmp_path):
    from promptcli.scoring.generate import Decoding, Generator
    from promptcli.models.weights import load_model
    from promptcli.scoring import make_scorer
    from promptcli.spec.runconfig import ScoringConfig

    stop = [" m"]  # a stop string the tiny model writes in some paths only
    prepared = self_consistency(tmp_path, tiny["gpt2"], {"strategy": "greedy", "max_new_tokens": 12, "stop": stop})
    loaded = load_model(prepared.info, device="cpu", dtype="float32")
    decoding = Decoding.from_spec(prepared.template.spec.decoding, 3, 0)
    batches = plan_batches(prepared.encoded, 4)
    floor = generate_floor(loaded.model, loaded.tokenizer, batches, decoding)
    kept: dict[int, list[list[int]]] = {}
    generator = Generator(loaded, make_scorer(loaded, ScoringConfig(batch_size=4)), decoding)
    with torch.inference_mode():
        floor.step(kept)
        mine = {e.index: texts for batch in batches for e, texts in zip(batch, generator.generate(batch))}
    for index, paths in kept.items():
        texts = [loaded.tokenizer.decode(p, skip_special_tokens=True) for p in paths]
        assert [t[:min([t.find(s) for s in stop if s in t], default=len(t))] for t in texts] == mine[index]
    lengths = {len(p) for paths in kept.values() for p in paths}
    assert 12 in lengths and min(lengths) < 12  # the stop string ended some paths, not all


@pytest.mark.parametrize("top_k, top_p, temperature", [(40, 0.95, 0.7), (None, 0.5, 1.0), (5, None, 2.0),
                                                        (None, None, 0.7)])
def test_generate_floor_samples_from_promptclis_distribution(top_k, top_p, temperature):
    from promptcli.scoring.generate import Decoding, sampling_probs

    decoding = Decoding(strategy="sample", top_k=top_k, top_p=top_p, temperature=temperature)
    log_probs = (3 * torch.randn(6, 200, generator=torch.Generator().manual_seed(0))).log_softmax(-1)
    probs, ids = candidates(log_probs, decoding)
    full = torch.zeros_like(log_probs).scatter(1, ids, probs)
    torch.testing.assert_close(full, sampling_probs(log_probs, decoding), atol=1e-6, rtol=0)


@pytest.mark.parametrize("method", ["prompt", "p-tuning", "prefix"])
def test_peft_loop_trains_the_prompt_promptcli_tune_trains(tiny, tmp_path, method):
    pytest.importorskip("peft")
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from promptcli.tuning.tuner import tune

    write(tmp_path / "v.yaml", json.dumps({"labels": {"negative": ["terrible"], "positive": ["great"]}}))
    template = write(tmp_path / "t.yaml", json.dumps({
        "kind": "manual", "text": "review : {{ text }} . it was {{ mask }}", "verbalizer": "v.yaml"}))
    train = write(tmp_path / "train.jsonl", "".join(json.dumps(r) + "\n" for r in sentences(8, seed=3)))
    job = {"template": str(template), "train": str(train), "model": tiny["gpt2"], "virtual_tokens": 4, "epochs": 2,
           "tune_batch_size": 3, "tune_method": method}
    result = tune(job["template"], job["train"], job["model"], out=tmp_path / "tuned", progress=False, eval_every=1,
                  **tune_options(job))
    model = AutoModelForCausalLM.from_pretrained(tiny["gpt2"], dtype=torch.float32)
    loop = PeftLoop(model, prepare_training(model, job), tune_options(job))
    losses = loop.train()
    assert len(losses) == result.manifest.training["steps"] == 6  # 3 batches (3, 3, 2 rows) × 2 epochs
    assert [c["train_loss"] for c in result.curve[1:]] == pytest.approx(losses, abs=1e-5)
    trained = load_file(str(tmp_path / "tuned" / "adapter_model.safetensors"))["prompt_embeddings"]
    with torch.no_grad():
        theirs = loop.prompt().clone()
        loop.encoder.load_state_dict(loop.init)
        start = loop.prompt().clone()
    torch.testing.assert_close(theirs, trained, atol=1e-3, rtol=0)
    assert (trained - start).abs().max() > 0.05  # and it did train
    assert loop.train() == losses  # each timed run starts from the same prompt and optimiser


def test_every_scenario_can_run():
    from bench.measure import method_setups
    from promptcli.spec.loading import load_template

    for scenario in SCENARIOS.values():
        assert scenario.missing is None and set(scenario.methods) <= set(method_setups()) <= set(METHOD_NAMES)
        assert promptcli_method(scenario.methods) is not None
        load_template(str(scenario.template))


@pytest.mark.shared
@pytest.mark.parametrize("seed", [13, 21, 42, 87, 100])
def test_quality_splits_are_lm_bffs(seed):
    """The 16-shot procedure bench/quality.py uses on every task rebuilds the shipped SST-2 splits exactly."""
    rows = read_rows(shared_path("data", "sst2", "train-sentences.jsonl"))
    assert [rows[i] for i in k_shot(rows, seed, 16)] == read_rows(shared_path("data", "sst2", f"train-16-{seed}.jsonl"))


@pytest.mark.shared
def test_quality_holds_rte_training_rows_out_of_its_evaluation(tmp_path):
    splits = Splits("rte", TASKS["rte"], shared_path("data").resolve(), tmp_path)
    train, evaluated = read_rows(splits.train(13)), read_rows(splits.eval)
    assert len(train) == 32 and len(train) + len(evaluated) == 277
    assert not {json.dumps(r) for r in train} & {json.dumps(r) for r in evaluated}
    assert splits.dev(13) is None
    sst2 = Splits("sst2", TASKS["sst2"], shared_path("data").resolve(), tmp_path)
    dev, train = read_rows(sst2.dev(21)), read_rows(sst2.train(21))
    assert len(dev) == 32 and not {json.dumps(r) for r in dev} & {json.dumps(r) for r in train}


def _save_seeds(path: Path, first: int) -> None:
    for seed in range(first, first + 20):
        save(path, "sst5", "m", {"majority": 0.3, "tuned": {str(seed): seed / 100}}, 0.5)


def test_quality_instances_sharing_an_out_keep_each_others_cells(tmp_path):
    """Two bench/quality.py processes on one --out (one per core): every seed either measured is kept."""
    import multiprocessing

    path = tmp_path / "quality.json"
    save(path, "rte", "m", {"majority": 0.5, "zero": {"accuracy": 0.56, "macro_f1": 0.5}}, 1.0)
    workers = [multiprocessing.get_context("fork").Process(target=_save_seeds, args=(path, first))
               for first in (0, 20)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    results = json.loads(path.read_text())
    assert results["sst5"]["m"]["tuned"] == {str(s): s / 100 for s in range(40)}
    assert results["sst5"]["m"]["seconds"] == 20.0
    assert results["rte"]["m"]["zero"]["accuracy"] == 0.56
    assert cell(results["rte"]["m"]["zero"]) == "56.0" and cell(results["rte"]["m"]["majority"]) == "50.0"
    assert cell({"13": 0.30, "21": 0.40}) == "35.0 ± 7.1 (2 of 5 seeds)"
    assert cell({str(s): 0.5 for s in (13, 21, 42, 87, 100)}) == "50.0 ± 0.0"
    assert cell([0.5, 0.7, 0.5, 0.7, 0.6]) == "60.0 ± 10.0"  # quality.json files written before seeds were keys


@pytest.mark.shared
def test_quality_samples_a_large_evaluation_set_the_same_way_each_time(tmp_path):
    """--max-eval: a seeded sample, in the file's order, identical on every call (so runs resume)."""
    full = read_rows(shared_path("data", "sst5", "test.jsonl"))
    first = Splits("sst5", TASKS["sst5"], shared_path("data").resolve(), tmp_path / "a", max_eval=100)
    again = Splits("sst5", TASKS["sst5"], shared_path("data").resolve(), tmp_path / "b", max_eval=100)
    sample = read_rows(first.eval)
    assert len(sample) == 100 and sample == read_rows(again.eval) and first.total == len(full)
    positions = [full.index(r) for r in sample]
    assert positions == sorted(positions) and len(set(positions)) == 100
    assert Splits("sst5", TASKS["sst5"], shared_path("data").resolve(), tmp_path, max_eval=5000).eval == \
        shared_path("data").resolve() / "sst5" / "test.jsonl"
