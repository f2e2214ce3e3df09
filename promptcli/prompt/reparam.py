"""Reparameterised prompts: what trains is a small network over trainable inputs, and the prompt is its
output, which trains more stably than the prompt itself. P-tuning's prompt encoder (Liu et al., 2021)
produces virtual-token embeddings; prefix tuning's projection (Li & Liang, 2021) the key/value table.

Laid out as PEFT's `PromptEncoder` (`embedding`, `mlp_head`, `lstm_head`) and `PrefixEncoder` with
`prefix_projection` (`embedding`, `transform`): the same layers in the same order, so their weights
carry the same names and PEFT's weights load as they are. Only the output is saved (PEFT saves the
same, `prompt_embeddings`): inference needs no encoder.
"""
from __future__ import annotations

import torch


class PromptEncoder(torch.nn.Module):
    def __init__(self, initial: torch.Tensor, kind: str = "mlp", hidden: int | None = None, seed: int = 0):
        """`initial`: (N, H) inputs (the encoder's `embedding`); `hidden`: the encoder's width (default H); the
        layers' initial weights (PyTorch's default initialisation) drawn with `seed`, so a tune reproduces."""
        super().__init__()
        tokens, dim = initial.shape
        hidden = hidden or dim
        self.kind = kind
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._build(tokens, dim, hidden)
        with torch.no_grad():
            self.embedding.weight.copy_(initial)

    def _build(self, tokens: int, dim: int, hidden: int) -> None:
        self.embedding = torch.nn.Embedding(tokens, dim)
        linear, relu = torch.nn.Linear, torch.nn.ReLU
        kind = self.kind
        if kind == "lstm":  # two bidirectional layers, then a two-layer MLP, as PEFT's
            self.lstm_head = torch.nn.LSTM(input_size=dim, hidden_size=hidden, num_layers=2, dropout=0.0,
                                           bidirectional=True, batch_first=True)
            self.mlp_head = torch.nn.Sequential(linear(2 * hidden, 2 * hidden), relu(), linear(2 * hidden, dim))
        else:
            self.mlp_head = torch.nn.Sequential(linear(dim, hidden), relu(), linear(hidden, hidden), relu(),
                                                linear(hidden, dim))

    @property
    def tokens(self) -> int:
        return self.embedding.num_embeddings

    @property
    def hidden(self) -> int:
        return self.mlp_head[0].out_features if self.kind == "mlp" else self.lstm_head.hidden_size

    def forward(self) -> torch.Tensor:
        """(N, H): the virtual tokens' embeddings."""
        inputs = self.embedding.weight[None]
        if self.kind == "lstm":
            inputs = self.lstm_head(inputs)[0]
        return self.mlp_head(inputs)[0]


class PrefixProjection(torch.nn.Module):
    def __init__(self, tokens: int, dim: int, width: int, hidden: int | None = None, seed: int = 0):
        """N inputs of `dim` (PEFT's token_dim: key/value heads × head dim), through Linear → tanh → Linear
        (`hidden` wide, default `dim`) to the (N, `width`) key/value table; every weight drawn with `seed`
        (PyTorch's default initialisation, PEFT's too)."""
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.embedding = torch.nn.Embedding(tokens, dim)
            self.transform = torch.nn.Sequential(torch.nn.Linear(dim, hidden or dim), torch.nn.Tanh(),
                                                 torch.nn.Linear(hidden or dim, width))

    @property
    def tokens(self) -> int:
        return self.embedding.num_embeddings

    @property
    def hidden(self) -> int:
        return self.transform[0].out_features

    def forward(self) -> torch.Tensor:
        """(N, width): the key/value table."""
        return self.transform(self.embedding.weight)
