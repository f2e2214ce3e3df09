"""Soft-prompt tuning: it learns, it touches nothing else, it saves and reloads exactly."""
from __future__ import annotations

import importlib.util
import json
import math
import random
import shutil
import sys
import subprocess
from collections import Counter

import pytest
import torch
from typer.testing import CliRunner
from safetensors.torch import load_file

import promptcli
import promptcli.tuning.trainer as trainer_module
from conftest import REPO, write
from helpers import sentences
from promptcli.cli import app
from promptcli.errors import RunError
from promptcli.models.info import load_info
from promptcli.models.weights import load_model
from promptcli.evaluation.inputs import prepare
from promptcli.spec.runconfig import RunConfig
from promptcli.prompt.soft import SoftPrompt, load_soft_prompt
from promptcli.models.processes import Processes
from promptcli.tuning.trainer import Trainer, initial_embeddings, parameters_sha256
from promptcli.tuning.tuner import TuneConfig, tune

SST2_WORDS = REPO / "verbalizers/sst2.yaml"
VERB = "verbalizer:\n  labels: {negative: [terrible], positive: [great]}\n  label_map: {0: negative, 1: positive}\n"
POSITIVE, NEGATIVE = ["good", "fun", "wonderful"], ["bad", "boring", "awful"]
FILLER = "the movie plot acting story film music end it was a and".split()


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    """A separable toy task (the first word decides the label) and a tiny MLM wide enough to learn it.

    Weights are random; a wider initialisation (0.2) lets the input matter to the output."""
    from transformers import BertConfig, BertForMaskedLM, BertTokenizer
    import tiny

    root = tmp_path_factory.mktemp("toy")
    for name, seed in (("train", 1), ("dev", 2)):
        rng = random.Random(seed)
        rows = [{"text": " ".join([rng.choice(POSITIVE if i % 2 else NEGATIVE)] + rng.sample(FILLER, 3)),
                 "label": i % 2} for i in range(64)]
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write(root / "prefix.yaml", "kind: manual\ntext: '{{ text }} it was {{ mask }}'\n" + VERB)
    write(root / "slots.yaml", "kind: manual\ntext: '{{ text }} {{ soft(4) }} {{ mask }}'\n" + VERB)
    tokenizer = BertTokenizer(vocab=tiny._wordpiece_vocab(160))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, max_position_embeddings=256, initializer_range=0.2,
                        architectures=["BertForMaskedLM"])
    model = tiny._save(root / "bert", tokenizer, BertForMaskedLM, config, seed=0)
    return {"root": root, "model": str(model), "train": str(root / "train.jsonl"), "dev": str(root / "dev.jsonl"),
            "prefix": str(root / "prefix.yaml"), "slots": str(root / "slots.yaml")}


def tuned(task, tmp_path, name="out", **options):
    settings = dict(virtual_tokens=8, epochs=6, lr=0.3, batch_size=16, seed=0)
    settings.update(options)
    return tune(task["prefix"], task["train"], task["model"], dev=task["dev"], out=tmp_path / name, progress=False,
                **settings)


def test_a_soft_prompt_learns_a_separable_task(task, tmp_path):
    result = tuned(task, tmp_path, epochs=10)
    assert result.initial_dev_accuracy <= 0.6  # chance level: the random model knows nothing of the task
    assert result.best_dev_accuracy >= 0.8 and result.best_dev_accuracy >= result.initial_dev_accuracy + 0.25
    losses = [c["train_loss"] for c in result.curve[1:]]
    assert losses[-1] < losses[0] - 0.15
    params = result.manifest.parameters
    assert params["trainable"] == 8 * 64 and params["frozen"] > 90_000


