"""Scenario (f): soft-prompt training steps/s, `promptcli tune` vs PEFT prompt tuning.

Both train N virtual tokens in front of the same frozen causal LM (eval mode: no dropout) on
the same rows, in the same batches (promptcli's seeded order per epoch), with the same
optimiser (AdamW, no weight decay, linear decay, gradient clipping at 1.0), from the same
initial embeddings (promptcli's `--init random`), and the same loss: cross-entropy over the
label words' logits at the last position, which is what promptcli's loss (log-softmax over
the labels of the word log-probs) comes to when each label has one single-token word and the
slot ends the prompt. So the two runs should end with the same prompt, and the loss of their
last step is reported side by side.

PEFT's side is the floor: `get_peft_model(base, PromptTuningConfig(...))` once, the batches
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
            "lr": LR, "seed": SEED, "device": "cpu"}


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
    """PEFT prompt tuning on promptcli's encoded rows (without their virtual-token ids)."""

    def __init__(self, model: Any, prepared: Any, options: dict[str, Any]):
        from peft import PromptTuningConfig, get_peft_model

        n = options["virtual_tokens"]
        self.options = options
        self.peft = get_peft_model(model, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=n)).eval()
        self.weight = self.peft.prompt_encoder["default"].embedding.weight  # (N, H), the only trainable tensor
        self.init = random_init(n, self.weight.shape[1], options["seed"])
        encoded = prepared.encoded
        base = model.get_input_embeddings().num_embeddings
        if encoded[0].context[:n] != tuple(range(base, base + n)):
            raise ValueError("expected the soft prompt as an N-token prefix (no {{ soft(n) }} in the template)")
        if any(len(w) != 1 for e in encoded for w in e.words.ids) or any(e.suffix for e in encoded):
            raise ValueError("the PEFT loop scores one single-token word per label with the slot ending the prompt")
        self.label_ids = torch.tensor([w[0] for w in encoded[0].words.ids])
        labels = {label: i for i, label in enumerate(prepared.verbalizer.labels)}
        tok = prepared.info.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        self.batches = []
        for rows in epoch_batches(len(encoded), options["batch_size"], options["epochs"], options["seed"]):
            own = [encoded[i].context[n:] for i in rows]  # the text after the N virtual ids
            width = max(len(o) for o in own)
            ids = torch.tensor([list(o) + [pad_id] * (width - len(o)) for o in own])
            mask = torch.tensor([[1] * len(o) + [0] * (width - len(o)) for o in own])
            last = torch.tensor([[n + len(o) - 1] for o in own])  # (B, 1): positions count the virtual tokens
            gold = torch.tensor([labels[prepared.gold[encoded[i].index]] for i in rows])
            self.batches.append((ids, mask, last, gold))

    def train(self) -> list[float]:
        """Reset the prompt and optimiser, run every step; the loss of each step."""
        from transformers import get_linear_schedule_with_warmup

        with torch.no_grad():
            self.weight.copy_(self.init)
        optimizer = torch.optim.AdamW([self.weight], lr=self.options["lr"], weight_decay=0.0)
        schedule = get_linear_schedule_with_warmup(optimizer, 0, len(self.batches))
        losses = []
        for ids, mask, last, gold in self.batches:
            logits = self.peft(input_ids=ids, attention_mask=mask, logits_to_keep=last).logits[:, 0]  # (B, V)
            loss = torch.nn.functional.cross_entropy(logits[:, self.label_ids].float(), gold)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([self.weight], 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
        return losses


def prepare_training(model: Any, job: dict) -> Any:
    """promptcli's encoding of the training rows with an N-token soft prefix (its ids, not its values)."""
    from promptcli.evaluation.inputs import prepare
    from promptcli.spec.runconfig import RunConfig
    from promptcli.prompt.soft import SoftPrompt

    hidden = model.get_input_embeddings().embedding_dim
    config = RunConfig(template=job["template"], data=job["train"], model=job["model"], device="cpu", dtype="float32")
    return prepare(config, soft=SoftPrompt(torch.zeros(job["virtual_tokens"], hidden)))


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
