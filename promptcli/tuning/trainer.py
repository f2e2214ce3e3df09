"""Soft-prompt training: processes, initial embeddings, optimizer, schedule, loss, dev accuracy, the fit loop.

The loss is cross-entropy over the same label distribution `run` computes (`scoring/labels.py`:
PMI, verbalizer, calibration, each term computed with the current prompt), so a tuned prompt is
evaluated exactly as it was trained. Runs on one CPU or GPU, or data-parallel under
`accelerate launch` (each process takes its share of every batch; the prompt's gradient is summed
across processes before each step).
"""
from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import RunError
from ..evaluation.calibration import calibration_inputs
from ..evaluation.inputs import Prepared
from ..models.processes import Processes
from ..models.weights import LoadedModel
from ..prompt.soft import SoftPrompt, kv_table
from ..scoring import make_scorer
from ..scoring.base import chunks
from ..scoring.causal import cache_argument
from ..scoring.labels import LabelDistribution
from ..spec.options import DEFAULT_BATCH_SIZE
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainState, TuneConfig


def parameters_sha256(model: torch.nn.Module) -> str:
    """One hash over every model parameter and buffer: the proof they did not change."""
    digest = hashlib.sha256()
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        digest.update(name.encode())
        # no copy: hashed in place; reshape first, since a 0-dim tensor (Gemma 3's embed_scale) has no byte view
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def initial_embeddings(config: TuneConfig, loaded: LoadedModel, prepared: Prepared) -> torch.Tensor:
    """(N, H): random ±0.5 (Lester et al.), frequent vocabulary rows, a text's rows, or the label words' rows."""
    table = loaded.model.get_input_embeddings().weight.detach().float().cpu()
    if config.init == "random":
        generator = torch.Generator().manual_seed(config.seed)
        return torch.rand((config.virtual_tokens, table.shape[1]), generator=generator) - 0.5
    return table[torch.tensor(initial_ids(config, loaded, prepared))].clone()


def initial_prefix(config: TuneConfig, loaded: LoadedModel, prepared: Prepared) -> torch.Tensor:
    """A key/value prefix to start from: the model's own keys and values for N real tokens (Li & Liang found
    real activations train better than noise); `random` draws the tokens from the whole vocabulary."""
    if config.init == "random":
        generator = torch.Generator().manual_seed(config.seed)
        ids = torch.randint(loaded.model.get_input_embeddings().num_embeddings, (config.virtual_tokens,),
                            generator=generator).tolist()
    else:
        ids = initial_ids(config, loaded, prepared)
    from transformers import DynamicCache

    cache = DynamicCache(config=loaded.model.config)  # filled by the forward (an encoder's too, when given one)
    with torch.no_grad():
        loaded.model.base_model(input_ids=torch.tensor([ids], device=loaded.device),
                                **{cache_argument(loaded.model.base_model): cache})
    return kv_table([(layer.keys, layer.values) for layer in cache.layers]).float().cpu()


def initial_ids(config: TuneConfig, loaded: LoadedModel, prepared: Prepared) -> list[int]:
    """N token ids to start from: frequent vocabulary tokens, a text's tokens, or the label words' tokens."""
    n = config.virtual_tokens
    generator = torch.Generator().manual_seed(config.seed)
    tok = loaded.tokenizer
    if config.init == "vocab":  # BPE/SentencePiece ids are roughly ordered by frequency: sample the first 5,000
        special = set(tok.all_special_ids)
        pool = [i for i in range(min(5000, loaded.model.get_input_embeddings().num_embeddings)) if i not in special]
        ids = [pool[int(i)] for i in torch.randint(len(pool), (n,), generator=generator)]
    elif config.init == "text":
        if not config.init_text:
            raise RunError("--init text needs --init-text")
        ids = tok(config.init_text, add_special_tokens=False)["input_ids"]
    else:  # labels
        ids = [i for word in prepared.encoded[0].words.ids for i in word]
    if not ids:
        raise RunError(f"--init {config.init} found no tokens to start from")
    return (ids * math.ceil(n / len(ids)))[:n]


def make_scheduler(optimizer: torch.optim.Optimizer, config: TuneConfig, total: int):
    from transformers import (get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup,
                              get_linear_schedule_with_warmup)

    if config.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, config.warmup)
    if config.schedule == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, config.warmup, max(total, 1))
    return get_linear_schedule_with_warmup(optimizer, config.warmup, max(total, 1))