def test_only_the_prompt_embeddings_train(task):
    info = load_info(task["model"])
    loaded = load_model(info, device="cpu", dtype="float32")
    before = parameters_sha256(loaded.model)
    prompt = SoftPrompt(torch.zeros(8, 64))
    train = prepare(RunConfig(template=task["prefix"], data=task["train"], model=task["model"]), soft=prompt)
    config = TuneConfig(template=task["prefix"], train=task["train"], virtual_tokens=8)
    prompt = SoftPrompt(initial_embeddings(config, loaded, train))
    trainer = Trainer(config, loaded, prompt, train, None, Processes())
    optimizer = torch.optim.AdamW([prompt.embeddings], lr=0.3)
    start = prompt.embeddings.detach().clone()
    with prompt.attached(loaded.model):
        for _ in range(3):
            trainer.loss(train.encoded[:16]).backward()
            assert all(p.grad is None for p in loaded.model.parameters())  # no model weight got a gradient
            assert prompt.embeddings.grad.abs().sum() > 0
            optimizer.step()
            optimizer.zero_grad()
    assert not torch.equal(prompt.embeddings.detach(), start)
    assert parameters_sha256(loaded.model) == before  # every weight, the embedding table included, bit-identical


def test_tune_refuses_to_finish_if_a_weight_changed(task, tmp_path, monkeypatch):
    real = trainer_module.Trainer.loss

    def sneaky(self, batch):
        with torch.no_grad():
            self.loaded.model.get_input_embeddings().weight[0, 0] += 1.0
        return real(self, batch)

    monkeypatch.setattr(trainer_module.Trainer, "loss", sneaky)
    with pytest.raises(RuntimeError, match="parameter changed"):
        tuned(task, tmp_path, epochs=1)


def test_saved_prompt_reloads_to_the_same_dev_predictions(task, tmp_path):
    result = tuned(task, tmp_path, epochs=3)
    folder = result.out_dir
    # only what was trained and its configs: the resume checkpoint is gone once training finished
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                        "promptcli_soft_prompt.json"]
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    assert list(tensors) == ["prompt_embeddings"] and tensors["prompt_embeddings"].shape == (8, 64)
    runs = [promptcli.run(task["prefix"], task["dev"], task["model"], out=tmp_path / f"run{i}", progress=False,
                          soft_prompt=str(folder), cache=False) for i in (1, 2)]
    assert runs[0].accuracy == result.best_dev_accuracy
    assert (tmp_path / "run1/predictions.jsonl").read_bytes() == (tmp_path / "run2/predictions.jsonl").read_bytes()
    plain = promptcli.run(task["prefix"], task["dev"], task["model"], out=tmp_path / "plain", progress=False)
    assert plain.predictions != runs[0].predictions  # the prompt is really used


@pytest.mark.parametrize("method", [{}, {"method": "p-tuning", "lr": 0.01}, {"method": "prefix", "prefix_projection": True}],
                         ids=["prompt", "p-tuning", "prefix-projection"])
