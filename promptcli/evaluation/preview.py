"""`render`: exactly what the model receives for a few rows, without loading weights."""
from __future__ import annotations

from typing import Any

from ..errors import RunError
from ..prompt.encode import LEAD
from ..spec.runconfig import RunConfig, checked
from .inputs import load_inputs, prepare


def render_rows(template: str, data: str, *, model: str | None = None, limit: int | None = 3,
                **options: Any) -> list[dict[str, Any]]:
    """One dict per row, demonstrations included.

    With a model (its tokenizer only): the model's input decoded from the token ids — for MLM
    the text with the mask tokens, for causal the context and each label's continuations
    (after the chat template when the template asks for it). Without one: the rendered text
    with the slot marked, and each label's continuation text. `options` are RunConfig fields.
    """
    given = {"template": str(template), "data": str(data), "model": model, "limit": limit, **options}
    config = checked(RunConfig, {k: v for k, v in given.items() if v is not None})
    if model is None:
        return _plain(config)
    prepared = prepare(config)
    tok = prepared.info.tokenizer
    verb = prepared.verbalizer
    base = prepared.encoder.virtual.base if prepared.encoder.virtual else None

    def decode(ids) -> str:  # a soft prompt's tokens show as [soft]
        if base is None:
            return tok.decode(list(ids))
        text, run = "", []
        for i in list(ids) + [None]:
            if i is not None and i < base:
                run.append(i)
                continue
            text += tok.decode(run) if run else ""
            run = []
            text += "[soft]" if i is not None else ""
        return text

    rows = []
    for example, enc in zip(prepared.dataset.examples, prepared.encoded):
        row: dict[str, Any] = {"index": example.index, "line": example.line, "gold": example.gold,
                               "scorer": prepared.info.kind, "truncated": enc.truncated, "demonstrations": enc.demos}
        if prepared.renderer.generative:
            row["prompt"] = decode(enc.context)
        elif prepared.info.kind == "mlm":
            lengths = sorted({len(ids) for ids in enc.words.ids})
            inputs = {n: decode(enc.context + (tok.mask_token_id,) * n + enc.suffix) for n in lengths}
            row["text"] = inputs[lengths[0]]
            row["inputs_by_word_length"] = inputs
            row["label_tokens"] = _by_label(verb, [tok.convert_ids_to_tokens(list(i)) for i in enc.words.ids])
        else:
            row["context"] = decode(enc.context)
            row["continuations"] = _by_label(verb, [decode(ids + enc.suffix) for ids in enc.words.ids])
            row["continuation_tokens"] = _by_label(verb, [tok.convert_ids_to_tokens(list(ids + enc.suffix))
                                                          for ids in enc.words.ids])
        row["tokens"] = enc.length
        rows.append(row)
    return rows


def _plain(config: RunConfig) -> list[dict[str, Any]]:
    inputs = load_inputs(config)
    if inputs.template.spec.chat:
        raise RunError("a chat template is laid out by the model's tokenizer: pass --model to render it",
                       path=str(inputs.template.path))
    if inputs.selector is not None and inputs.selector.needs_model:
        raise RunError("similarity: model chooses demonstrations by the model's own embeddings: pass --model to "
                       "render it", path=str(inputs.template.path))
    rows = []
    for example in inputs.dataset.examples:
        where = f"{inputs.dataset.source}:{example.line}"
        demos = inputs.selector.select(example).demos if inputs.selector else []
        prompt = inputs.renderer.render(example.fields, demos, where)
        row: dict[str, Any] = {"index": example.index, "line": example.line, "gold": example.gold,
                               "demonstrations": len(demos)}
        if inputs.renderer.generative:
            row["prompt"] = prompt.prefix
        else:
            lead = LEAD.search(prompt.prefix).group(0)
            row["text"] = prompt.show()
            row["context"] = prompt.prefix[:len(prompt.prefix) - len(lead)]
            row["continuations"] = _by_label(inputs.verbalizer,
                                             [lead + w + prompt.suffix for w in inputs.verbalizer.words])
        rows.append(row)
    return rows


def _by_label(verb, values: list[Any]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {label: [] for label in verb.labels}
    for k, value in zip(verb.word_label, values):
        grouped[verb.labels[k]].append(value)
    return grouped