def make_optimizer(prompt: SoftPrompt, config: TuneConfig) -> torch.optim.Optimizer:
    params = list(prompt.parameters())  # the embeddings, or the prompt encoder's weights
    if config.optimizer == "adafactor":
        from transformers.optimization import Adafactor
        return Adafactor(params, lr=config.lr, scale_parameter=False, relative_step=False, warmup_init=False,
                         weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=0.9, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


class Trainer:
    def __init__(self, config: TuneConfig, loaded: LoadedModel, prompt: SoftPrompt, train: Prepared,
                 dev: Prepared | None, processes: Processes):
        """`processes`: each takes its share of every batch (and of the dev rows); gradients are summed."""
        self.config, self.loaded, self.prompt, self.train, self.dev = config, loaded, prompt, train, dev
        self.processes = processes
        self.labels = {label: i for i, label in enumerate(train.verbalizer.labels)}
        self.autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
        self.device_type = loaded.device.type
        # the premise (PMI) and content-free inputs (calibration), encoded once with the prompt's places
        self.terms = {id(train): calibration_inputs(train)}
        if dev is not None:
            self.terms[id(dev)] = calibration_inputs(dev)

    def distribution(self, prepared: Prepared, word_scores: Callable) -> LabelDistribution:
        premise, content_free = self.terms[id(prepared)]
        return LabelDistribution.fit(prepared.verbalizer, prepared.scoring, word_scores, premise, content_free)

    def loss(self, batch) -> torch.Tensor:
        scorer = make_scorer(self.loaded, self.train.scoring.model_copy(
            update={"batch_size": max(len(batch), 1), "prefix_cache": False}))
        gold = torch.tensor([self.labels[self.train.gold[e.index]] for e in batch])
        with torch.autocast(self.device_type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None):
            log_probs = self.distribution(self.train, scorer.word_scores)(scorer.word_scores(batch))
        return torch.nn.functional.nll_loss(log_probs.float(), gold.to(log_probs.device))

    @torch.no_grad()
    def dev_accuracy(self) -> float | None:
        if self.dev is None:
            return None
        processes = self.processes
        mine = self.dev.encoded[processes.rank::processes.world]
        scorer = make_scorer(self.loaded, self.dev.scoring.model_copy(update={"batch_size": DEFAULT_BATCH_SIZE}))
        labels = self.dev.verbalizer.labels
        correct = 0
        with torch.inference_mode():
            distribution = self.distribution(self.dev, scorer.word_scores)
            if mine and self.loaded.kind == "causal":
                scorer.share_prefix([e.context for e in mine])
            for batch in chunks(mine, DEFAULT_BATCH_SIZE):
                best = distribution(scorer.word_scores(batch)).argmax(-1).tolist()
                correct += sum(labels[b] == self.dev.gold[e.index] for e, b in zip(batch, best))
        correct, count = processes.total([correct, len(mine)])
        return correct / count

    def fit(self, out_dir: Path, resume: bool, display: Any = None) -> tuple[TrainState, torch.Tensor]:
        """Train for `epochs` (or `max_steps`), evaluating on dev and checkpointing every `eval_every` steps
        (0: each epoch; default: about ten times in all, and always after the last step); returns the final
        state and the best prompt. Uses its own seeded RNG state, so the caller's global random state is
        untouched."""
        config, prompt = self.config, self.prompt
        examples = self.train.encoded
        per_step = config.batch_size * config.accumulation
        per_epoch = math.ceil(len(examples) / per_step)
        total = min(per_epoch * config.epochs, config.max_steps or per_epoch * config.epochs)
        optimizer = make_optimizer(prompt, config)
        scheduler = make_scheduler(optimizer, config, total)
        eval_every = per_epoch if config.eval_every == 0 else config.eval_every or math.ceil(total / 10)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            state, best = TrainState(), prompt.current().detach().clone()
            if resume:
                saved = load_checkpoint(out_dir)
                prompt.load_state_dict(saved["prompt"])
                best = saved["best"].to(best)
                optimizer.load_state_dict(saved["optimizer"])
                scheduler.load_state_dict({**scheduler.state_dict(), **saved["scheduler"]})
                torch.set_rng_state(saved["rng"])
                state = saved["state"]
            task = display.add_task("tune", total=total, completed=state.step, unit="steps") if display else None

            def evaluate(loss: float | None) -> None:
                """Record dev accuracy; keep the best prompt; checkpoint; decide whether to stop early."""
                nonlocal best
                accuracy = self.dev_accuracy()
                state.curve.append({"step": state.step, "epoch": state.epoch, "train_loss": loss,
                                    "dev_accuracy": accuracy})
                if accuracy is None or state.best is None or accuracy > state.best:
                    state.best, state.bad_evals = accuracy, 0
                    best = prompt.current().detach().clone()
                else:
                    state.bad_evals += 1
                state.stopped_early = config.patience is not None and state.bad_evals >= config.patience
                if self.processes.main:
                    save_checkpoint(out_dir, prompt=prompt.state_dict(), best=best, optimizer=optimizer,
                                    scheduler=scheduler, state=state)

            if not state.curve:
                evaluate(None)  # the untrained prompt, for comparison
            while state.step < total and not state.stopped_early:
                order = torch.randperm(len(examples),
                                       generator=torch.Generator().manual_seed(config.seed + state.epoch)).tolist()
                steps = [order[i:i + per_step] for i in range(0, len(order), per_step)]
                for position in range(state.batch, len(steps)):
                    loss = self._step(steps[position], optimizer, scheduler, state)
                    state.batch = position + 1
                    if display:
                        last = state.curve[-1]["dev_accuracy"] if state.curve else None
                        display.update(task, advance=1, description=f"tune · epoch {state.epoch + 1} · loss "
                                       f"{loss:.4f}" + (f" · dev {last:.1%}" if last is not None else ""))
                    if state.step % eval_every == 0 or state.step == total:
                        evaluate(loss)
                        if state.stopped_early or state.step == total:
                            break
                else:
                    state.epoch += 1
                    state.batch = 0
        return state, best

    def _step(self, rows: list[int], optimizer: torch.optim.Optimizer, scheduler: Any, state: TrainState) -> float:
        """One optimizer step over `rows` (accumulated in chunks of batch_size); returns the mean loss."""
        config, processes = self.config, self.processes
        started = time.perf_counter()
        losses = []
        for start in range(0, len(rows), config.batch_size):
            chunk = rows[start:start + config.batch_size]
            mine = [self.train.encoded[i] for i in chunk[processes.rank::processes.world]]
            if mine:
                loss = self.loss(mine) * len(mine) / len(rows)
                loss.backward()
                losses.append(float(loss.detach()) * len(rows) / len(mine))
        params = list(self.prompt.parameters())
        if processes.world > 1:  # each process scaled its loss by its share of the batch (maybe none of it)
            for param in params:
                if param.grad is None:
                    param.grad = torch.zeros_like(param)
                processes.add_up(param.grad)
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.seconds += time.perf_counter() - started
        return processes.total([sum(losses) / max(len(losses), 1)])[0] / processes.world