def test_resume_continues_to_the_same_prompt(task, tmp_path, monkeypatch, method):
    whole = tuned(task, tmp_path, "whole", epochs=3, **method)
    real = trainer_module.Trainer.loss
    calls = {"n": 0}

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] == 7:  # in the second epoch, after its first checkpoint
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(trainer_module.Trainer, "loss", interrupted)
    with pytest.raises(KeyboardInterrupt) as stopped:
        tuned(task, tmp_path, "cut", epochs=3, **method)
    assert stopped.value.resume == f"promptcli tune --resume {tmp_path / 'cut'}"  # what Ctrl-C tells the user
    monkeypatch.setattr(trainer_module.Trainer, "loss", real)
    lr = method.get("lr", 0.3)
    assert json.loads((tmp_path / "cut/tune.json").read_text())["lr"] == lr
    changed = CliRunner().invoke(app, ["tune", "--resume", str(tmp_path / "cut"), "--lr", "0.2", "--quiet"])
    assert changed.exit_code == 5 and f"lr: run has {lr}, now 0.2" in changed.stderr
    # like `run --resume DIR`: the folder alone, its own options
    result = CliRunner().invoke(app, ["tune", "--resume", str(tmp_path / "cut"), "--quiet"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == sorted(p.name for p in whole.out_dir.iterdir())
    resumed = load_soft_prompt(tmp_path / "cut")
    torch.testing.assert_close(load_soft_prompt(whole.out_dir).embeddings, resumed.embeddings, atol=1e-6, rtol=0)
    assert [c["dev_accuracy"] for c in resumed.manifest["dev_curve"]] == [c["dev_accuracy"] for c in whole.curve]


@pytest.mark.parametrize("encoder", ["mlp", "lstm"])
def test_p_tuning_learns_and_saves_only_the_encoders_output(task, tmp_path, encoder):
    from promptcli.prompt.reparam import PromptEncoder

    result = tuned(task, tmp_path, epochs=10, lr=0.01, method="p-tuning", encoder=encoder, encoder_hidden=32)
    assert result.initial_dev_accuracy <= 0.6 and result.best_dev_accuracy >= 0.85
    shape = PromptEncoder(torch.zeros(8, 64), encoder, 32)
    assert result.manifest.parameters["trainable"] == sum(p.numel() for p in shape.parameters()) > 8 * 64
    folder = result.out_dir
    assert sorted(p.name for p in folder.iterdir()) == ["adapter_config.json", "adapter_model.safetensors",
                                                        "promptcli_soft_prompt.json"]
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    assert list(tensors) == ["prompt_embeddings"] and tensors["prompt_embeddings"].shape == (8, 64)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert (config["peft_type"], config["encoder_reparameterization_type"], config["encoder_hidden_size"]) == \
        ("P_TUNING", encoder.upper(), 32)
    run = promptcli.run(task["prefix"], task["dev"], task["model"], out=tmp_path / "run", progress=False,
                        soft_prompt=str(folder), cache=False)
    assert run.accuracy == result.best_dev_accuracy  # inference from the exported embeddings, no encoder


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft is not installed (pip install -e .[dev])")
@pytest.mark.parametrize("method", ["p-tuning-mlp", "p-tuning-lstm", "prefix", "prefix-projection"])
def test_the_prompt_family_follows_peft_step_by_step(tiny, tmp_path, method):
    """PEFT's P-tuning / prefix tuning and promptcli's on the same frozen model, batches, optimizer and initial
    weights: the same loss at every step, and the same prompt after them."""
    from peft import PrefixTuningConfig, PromptEncoderConfig, get_peft_model
    from transformers import AutoModelForCausalLM
    from promptcli.prompt.reparam import PrefixProjection, PromptEncoder
    from promptcli.prompt.soft import KvPrefix, kv_shape

    template = write(tmp_path / "t.yaml", "kind: manual\ntext: '{{ text }} It was {{ mask }}'\n" + VERB)
    data = write(tmp_path / "d.jsonl", "".join(json.dumps({**r, "label": int(r["label"] == "positive")}) + "\n"
                                               for r in sentences(24, seed=4)))
    n, steps = 4, 6
    loaded = load_model(load_info(tiny["gpt2"]), device="cpu", dtype="float32")
    hidden = loaded.model.get_input_embeddings().embedding_dim
    shape = kv_shape(loaded.model.config)
    prefix = method.startswith("prefix")
    places = KvPrefix(torch.zeros(n, 2 * math.prod(shape)), shape) if prefix else SoftPrompt(torch.zeros(n, hidden))
    prepared = prepare(RunConfig(template=str(template), data=str(data), model=tiny["gpt2"], calibrate="none"),
                       soft=places)
    torch.manual_seed(0)
    if prefix:
        peft_config = PrefixTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n, encoder_hidden_size=16,
                                         prefix_projection=method == "prefix-projection")
    else:
        peft_config = PromptEncoderConfig(task_type="CAUSAL_LM", num_virtual_tokens=n, encoder_hidden_size=16,
                                          encoder_reparameterization_type=method.split("-")[-1].upper())
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny["gpt2"]).eval(), peft_config).eval()
    theirs = peft.prompt_encoder["default"]
    if method == "prefix":  # PEFT's layout: (N, layers × 2 × width), the same table
        prompt = KvPrefix(theirs.embedding.weight.detach().clone(), shape)
    elif prefix:  # PEFT's PrefixEncoder with its projection: the same names
        mine = PrefixProjection(n, shape[1] * shape[2], 2 * math.prod(shape), 16)
        mine.load_state_dict(theirs.state_dict())
        prompt = KvPrefix(None, shape, projection=mine)
    else:  # the same names, so PEFT's initial weights load as they are
        mine = PromptEncoder(torch.zeros(n, hidden), method.split("-")[-1], 16)
        mine.load_state_dict(theirs.state_dict())
        prompt = SoftPrompt(None, encoder=mine)
    config = TuneConfig(template=str(template), train=str(data), virtual_tokens=n, lr=0.01, batch_size=8,
                        calibrate="none")
    trainer = Trainer(config, loaded, prompt, prepared, None, Processes())
    ours_opt = torch.optim.AdamW(prompt.parameters(), lr=0.01)
    their_opt = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=0.01)
    labels = torch.tensor([w[0] for w in prepared.encoded[0].words.ids])
    ours, theirs_losses = [], []
    with torch.no_grad():
        start = prompt.current().clone()
    with prompt.attached(loaded.model):
        for step in range(steps):
            batch = prepared.encoded[(8 * step) % 24:(8 * step) % 24 + 8]
            loss = trainer.loss(batch)
            loss.backward()
            ours_opt.step()
            ours_opt.zero_grad()
            ours.append(float(loss.detach()))
            total = 0.0
            for e in batch:  # PEFT: one row at a time, no padding; the text after any virtual ids
                ids = torch.tensor([list(e.context[0 if prefix else n:])])
                logits = peft(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[:, -1]
                gold = torch.tensor([prepared.verbalizer.labels.index(prepared.gold[e.index])])
                row = torch.nn.functional.cross_entropy(logits[:, labels], gold) / len(batch)
                row.backward()
                total += float(row.detach())
            theirs_losses.append(total)
            their_opt.step()
            their_opt.zero_grad()
    with torch.no_grad():
        mine_out = prompt.current()
        their_out = theirs.embedding.weight if method == "prefix" else theirs(torch.arange(n)[None])[0]
    assert ours == pytest.approx(theirs_losses, abs=1e-5)  # the same loss curve
    torch.testing.assert_close(mine_out, their_out, atol=1e-5, rtol=0)  # the same prompt after the same steps
    assert (mine_out - start).abs().max() > 1e-3  # and it moved


def test_soft_slots_in_the_template(task, tmp_path):
    result = tune(task["slots"], task["train"], task["model"], dev=task["dev"], out=tmp_path / "s", progress=False,
                  virtual_tokens=4, epochs=1, lr=0.3, batch_size=16)
    assert result.manifest.placement == "slots"
    rows = promptcli.render(task["slots"], task["dev"], model=task["model"], soft_prompt=str(result.out_dir), limit=1)
    assert "[soft][soft][soft][soft][MASK]" in rows[0]["text"]
    with pytest.raises(RunError, match="has 5 tokens but the template places 4"):
        tune(task["slots"], task["train"], task["model"], out=tmp_path / "bad", progress=False, virtual_tokens=5,
             epochs=1)


def test_a_prompt_is_tied_to_its_model_and_template(task, tmp_path, tiny, capsys):
    result = tuned(task, tmp_path, epochs=1)
    with pytest.raises(RunError, match="trained with the template"):
        promptcli.run(task["slots"], task["dev"], task["model"], out=tmp_path / "a", progress=False,
                      soft_prompt=str(result.out_dir))
    other = tmp_path / "other-template.yaml"
    shutil.copy(task["prefix"], other)
    write(other, other.read_text() + "description: edited\n")
    forced = promptcli.run(str(other), task["dev"], task["model"], out=tmp_path / "b", progress=False,
                           soft_prompt=str(result.out_dir), force=True)
    assert forced.metrics["n"] == 64 and "--force: using it anyway" in capsys.readouterr().err


@pytest.mark.parametrize("init", ["vocab", "text", "labels"])
def test_initial_embeddings_are_rows_of_the_embedding_table(task, init):
    info = load_info(task["model"])
    loaded = load_model(info, device="cpu", dtype="float32")
    train = prepare(RunConfig(template=task["prefix"], data=task["train"], model=task["model"]),
                    soft=SoftPrompt(torch.zeros(8, 64)))
    rows = initial_embeddings(TuneConfig(template="", train="", virtual_tokens=8, init=init, init_text="a good movie"),
                              loaded, train)
    table = loaded.model.get_input_embeddings().weight
    assert rows.shape == (8, 64)
    assert all(any(torch.equal(row, t) for t in table) for row in rows)


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft is not installed (pip install -e .[dev])")
@pytest.mark.parametrize("method", ["prompt", "p-tuning"])
@pytest.mark.parametrize("name", ["gpt2", "bert"])
def test_a_prefix_prompt_loads_in_peft_with_the_same_logits(tiny, tmp_path, name, task, method):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    template = write(tmp_path / "t.yaml", "kind: manual\ntext: '{{ text }} it was {{ mask }}'\n" + VERB)
    result = tune(str(template), task["train"], tiny[name], out=tmp_path / "p", progress=False, virtual_tokens=5,
                  epochs=1, batch_size=16, init="vocab", method=method)
    config = json.loads((result.out_dir / "adapter_config.json").read_text())
    assert config["peft_type"] == {"prompt": "PROMPT_TUNING", "p-tuning": "P_TUNING"}[method]
    auto = AutoModelForCausalLM if name == "gpt2" else AutoModelForMaskedLM
    base = auto.from_pretrained(tiny[name]).eval()
    ids = base.config.vocab_size + torch.arange(5)
    text = torch.tensor([[5, 6, 7, 8, 9, 10]])
    prompt = load_soft_prompt(result.out_dir)
    with torch.inference_mode(), prompt.attached(base):
        ours = base(input_ids=torch.cat([ids[None], text], 1)).logits
    peft_model = PeftModel.from_pretrained(auto.from_pretrained(tiny[name]).eval(), str(result.out_dir))
    with torch.inference_mode():
        theirs = peft_model(input_ids=text, attention_mask=torch.ones_like(text)).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_processes_train_the_prompt_one_trains(task, tmp_path, launcher):
    if launcher == "accelerate" and shutil.which("accelerate") is None:
        pytest.skip("accelerate is not installed (pip install -e .[dev])")
    # batches of 21 rows of 64: each epoch's last batch has one row, so the second process has none of it
    single = tuned(task, tmp_path, "single", epochs=2, batch_size=21)
    # accelerate's --multi_gpu launches the processes through torch.distributed.run (gloo without a GPU); with
    # --cpu, accelerate would run one process only
    launch = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
              if launcher == "torchrun" else
              ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no"])
    command = launch + ["-m", "promptcli", "tune", task["prefix"], "--train",
                        task["train"], "--dev", task["dev"], "--model", task["model"], "--virtual-tokens", "8",
                        "--epochs", "2", "--lr", "0.3", "--batch-size", "21", "--seed", "0", "--out",
                        str(tmp_path / "two"), "--quiet"]
    subprocess.run(command, check=True, timeout=600, capture_output=True)
    two = json.loads((tmp_path / "two/promptcli_soft_prompt.json").read_text())
    assert two["training"]["processes"] == 2 and single.manifest.training["processes"] == 1
    assert single.manifest.training["torch_threads"] == torch.get_num_threads()
    assert two["training"]["steps"] == single.manifest.training["steps"]
    assert [c["dev_accuracy"] for c in two["dev_curve"]] == pytest.approx(
        [c["dev_accuracy"] for c in single.curve], abs=1 / 64)
    torch.testing.assert_close(load_soft_prompt(tmp_path / "two").embeddings,
                               load_soft_prompt(single.out_dir).embeddings, atol=1e-4, rtol=0)


def test_tune_works_on_a_model_with_zero_dim_buffers(tiny, tmp_path):
    """Gemma 3 keeps `embed_scale` as a 0-dim buffer; the frozen-weight hash once failed on it (exit 70)."""
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaTokenizer
    import tiny as tiny_models

    tokenizer = LlamaTokenizer.from_pretrained(tiny["llama"])
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2, num_key_value_heads=1, head_dim=16, max_position_embeddings=256,
                              sliding_window=8, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.eos_token_id, architectures=["Gemma3ForCausalLM"])
    folder = tiny_models._save(tmp_path / "gemma3", tokenizer, Gemma3ForCausalLM, config, seed=0)
    loaded = load_model(load_info(str(folder)), device="cpu", dtype="float32")
    assert any(b.dim() == 0 for b in loaded.model.buffers())
    before = parameters_sha256(loaded.model)
    loaded.model.model.embed_tokens.embed_scale.add_(1.0)  # the 0-dim buffer is covered by the hash
    assert parameters_sha256(loaded.model) != before

    rows = [{"text": w, "label": i % 2} for i, w in enumerate(["great movie", "bad plot"] * 4)]
    data = write(tmp_path / "train.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    template = write(tmp_path / "t.yaml", "kind: manual\ntext: 'review : {{ text }} it was {{ mask }}'\n" + VERB)
    result = tune(template, data, str(folder), out=tmp_path / "prompt", progress=False, virtual_tokens=2, epochs=1,
                  batch_size=4, lr=0.1)
    assert load_file(result.out_dir / "adapter_model.safetensors")["prompt_embeddings"].shape == (2, 32)


def test_sgd_and_cosine_are_what_they_say():
    """The optimizer and schedule asked for are the ones used (an unknown one is an error: test_options)."""
    from promptcli.tuning.trainer import make_optimizer, make_scheduler

    prompt = SoftPrompt(torch.zeros(2, 4))
    config = TuneConfig(template="t", train="d", optimizer="sgd", schedule="cosine", lr=1.0)
    optimizer = make_optimizer(prompt, config)
    assert isinstance(optimizer, torch.optim.SGD)
    scheduler = make_scheduler(optimizer, config, total=10)
    rates = []
    for _ in range(10):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[5] == pytest.approx(0.5) and rates[0] == 1.0  # cos(π/2): half way; linear would be the same
    assert rates[2] == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.2)))  # 0.905, linear: 0.8


