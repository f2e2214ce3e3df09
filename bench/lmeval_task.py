"""An lm-evaluation-harness multiple-choice task built from a promptcli template, and its timing.

The task reads the same JSONL file (`dataset_path: json`) and renders the same Jinja text:
the template's text before the `{{ mask }}` slot, with the whitespace right before the slot
moved into each choice. So the context is `…the movie was`, the choices ` terrible`,
` great`, and `target_delimiter` is empty. For `acc` this is exactly lm-eval's usual
`target_delimiter: " "` with bare choices (the same strings meet `_encode_pair`); it also
makes `acc_norm` divide by the length of the continuation *with* its leading space, which
is promptcli's `normalize: chars`. (With `target_delimiter: " "`, lm-eval 0.4's `acc_norm`
divides by `len(choice)` without the space, a different normalisation.)
"""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Callable

import yaml

SLOT = re.compile(r"\{\{-?\s*mask\s*-?\}\}")
LEAD = re.compile(r"[ \t]*$")


class NotExpressible(ValueError):
    """The template or verbalizer has no lm-eval multiple-choice equivalent."""


def task_config(template: str, data: str, name: str) -> dict[str, Any]:
    """The lm-eval task YAML (as a dict) equivalent to a promptcli template on a JSONL file."""
    from promptcli.rendering import Renderer
    from promptcli.spec import load_template

    spec = load_template(template)
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
    return {
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


def _jinja_dict(mapping: dict[str, int]) -> str:
    return "{" + ", ".join(f"{_quote(k)}: {v}" for k, v in mapping.items()) + "}"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_task(folder: Path, template: str, data: str, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(task_config(template, data, name), sort_keys=False, allow_unicode=True),
                    encoding="utf-8")
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
    write_task(folder, job["template"], job["data"], name)
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
