"""A run's inputs, read and checked before any weights load: template, verbalizer, data, demonstrations,
the model's tokenizer, the soft prompt, and every example encoded.

`prepare` is the first step of `run`, and `tune`, `render` and `validate` use the same step, so
a problem is found the same way whichever command meets it.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property
from typing import Any, Callable, Mapping, Sequence

from ..errors import DataError, RunError
from ..models.embedded import default_model
from ..models.info import ModelInfo, load_info
from ..progress import warn
from ..prompt.demos import DemoSelector
from ..prompt.encode import Encoded, Encoder, make_encoder
from ..prompt.render import Renderer
from ..prompt.verbalizer import Verbalizer
from ..spec.data import Dataset, LabelSpace, Skipped, load_dataset
from ..spec.loading import TemplateFile, load_template
from ..spec.runconfig import RunConfig, ScoringConfig, resolve_scoring
from ..spec.selection import row_range
from ..spec.template import DemonstrationsSpec


@dataclass
class Inputs:
    """What a run reads, checked, before any model is involved."""

    config: RunConfig
    template: TemplateFile
    renderer: Renderer
    verbalizer: Verbalizer
    dataset: Dataset
    selector: DemoSelector | None

    @cached_property
    def gold(self) -> dict[int, str | None]:
        """Row index → gold label (built once: generation looks it up for every example)."""
        return {e.index: e.gold for e in self.dataset.examples}

    @cached_property
    def fields(self) -> dict[int, Mapping[str, Any]]:
        return {e.index: e.fields for e in self.dataset.examples}


@dataclass
class Prepared(Inputs):
    """A run's inputs encoded for one model (tokenizer loaded, weights not yet)."""

    info: ModelInfo
    encoder: Encoder
    encoded: list[Encoded]
    scoring: ScoringConfig
    soft: Any = None  # a prompt.soft.SoftPrompt; typed loosely so that this module needs no torch


def label_field(template: TemplateFile, config: RunConfig) -> str:
    return config.label_field or template.spec.label_field


def label_field_named(template: TemplateFile, config: RunConfig) -> bool:
    """Whether the user named the label field (then data without it is an error, not unlabelled data)."""
    return config.label_field is not None or "label_field" in template.spec.model_fields_set


def model_name(template: TemplateFile, model: str | None) -> str:
    """--model, else the template's `model`, else the embedded default model (when installed)."""
    return model or template.spec.model or default_model()


def load_inputs(config: RunConfig, rows: Sequence[Mapping[str, Any]] | None = None) -> Inputs:
    """Load and check the template, verbalizer, data and demonstrations (no model needed)."""
    template = load_template(config.template, config.verbalizer)
    renderer = Renderer(template)
    verbalizer = Verbalizer(template.verbalizer)
    labels = LabelSpace(verbalizer.labels, template.verbalizer.spec.label_map)
    dataset = load_dataset(rows if rows is not None else config.data, renderer.fields, label_field(template, config),
                           labels, skip_invalid=config.skip_invalid, limit=config.limit,
                           data_format=config.data_format, require_labels=label_field_named(template, config),
                           rows=row_range(config.rows), subsample=config.subsample,
                           subsample_from=config.subsample_from, seed=config.seed or 0)
    selector = demo_selector(template, renderer, config, labels)
    return Inputs(config, template, renderer, verbalizer, dataset, selector)


def prepare(config: RunConfig, rows: Sequence[Mapping[str, Any]] | None = None, soft: Any = None,
            load: Callable[[ModelInfo], Any] | None = None) -> Prepared:
    """Inputs plus the model's tokenizer: every example encoded (invalid ones skipped with --skip-invalid).

    `soft` (or `config.soft_prompt`) puts a soft prompt's virtual tokens into every input. The weights
    load here only for demonstrations chosen by the model's own embeddings (`similarity: model`), with
    `load` (info → LoadedModel: the caller's pool, so they load once) or else `load_model`."""
    inputs = load_inputs(config, rows)
    info = load_info(model_name(inputs.template, config.model), scorer=config.scorer,
                     trust_remote_code=config.trust_remote_code, max_length=config.max_length)
    if inputs.selector is not None and inputs.selector.needs_model:
        from ..models.sentences import model_encoder
        from ..models.weights import load_model

        loaded = load(info) if load else load_model(info, device=config.device, dtype=config.dtype)
        inputs.selector.use_encoder(model_encoder(loaded))
    if soft is None and config.soft_prompt:
        from ..prompt.soft import check_compatible, load_soft_prompt

        soft = load_soft_prompt(config.soft_prompt)
        check_compatible(soft, inputs.template.sha256, info.config_sha256, config.force)
    scoring = resolve_scoring(inputs.template.spec, inputs.template.verbalizer.spec, config,
                              soft.scoring if soft is not None else None)
    check_model_fits(inputs.template, info, scoring)
    kv = bool(getattr(soft, "kv", False))
    if kv:
        check_prefix_fits(inputs)
    encoder = make_encoder(inputs.renderer, inputs.verbalizer, info, inputs.selector, config.max_new_tokens,
                           soft.tokens if soft is not None and not kv else None, soft.tokens if kv else 0)
    dataset = inputs.dataset
    encoded, kept = [], []
    for example in dataset.examples:
        try:
            encoded.append(encoder.encode(example, f"{dataset.source}:{example.line}"))
            kept.append(example)
        except DataError as exc:
            if not config.skip_invalid:
                raise
            dataset.skipped.append(Skipped(line=example.line, reason=exc.message))
    dataset.examples = kept
    if encoded:
        note = length_note(encoded[0], info.kind, scoring.normalize)
        if note:
            warn(f"{inputs.template.path}: {note}")
    if soft is not None and not kv and encoded:
        placed = sum(1 for i in encoded[0].context if i >= encoder.virtual.base)
        if placed != soft.tokens:
            raise RunError(f"the soft prompt has {soft.tokens} tokens but the template places {placed}",
                           path=str(inputs.template.path))
    return Prepared(**{f.name: getattr(inputs, f.name) for f in fields(Inputs)}, info=info, encoder=encoder, encoded=encoded, scoring=scoring, soft=soft)