def test_a_prompt_is_trained_on_the_distribution_run_evaluates(tiny, tmp_path):
    """`tune` ignored `normalize: pmi` and calibration while `run --soft-prompt` applied both. With lr 0 the
    first step's loss is the mean cross-entropy of the untrained prompt over all the training rows, which
    must equal what `run --soft-prompt` gives on the same rows."""
    template = write(tmp_path / "pmi.yaml", "kind: manual\ntext: 'Review: {{ text }} It was {{ mask }}'\n"
                     f"scoring: {{normalize: pmi, calibrate: contextual}}\nverbalizer: {SST2_WORDS}\n")
    train = write(tmp_path / "train.jsonl", "".join(json.dumps(r) + "\n" for r in sentences(8)))
    result = tune(template, train, tiny["gpt2"], out=tmp_path / "p", progress=False, virtual_tokens=3, epochs=1,
                  lr=0.0, batch_size=8, init="vocab", eval_every=1)
    assert result.manifest.scoring == {"normalize": "pmi", "calibrate": "contextual"}
    loss = result.curve[1]["train_loss"]  # curve[0]: the untrained prompt, before any step
    run = promptcli.run(template, train, tiny["gpt2"], soft_prompt=str(tmp_path / "p"), out=tmp_path / "r",
                        progress=False, cache=False)
    assert set(run.record.calibration) == {"contextual", "pmi_premise_word_scores"}
    expected = -sum(math.log(p.probs[p.gold]) for p in run.predictions) / len(run.predictions)
    assert loss == pytest.approx(expected, rel=1e-4)


