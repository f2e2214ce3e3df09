"""The pieces of soft-prompt training: processes, initial embeddings, optimizer, loss and dev accuracy."""
from __future__ import annotations

import hashlib
import math
import os
from typing import TYPE_CHECKING

import torch

from .errors import RunError
from .models import LoadedModel
from .runner import Prepared
from .scoring import make_scorer
from .scoring.base import ScoringOptions
from .softprompt import SoftPrompt

if TYPE_CHECKING:
    from .tuning import TuneConfig


class Distributed:
    """Rank and world size under `accelerate launch`; a single process otherwise."""

    def __init__(self, device: str):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = device
        if self.world > 1:
            try:
                from accelerate import PartialState
            except ImportError:
                raise RunError("WORLD_SIZE > 1 needs accelerate: pip install accelerate") from None
            state = PartialState()  # sets up the process group
            self.device = str(state.device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            torch.distributed.all_reduce(tensor)
            tensor /= self.world
        return tensor

    def total(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            torch.distributed.all_reduce(tensor)
        return tensor


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
    n = config.virtual_tokens
    generator = torch.Generator().manual_seed(config.seed)
    tok = loaded.tokenizer
    if config.init == "random":
        return torch.rand((n, table.shape[1]), generator=generator) - 0.5
    if config.init == "vocab":  # BPE/SentencePiece ids are roughly ordered by frequency: sample the first 5,000
        special = set(tok.all_special_ids)
        pool = [i for i in range(min(5000, table.shape[0])) if i not in special]
        ids = [pool[int(i)] for i in torch.randint(len(pool), (n,), generator=generator)]
    elif config.init == "text":
        if not config.init_text:
            raise RunError("--init text needs --init-text")
        ids = tok(config.init_text, add_special_tokens=False)["input_ids"]
    else:  # labels
        ids = [i for word in prepared.encoded[0].words.ids for i in word]
    if not ids:
        raise RunError(f"--init {config.init} found no tokens to start from")
    ids = (ids * math.ceil(n / len(ids)))[:n]
    return table[torch.tensor(ids)].clone()


def make_scheduler(optimizer: torch.optim.Optimizer, config: TuneConfig, total: int):
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    if config.schedule == "constant":
        return get_constant_schedule_with_warmup(optimizer, config.warmup)
    return get_linear_schedule_with_warmup(optimizer, config.warmup, max(total, 1))


def make_optimizer(prompt: SoftPrompt, config: TuneConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adafactor":
        from transformers.optimization import Adafactor
        return Adafactor([prompt.embeddings], lr=config.lr, scale_parameter=False, relative_step=False,
                         warmup_init=False, weight_decay=config.weight_decay)
    return torch.optim.AdamW([prompt.embeddings], lr=config.lr, weight_decay=config.weight_decay)


class Trainer:
    def __init__(self, config: TuneConfig, loaded: LoadedModel, prompt: SoftPrompt, train: Prepared,
                 dev: Prepared | None, dist: Distributed):
        self.config, self.loaded, self.prompt, self.train, self.dev, self.dist = config, loaded, prompt, train, dev, dist
        self.labels = {label: i for i, label in enumerate(train.verbalizer.labels)}
        self.autocast = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.precision)
        self.device_type = loaded.device.type

    def loss(self, batch) -> torch.Tensor:
        scorer = make_scorer(self.loaded, ScoringOptions(batch_size=len(batch) or 1, prefix_cache=False,
                                                         multi_token=self.train.verbalizer.multi_token,
                                                         normalize=self.train.template.spec.scoring.normalize))
        gold = torch.tensor([self.labels[self.train.gold[e.index]] for e in batch])
        with torch.autocast(self.device_type, dtype=self.autocast or torch.float32, enabled=self.autocast is not None):
            log_probs = self.train.verbalizer.combine(scorer.word_scores(batch)).log_softmax(-1)
        return torch.nn.functional.nll_loss(log_probs.float(), gold.to(log_probs.device))

    @torch.no_grad()
    def dev_accuracy(self) -> float | None:
        if self.dev is None:
            return None
        mine = self.dev.encoded[self.dist.rank::self.dist.world]
        scorer = make_scorer(self.loaded, ScoringOptions(batch_size=32, multi_token=self.dev.verbalizer.multi_token,
                                                         normalize=self.dev.template.spec.scoring.normalize))
        labels = self.dev.verbalizer.labels
        correct = 0
        with torch.inference_mode():
            if mine and self.loaded.kind == "causal":
                scorer.share_prefix([e.context for e in mine])
            for start in range(0, len(mine), 32):
                batch = mine[start:start + 32]
                best = self.dev.verbalizer.combine(scorer.word_scores(batch)).argmax(-1).tolist()
                correct += sum(labels[b] == self.dev.gold[e.index] for e, b in zip(batch, best))
        counts = self.dist.total(torch.tensor([float(correct), float(len(mine))]))
        return float(counts[0] / counts[1])
