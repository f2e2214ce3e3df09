"""Scenario (f): soft-prompt training steps/s, `promptcli tune` vs PEFT, for each `--tune-method`.

Both train N virtual tokens in front of the same frozen causal LM (eval mode: no dropout) on
the same rows, in the same batches (promptcli's seeded order per epoch), with the same
optimiser (AdamW, no weight decay, linear decay, gradient clipping at 1.0), from the same
initial state (promptcli's `--init random`: the embeddings; for P-tuning, promptcli's seeded
encoder, loaded into PEFT's `PromptEncoder`; for prefix tuning, the key/value table of N random
tokens), and the same loss: cross-entropy over the
label words' logits at the last position, which is what promptcli's loss (log-softmax over
the labels of the word log-probs) comes to when each label has one single-token word and the
slot ends the prompt. So the two runs should end with the same prompt, and the loss of their
last step is reported side by side.

PEFT's side is the floor: `get_peft_model(base, PromptTuningConfig(...))` (or
`PromptEncoderConfig`, `PrefixTuningConfig`) once, the batches
built once, and a hand loop (logits kept at each row's last position only, through
`logits_to_keep`); each timed run resets the prompt and the optimiser and times the steps
alone. promptcli's side is `promptcli.tune(...)` as a user calls it, timed whole
minus loading the weights (it also reads and encodes the rows and writes a checkpoint at
each epoch's end and the prompt at the end); its own step time (`train_seconds` in its
manifest) is reported beside.
"""
from __future__ import annotations

import itertools
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch

import promptcli.tuning.tuner as tuning

LR, SEED = 3e-2, 42


def tune_options(job: dict) -> dict[str, Any]:
    """The `tune` options both sides share (the rest are tune's defaults, mirrored by the hand loop)."""
    return {"virtual_tokens": job["virtual_tokens"], "epochs": job["epochs"], "batch_size": job["tune_batch_size"],
            "lr": LR, "seed": SEED, "device": "cpu", "method": job.get("tune_method", "prompt")}


