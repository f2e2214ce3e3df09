"""An lm-evaluation-harness multiple-choice task built from a promptcli template, and its timing.

The task reads the same JSONL file (`dataset_path: json`) and renders the same Jinja text:
the template's text before the `{{ mask }}` slot, with the whitespace right before the slot
moved into each choice. So the context is `…the movie was`, the choices ` terrible`,
` great`, and `target_delimiter` is empty. For `acc` this is exactly lm-eval's usual
`target_delimiter: " "` with bare choices (the same strings meet `_encode_pair`); it also
makes `acc_norm` divide by the length of the continuation *with* its leading space, which
is promptcli's `normalize: chars`. (With `target_delimiter: " "`, lm-eval 0.4's `acc_norm`
divides by `len(choice)` without the space, a different normalisation.)

Fixed demonstrations (scenario d) use lm-eval's own few-shot machinery: the demonstrations
promptcli selects are written, in promptcli's order, as the task's `train` split, read with
`fewshot_config: {sampler: first_n}` and `num_fewshot` = their count, joined with the
template's separator as `fewshot_delimiter`. lm-eval writes each as `doc_to_text` + the empty
target delimiter + the answer's choice (` great`), which is promptcli's demonstration text
(the template with the slot filled by the label's first word), so the two prompts are the
same string. Only `manual` templates whose demonstrations are the same for every query (not
`similar`, no training row equal to a query) and use the default demonstration text have
this equivalent.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Callable

import yaml

SLOT = re.compile(r"\{\{-?\s*mask\s*-?\}\}")
LEAD = re.compile(r"[ \t]*$")


class NotExpressible(ValueError):
    """The template or verbalizer has no lm-eval multiple-choice equivalent."""


def task_config(template: str, data: str, name: str, train: str | None = None,
                fewshot_file: str | None = None) -> dict[str, Any]:
    """The lm-eval task YAML (as a dict) equivalent to a promptcli template on a JSONL file; with
    demonstrations, `fewshot_file` holds them (`fixed_demonstrations`)."""
    from promptcli.prompt.render import Renderer
    from promptcli.evaluation.inputs import demonstrations_spec
    from promptcli.spec.runconfig import RunConfig
    from promptcli.spec.loading import load_template

    spec = load_template(template)
    demos = demonstrations_spec(spec, RunConfig(template=template, data=data, train=train))
    if spec.generative or spec.spec.chat:
        raise NotExpressible("only scored, plain-text templates have a multiple-choice equivalent")
    layout = Renderer(spec).layout  # the template kind's parts; joined, its full Jinja text, slot included
    source = "".join(p.text for p in layout.instructions + layout.query + layout.answer).lstrip()
    parts = SLOT.split(source)
    if len(parts) != 2:
        raise NotExpressible("the template needs exactly one {{ mask }} slot")
    before, after = parts
    if after.rstrip("\n"):  # promptcli renders without the final newline; any other text would join the choices
        raise NotExpressible("text after the answer slot is not supported (the slot must end the prompt)")
    lead = LEAD.search(before).group(0)
    verbalizer = spec.verbalizer.spec
    words = []
    for label, label_words in verbalizer.labels.items():
        if len(label_words) != 1:
            raise NotExpressible(f"label '{label}' has {len(label_words)} words; lm-eval scores one string per choice")
        words.append(lead + label_words[0].strip())
    labels = list(verbalizer.labels)
    index = {label: i for i, label in enumerate(labels)}
    index.update({raw: index[label] for raw, label in verbalizer.label_map.items()})
    target = "{{ " + _jinja_dict(index) + "[" + spec.spec.label_field + "|string] }}"
    config = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(Path(data).resolve())}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": before[:len(before) - len(lead)],
        "doc_to_choice": words,
        "doc_to_target": target,
        "target_delimiter": "",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": True} for m in ("acc", "acc_norm")],
        "metadata": {"version": 1.0, "labels": labels},
    }
    if demos is not None:
        if spec.kind != "manual" or demos.text or Renderer(spec).places_demonstrations:
            raise NotExpressible("demonstrations are expressible for manual templates with the default "
                                 "demonstration text placed before the query")
        if fewshot_file is None:
            raise ValueError("a template with demonstrations needs fewshot_file (see fixed_demonstrations)")
        config["dataset_kwargs"]["data_files"]["train"] = str(Path(fewshot_file).resolve())
        config.update(fewshot_split="train", fewshot_config={"sampler": "first_n"},
                      num_fewshot=len(Path(fewshot_file).read_text(encoding="utf-8").splitlines()),
                      fewshot_delimiter=demos.separator)
    return config


def fixed_demonstrations(template: str, data: str, train: str) -> list[dict[str, Any]]:
    """The rows promptcli shows as demonstrations, in its order, when every query gets the same ones."""
    from promptcli.evaluation.inputs import load_inputs
    from promptcli.spec.runconfig import RunConfig

    inputs = load_inputs(RunConfig(template=template, data=data, train=train))
    if inputs.selector is None or not inputs.selector.fixed:
        raise NotExpressible("lm-eval's first_n sampler needs the same demonstrations for every query")
    chosen = [inputs.selector.select(e) for e in inputs.dataset.examples]
    if any(c.demos != chosen[0].demos for c in chosen):
        raise NotExpressible("a training row equals a query, so promptcli replaced it in that query's demonstrations")
    label_field = inputs.template.spec.label_field
    return [{**demo.fields, label_field: demo.label} for demo in chosen[0].demos]


def _jinja_dict(mapping: dict[str, int]) -> str:
    return "{" + ", ".join(f"{_quote(k)}: {v}" for k, v in mapping.items()) + "}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_task(folder: Path, template: str, data: str, name: str, train: str | None = None) -> Path:
    """The task YAML in `folder` (and, for demonstrations, its few-shot JSONL beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    fewshot = None
    if train is not None:
        fewshot = folder / f"{name}-demonstrations.jsonl"
        fewshot.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n"
                                   for row in fixed_demonstrations(template, data, train)), encoding="utf-8")
    path = folder / f"{name}.yaml"
    config = task_config(template, data, name, train, str(fewshot) if fewshot else None)
    path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def measure_lmeval(job: dict) -> tuple[Callable[[], float], Callable[[], dict]]:
    """`lm_eval.simple_evaluate` on the generated task through its HF backend (HFLM), timed."""
    import logging

    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    folder = Path(job["workdir"]) / "lmeval-task"
    name = "promptcli_bench_" + re.sub(r"\W", "_", job["scenario"])
    write_task(folder, job["template"], job["data"], name, job.get("train"))
    manager = TaskManager(include_path=str(folder), include_defaults=False)
    results: dict = {}
    weights: list[float] = []
    create_model = HFLM._create_model

    def timed_create_model(self, *a, **k):  # loading the weights is left out, as for promptcli
        start = time.perf_counter()
        create_model(self, *a, **k)
        weights.append(time.perf_counter() - start)

    HFLM._create_model = timed_create_model

    def once() -> float:
        """Like promptcli.run: build the model wrapper (tokenizer, config, weights), evaluate; minus the weights."""
        results.clear()  # the previous run's model goes before the next one loads
        start = time.perf_counter()
        lm = HFLM(pretrained=job["model"], batch_size=job["batch_size"], device="cpu", dtype="float32")
        results["last"] = lm_eval.simple_evaluate(model=lm, tasks=[name], task_manager=manager, limit=job["rows"],
                                                  log_samples=True, bootstrap_iters=0)
        results["lm"] = lm
        return time.perf_counter() - start - weights[-1]

    return once, lambda: _collect(job, folder, name, results)