def test_a_fewshot_template_tunes_with_demonstrations_from_the_training_rows(tiny, tmp_path, monkeypatch):
    """`tune` refused a few-shot template ("pass the training data with --train") although --train was given."""
    template = write(tmp_path / "fewshot.yaml", "kind: manual\ntext: 'Review: {{ text }} It was {{ mask }}'\n"
                     f"verbalizer: {SST2_WORDS}\ndemonstrations: {{per_class: 1, select: balanced}}\n")
    train = write(tmp_path / "train.jsonl", "".join(json.dumps(r) + "\n" for r in sentences(8)))
    seen = {}
    real_fit = trainer_module.Trainer.fit

    def fit(self, *args, **kwargs):
        seen["train"] = self.train
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "fit", fit)
    result = tune(template, train, tiny["gpt2"], out=tmp_path / "p", progress=False, virtual_tokens=2, epochs=1)
    encoded = seen["train"].encoded
    assert all(e.demos == 2 for e in encoded)  # one per label, in every training prompt
    assert sum(e.skipped_self for e in encoded) == 2  # the two rows chosen as demonstrations never meet themselves
    run = promptcli.run(template, train, tiny["gpt2"], train=str(train), soft_prompt=str(result.out_dir),
                        out=tmp_path / "r", progress=False)
    assert run.record.counts["demonstrations"]["per_example"] == 2