def check_prefix_fits(inputs: Inputs) -> None:
    """Prefix tuning sits in the model's attention cache, in front of a scored prompt."""
    where = str(inputs.template.path)
    if inputs.template.generative or inputs.renderer.soft_slots:
        what = f"kind '{inputs.template.kind}'" if inputs.template.generative else "{{ soft(n) }} slots"
        raise RunError(f"a key/value prefix applies to scored templates without soft slots, not to {what}",
                       path=where)


def length_note(encoded: Encoded, kind: str, normalize: str) -> str | None:
    """Causal scores are sums of token log-probs: with words of different lengths and no normalisation,
    a longer word scores lower only for being longer."""
    lengths = sorted({len(i) for i in encoded.words.ids})
    if kind != "causal" or normalize != "none" or len(lengths) < 2:
        return None
    return (f"label words of {lengths[0]}–{lengths[-1]} tokens under normalize: none, so longer words score lower; "
            "consider normalize: tokens or chars")


def check_model_fits(template: TemplateFile, info: ModelInfo, scoring: ScoringConfig) -> None:
    """Combinations that cannot work are errors before anything runs (a sweep skips them with the reason)."""
    if info.kind == "mlm" and (template.generative or template.spec.chat):
        what = f"kind '{template.kind}'" if template.generative else "chat: true"
        raise RunError(f"{what} needs a causal model (scorer 'causal'); '{info.name}' is a masked LM, which "
                       "supports the manual, co-star and xml kinds without chat", path=str(template.path))
    if scoring.normalize == "pmi" and info.kind == "mlm":
        raise RunError("normalize: pmi scores continuations, so it needs a causal model", path=str(template.path))
    if template.generative and (scoring.normalize == "pmi" or scoring.calibrate != "none"):
        raise RunError(f"calibration and PMI apply to scored templates, not to kind '{template.kind}'",
                       path=str(template.path))


def demonstrations_spec(template: TemplateFile, config: RunConfig) -> DemonstrationsSpec | None:
    """The template's demonstrations with the run's overrides (`--shots`, `--seed`); None for zero-shot."""
    spec = template.spec.demonstrations
    if config.shots is not None:
        spec = (spec or DemonstrationsSpec()).model_copy(update={"count": config.shots, "per_class": None})
    if spec is not None and config.seed is not None:
        spec = spec.model_copy(update={"seed": config.seed})
    if spec is None or (spec.per_class or spec.count) == 0:
        return None
    return spec


def demo_selector(template: TemplateFile, renderer: Renderer, config: RunConfig,
                  labels: LabelSpace) -> DemoSelector | None:
    spec = demonstrations_spec(template, config)
    if spec is None:
        return None
    if not config.train:
        raise RunError(f"the template asks for {spec.per_class or spec.count} demonstrations"
                       f"{' per label' if spec.per_class else ''}; pass the training data with --train FILE",
                       path=str(template.path), hint="or --shots 0 for zero-shot")
    pool = load_dataset(config.train, renderer.fields, label_field(template, config), labels,
                        skip_invalid=config.skip_invalid, require_labels=True)
    if not pool.labeled:
        raise RunError("the training data has no labels, so it cannot give demonstrations", path=config.train)
    first_words = {label: words[0] for label, words in template.verbalizer.spec.labels.items()}
    return DemoSelector(pool.examples, spec, labels.labels, first_words, renderer.fields, pool.sha256)
