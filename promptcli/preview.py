"""`render`: exactly what the model receives for a few rows, without loading weights."""
from __future__ import annotations

from typing import Any

from .data import LabelSpace, load_dataset
from .encode import LEAD, Encoder
from .models import load_info
from .render import Renderer
from .spec import load_template
from .tokens import Segmenter
from .verbalizer import Verbalizer


def render_rows(template: str, data: str, *, model: str | None = None, verbalizer: str | None = None,
                limit: int | None = 3, label_field: str | None = None, data_format: str | None = None,
                scorer: str = "auto", max_length: int | None = None, trust_remote_code: bool = False
                ) -> list[dict[str, Any]]:
    """One dict per row. With a model (its tokenizer only): the model's input text, decoded from the
    token ids — for MLM with the mask tokens, for causal the context and each label's continuations.
    Without one: the rendered text with the slot marked, and each label's continuation text."""
    tfile = load_template(template, verbalizer)
    renderer = Renderer(tfile)
    verb = Verbalizer(tfile.verbalizer)
    labels = LabelSpace(verb.labels, tfile.verbalizer.spec.label_map)
    dataset = load_dataset(data, renderer.fields, label_field or tfile.spec.label_field, labels, limit=limit,
                           data_format=data_format)
    info = load_info(model, scorer=scorer, max_length=max_length, trust_remote_code=trust_remote_code) if model else None
    encoder = None
    if info is not None:
        tok = info.tokenizer
        start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        encoder = Encoder(renderer, verb, Segmenter(tok), info.kind, info.max_length, start)
    rows = []
    for example in dataset.examples:
        where = f"{dataset.source}:{example.line}"
        row: dict[str, Any] = {"index": example.index, "line": example.line, "gold": example.gold}
        if encoder is None:
            prompt = renderer.render(example.fields, where)
            lead = LEAD.search(prompt.prefix).group(0)
            row["text"] = prompt.show()
            row["context"] = prompt.prefix[:len(prompt.prefix) - len(lead)]
            row["continuations"] = _by_label(verb, [lead + w + prompt.suffix for w in verb.words])
        else:
            enc = encoder.encode(example, where)
            decode = info.tokenizer.decode
            row["scorer"] = info.kind
            row["truncated"] = enc.truncated
            if info.kind == "mlm":
                mask = info.tokenizer.mask_token_id
                lengths = sorted({len(ids) for ids in enc.words.ids})
                row["text"] = decode(list(enc.context) + [mask] * lengths[0] + list(enc.suffix))
                row["inputs_by_word_length"] = {n: decode(list(enc.context) + [mask] * n + list(enc.suffix))
                                                for n in lengths}
                row["label_tokens"] = _by_label(verb, [info.tokenizer.convert_ids_to_tokens(list(i))
                                                       for i in enc.words.ids])
            else:
                row["context"] = decode(list(enc.context))
                row["continuations"] = _by_label(verb, [decode(list(ids + enc.suffix)) for ids in enc.words.ids])
                row["continuation_tokens"] = _by_label(verb, [info.tokenizer.convert_ids_to_tokens(list(ids + enc.suffix))
                                                              for ids in enc.words.ids])
            row["tokens"] = len(enc.context) + enc.words.longest + len(enc.suffix)
        rows.append(row)
    return rows


def _by_label(verb: Verbalizer, values: list[Any]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = {label: [] for label in verb.labels}
    for k, value in zip(verb.word_label, values):
        grouped[verb.labels[k]].append(value)
    return grouped