def test_max_steps_and_about_ten_dev_evaluations_by_default(task, tmp_path):
    """Dev accuracy was computed every epoch (25 full dev passes in a short run), and runs had no step budget."""
    default = tuned(task, tmp_path, "a", epochs=5)  # 64 rows / 16 = 4 steps an epoch, 20 steps
    assert [c["step"] for c in default.curve] == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    per_epoch = tuned(task, tmp_path, "b", epochs=5, eval_every=0)
    assert [c["step"] for c in per_epoch.curve] == [0, 4, 8, 12, 16, 20]
    short = tuned(task, tmp_path, "c", epochs=5, max_steps=7, eval_every=3)
    assert short.manifest.training["steps"] == 7
    assert [c["step"] for c in short.curve] == [0, 3, 6, 7]  # the last step is always evaluated


def test_dev_rows_can_be_sampled_or_ranged(task, tmp_path, monkeypatch):
    """`--subsample`/`--rows` existed for run and sweep but not for tune's --dev (a full dev pass per evaluation)."""
    seen = {}
    real_fit = trainer_module.Trainer.fit

    def fit(self, *args, **kwargs):
        seen.setdefault("dev", []).append([e.gold for e in self.dev.dataset.examples])
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "fit", fit)
    sampled = tuned(task, tmp_path, "a", epochs=1, dev_subsample=10)
    ranged = tuned(task, tmp_path, "b", epochs=1, dev_rows="8:20")
    assert len(seen["dev"][0]) == 10 and sorted(Counter(seen["dev"][0]).values()) == [5, 5]  # stratified by label
    assert len(seen["dev"][1]) == 12
    assert sampled.manifest.hyperparameters["dev_subsample"] == 10 and ranged.manifest.hyperparameters["dev_rows"] == "8:20"