def epoch_batches(examples: int, batch_size: int, epochs: int, seed: int) -> list[list[int]]:
    """promptcli's data order: each epoch a permutation seeded by seed + epoch, cut into batches."""
    steps = []
    for epoch in range(epochs):
        order = torch.randperm(examples, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        steps += [order[i:i + batch_size] for i in range(0, examples, batch_size)]
    return steps


def random_init(tokens: int, hidden: int, seed: int) -> torch.Tensor:
    """promptcli's `--init random` (Lester et al.): uniform in ±0.5 from a generator seeded with the seed."""
    return torch.rand((tokens, hidden), generator=torch.Generator().manual_seed(seed)) - 0.5


class PeftLoop:
    """PEFT's prompt tuning, P-tuning (MLP encoder) or prefix tuning on promptcli's encoded rows."""

    def __init__(self, model: Any, prepared: Any, options: dict[str, Any]):
        n, method = options["virtual_tokens"], options["method"]
        self.options = options
        self.init = {k: v.detach().clone() for k, v in initial_state(model, method, n, options["seed"]).items()}
        self.peft = get_peft_model_for(model, method, n).eval()
        self.encoder = self.peft.prompt_encoder["default"]
        self.encoder.load_state_dict(self.init)
        encoded = prepared.encoded
        base = model.get_input_embeddings().num_embeddings
        virtual = 0 if method == "prefix" else n  # prefix: no virtual ids in the text, logits for the text alone
        if encoded[0].context[:virtual] != tuple(range(base, base + virtual)):
            raise ValueError("expected the soft prompt as an N-token prefix (no {{ soft(n) }} in the template)")
        if any(len(w) != 1 for e in encoded for w in e.words.ids) or any(e.suffix for e in encoded):
            raise ValueError("the PEFT loop scores one single-token word per label with the slot ending the prompt")
        self.label_ids = torch.tensor([w[0] for w in encoded[0].words.ids])
        labels = {label: i for i, label in enumerate(prepared.verbalizer.labels)}
        tok = prepared.info.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        self.batches = []
        for rows in epoch_batches(len(encoded), options["batch_size"], options["epochs"], options["seed"]):
            own = [encoded[i].context[virtual:] for i in rows]  # the text after any virtual ids
            width = max(len(o) for o in own)
            ids = torch.tensor([list(o) + [pad_id] * (width - len(o)) for o in own])
            mask = torch.tensor([[1] * len(o) + [0] * (width - len(o)) for o in own])
            last = torch.tensor([[virtual + len(o) - 1] for o in own])  # (B, 1): the logits' positions
            gold = torch.tensor([labels[prepared.gold[encoded[i].index]] for i in rows])
            self.batches.append((ids, mask, last, gold))

    def prompt(self) -> torch.Tensor:
        """What promptcli saves: the embeddings (the encoder's output, for P-tuning) or the key/value table."""
        if self.options["method"] == "p-tuning":
            return self.encoder(torch.arange(self.options["virtual_tokens"])[None])[0]
        return self.encoder.embedding.weight

    def train(self) -> list[float]:
        """Reset the prompt and optimiser, run every step; the loss of each step."""
        from transformers import get_linear_schedule_with_warmup

        self.encoder.load_state_dict(self.init)
        trainable = [p for p in self.encoder.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=self.options["lr"], weight_decay=0.0)
        schedule = get_linear_schedule_with_warmup(optimizer, 0, len(self.batches))
        losses = []
        for ids, mask, last, gold in self.batches:
            logits = self.peft(input_ids=ids, attention_mask=mask, logits_to_keep=last).logits[:, 0]  # (B, V)
            loss = torch.nn.functional.cross_entropy(logits[:, self.label_ids].float(), gold)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        return losses


def get_peft_model_for(model: Any, method: str, n: int) -> Any:
    from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, get_peft_model

    config = {"prompt": PromptTuningConfig, "prefix": PrefixTuningConfig,
              "p-tuning": PromptEncoderConfig}[method](task_type="CAUSAL_LM", num_virtual_tokens=n)
    return get_peft_model(model, config)


def initial_state(model: Any, method: str, n: int, seed: int) -> dict[str, torch.Tensor]:
    """promptcli's `--init random` start for `method`, as the state dict of PEFT's prompt encoder."""
    from types import SimpleNamespace

    from promptcli.prompt.reparam import PromptEncoder
    from promptcli.tuning.trainer import initial_prefix

    if method == "prefix":  # the model's keys and values for N tokens drawn from the whole vocabulary
        config = SimpleNamespace(init="random", seed=seed, virtual_tokens=n)
        return {"embedding.weight": initial_prefix(config, SimpleNamespace(model=model, device="cpu"), None)}
    embeddings = random_init(n, model.get_input_embeddings().embedding_dim, seed)
    if method == "p-tuning":  # the same layer names as PEFT's PromptEncoder
        return PromptEncoder(embeddings, "mlp", None, seed).state_dict()
    return {"embedding.weight": embeddings}


def prepare_training(model: Any, job: dict) -> Any:
    """promptcli's encoding of the training rows with the prompt's places (an N-token prefix's ids, or none
    for a key/value prefix)."""
    import math

    from promptcli.evaluation.inputs import prepare
    from promptcli.prompt.soft import KvPrefix, SoftPrompt, kv_shape
    from promptcli.spec.runconfig import RunConfig

    n, hidden = job["virtual_tokens"], model.get_input_embeddings().embedding_dim
    shape = kv_shape(model.config)
    places = (KvPrefix(torch.zeros(n, 2 * math.prod(shape)), shape) if job.get("tune_method") == "prefix"
              else SoftPrompt(torch.zeros(n, hidden)))
    config = RunConfig(template=job["template"], data=job["train"], model=job["model"], device="cpu", dtype="float32")
    return prepare(config, soft=places)


def measure_peft(job: dict) -> tuple[Callable[[], float], Callable[[], dict]]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(job["model"], dtype=torch.float32)
    loop = PeftLoop(model, prepare_training(model, job), tune_options(job))
    last: dict = {}

    def once() -> float:
        start = time.perf_counter()
        last["losses"] = loop.train()
        return time.perf_counter() - start

    return once, lambda: {"examples": len(loop.batches), "last_loss": last["losses"][-1]}


def measure_promptcli_tune(job: dict) -> tuple[Callable[[], float], Callable[[], dict]]:
    """`promptcli.tune` as a user calls it; its time is the whole call minus loading the weights."""

    weights: list[float] = []
    load_model = tuning.load_model

    def timed_load_model(*args, **kwargs):
        start = time.perf_counter()
        loaded = load_model(*args, **kwargs)
        weights.append(time.perf_counter() - start)
        return loaded

    tuning.load_model = timed_load_model
    work = Path(job["workdir"]) / "promptcli-tune"
    counter = itertools.count()
    loops: list[float] = []
    last: dict = {}

    def once() -> float:
        out = work / f"tune-{next(counter)}"
        start = time.perf_counter()
        result = tuning.tune(job["template"], job["train"], job["model"], out=out, progress=False,
                             **tune_options(job))
        wall = time.perf_counter() - start
        last["manifest"] = result.manifest
        loops.append(result.manifest.training["train_seconds"])
        shutil.rmtree(out, ignore_errors=True)
        return wall - weights[-1]

    def finish() -> dict:
        training = last["manifest"].training
        curve = last["manifest"].dev_curve
        return {"examples": training["steps"], "loop_seconds": loops[1:],  # [0] was the warm-up
                "last_loss": curve[-1]["train_loss"]}

    return once, finish