def _collect(job: dict, folder: Path, name: str, results: dict) -> dict:
    """Per-document predictions (acc, acc_norm) and lm-eval's own token ids on the sample."""
    out = results["last"]
    labels = yaml.safe_load((folder / f"{name}.yaml").read_text())["metadata"]["labels"]
    docs = {}
    for sample in sorted(out["samples"][name], key=lambda s: s["doc_id"]):
        lls = [float(r[0]) for r in sample["filtered_resps"]]
        chars = [len(cont) for _, cont in sample["arguments"]]  # = len(choice): the delimiter is empty
        entry = {"lls": lls, "pred": labels[max(range(len(lls)), key=lambda k: lls[k])],  # acc: np.argmax(lls)
                 "pred_norm": labels[max(range(len(lls)), key=lambda k: lls[k] / chars[k])]}  # acc_norm
        if sample["doc_id"] < job["sample"]:  # lm-eval's own encoding of each (context, continuation)
            entry["tokens"] = [[list(part) for part in results["lm"]._encode_pair(ctx, cont)]
                               for ctx, cont in sample["arguments"]]
        docs[sample["doc_id"]] = entry
    metrics = out["results"][name]
    return {"examples": len(docs), "docs": docs,
            "accuracy": metrics.get("acc,none"), "accuracy_norm": metrics.get("acc_norm,none")}