# prefix tuning: trainable key/value prefixes at every layer (causal models)

@pytest.fixture(scope="module")
def causal_task(task, tmp_path_factory):
    """The toy task with a tiny GPT-2 wide enough to learn it (initialisation 0.2, as the MLM's)."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Tokenizer
    import tiny

    root = tmp_path_factory.mktemp("causal-toy")
    vocab, merges = tiny._bpe_vocab(300, ["<|endoftext|>"])
    tokenizer = GPT2Tokenizer(vocab=vocab, merges=merges)
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=64, n_layer=2, n_head=4, n_positions=128,
                        initializer_range=0.2, bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    return {**task, "model": str(tiny._save(root / "gpt2", tokenizer, GPT2LMHeadModel, config, seed=0))}


def test_prefix_tuning_learns_and_reloads_exactly(causal_task, tmp_path):
    task = causal_task
    result = tuned(task, tmp_path, epochs=10, method="prefix", calibrate="none")
    assert result.initial_dev_accuracy <= 0.6 and result.best_dev_accuracy >= 0.8
    assert result.manifest.parameters["trainable"] == 8 * 2 * 2 * 64  # N × layers × (keys, values) × width
    folder = result.out_dir
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    assert list(tensors) == ["prompt_embeddings"] and tensors["prompt_embeddings"].shape == (8, 256)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert (config["peft_type"], config["num_layers"], config["num_attention_heads"], config["token_dim"]) == \
        ("PREFIX_TUNING", 2, 4, 64)
    runs = [promptcli.run(task["prefix"], task["dev"], task["model"], out=tmp_path / f"run{b}", progress=False,
                          soft_prompt=str(folder), cache=False, batch_size=b) for b in (16, 5)]
    assert runs[0].accuracy == result.best_dev_accuracy
    assert (tmp_path / "run16/predictions.jsonl").read_bytes() == (tmp_path / "run5/predictions.jsonl").read_bytes()
    plain = promptcli.run(task["prefix"], task["dev"], task["model"], out=tmp_path / "plain", progress=False)
    assert plain.predictions != runs[0].predictions  # the prefix is really used


def test_a_kv_prefix_with_shared_demonstrations_scores_as_without_the_prefix_cache(causal_task, tmp_path):
    """The demonstrations' shared cache is computed on top of the key/value prefix."""
    task = causal_task
    template = write(tmp_path / "few.yaml", "kind: manual\ntext: '{{ text }} it was {{ mask }}'\n" + VERB +
                     "demonstrations: {count: 4, select: balanced}\n")
    prompt = tune(str(template), task["train"], task["model"], out=tmp_path / "p", progress=False, virtual_tokens=4,
                  epochs=1, batch_size=16, method="prefix", lr=0.3)
    runs = [promptcli.run(str(template), task["dev"], task["model"], out=tmp_path / f"r{c}", progress=False,
                          train=task["train"], soft_prompt=str(prompt.out_dir), cache=False, prefix_cache=c)
            for c in (True, False)]
    assert runs[0].record.work["shared_prefix_tokens"] > 10 and runs[1].record.work["shared_prefix_tokens"] == 0
    for a, b in zip(runs[0].predictions, runs[1].predictions):
        assert a.pred == b.pred and a.probs == pytest.approx(b.probs, abs=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("peft") is None, reason="peft is not installed (pip install -e .[dev])")
@pytest.mark.parametrize("name,projection", [("gpt2", False), ("llama", False), ("bert", False), ("llama", True)])
def test_a_kv_prefix_loads_in_peft_with_the_same_logits(tiny, tmp_path, name, projection, task):
    """llama: grouped-query attention (2 kv heads of 4); projection: trained through an MLP, saved as its output."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM
    from promptcli.scoring.causal import cache_argument, cache_of

    template = write(tmp_path / "t.yaml", "kind: manual\ntext: '{{ text }} it was {{ mask }}'\n" + VERB)
    result = tune(str(template), task["train"], tiny[name], out=tmp_path / "p", progress=False, virtual_tokens=5,
                  epochs=1, batch_size=16, method="prefix", lr=0.1, prefix_projection=projection)
    prompt = load_soft_prompt(result.out_dir)
    assert json.loads((result.out_dir / "adapter_config.json").read_text())["prefix_projection"] is projection
    auto = AutoModelForMaskedLM if name == "bert" else AutoModelForCausalLM
    base = auto.from_pretrained(tiny[name]).eval()
    text = torch.tensor([[5, 6, 7, 8, 9, 10]])
    with torch.inference_mode():  # the text at positions 5…10, after the prefix, as the scorers feed it
        ours = base(input_ids=text, position_ids=5 + torch.arange(6)[None], attention_mask=torch.ones(1, 11).long(),
                    **{cache_argument(base): cache_of(prompt.key_values(), base.config)}).logits
    peft_model = PeftModel.from_pretrained(auto.from_pretrained(tiny[name]).eval(), str(result.out_dir))
    with torch.inference_mode():
        theirs = peft_model(input_ids=text, attention_mask=torch.ones_like(text)).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_prefix_tuning_through_a_projection_learns_and_saves_only_the_table(causal_task, tmp_path):
    task = causal_task
    result = tuned(task, tmp_path, epochs=16, method="prefix", calibrate="none", prefix_projection=True,
                   encoder_hidden=32, lr=0.01)
    assert result.initial_dev_accuracy <= 0.6 and result.best_dev_accuracy >= 0.8
    inputs, width = 8 * 64, 2 * 2 * 64  # N × kv width; the table's width: layers × (keys, values) × kv width
    assert result.manifest.parameters["trainable"] == inputs + (64 * 32 + 32) + (32 * width + width)
    assert load_file(str(result.out_dir / "adapter_model.safetensors"))["prompt_embeddings"].shape == (8, width)
    run = promptcli.run(task["prefix"], task["dev"], task["model"], out=tmp_path / "run", progress=False,
                        soft_prompt=str(result.out_dir), cache=False, batch_size=5)
    assert run.accuracy == result.best_dev_accuracy
    with pytest.raises(RunError, match="^--prefix-projection is for --method prefix, not prompt"):
        tune(task["prefix"], task["train"], task["model"], out=tmp_path / "bad", progress=False, prefix_projection=True)


def test_prefix_tuning_a_masked_lm_learns(task, tmp_path):
    result = tuned(task, tmp_path, epochs=10, method="prefix")
    assert result.initial_dev_accuracy <= 0.6 and result.best_dev_accuracy >= 0.8
    run = promptcli.run(task["prefix"], task["dev"], task["model"], out=tmp_path / "run", progress=False,
                        soft_prompt=str(result.out_dir), cache=False, batch_size=5)
    assert run.accuracy == result.best_dev_accuracy
