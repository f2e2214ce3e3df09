"""`promptcli search words`: label words found from training rows, chosen by cross-validation on them.

1. one pass over the training rows gives every vocabulary token's log-probability at the slot;
2. per class, candidate words by lift (`candidates.py`), once with all rows and once without each fold;
3. one more pass scores all candidates exactly as `run` would (same scorer, same score cache), plus
   the content-free inputs and PMI premise the template's scoring asks for;
4. every assignment (one word per label, optionally more) is ranked by cross-validated accuracy
   (`assignments.py`); the best are written as verbalizer files ready for `run` and `sweep`.
No dev or test row is read: the only data is `train`.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from ..errors import DataError, RunError
from ..evaluation.batches import plan_batches
from ..evaluation.calibration import content_free_inputs, premise_input
from ..evaluation.inputs import Prepared, prepare
from ..evaluation.predict import ScorePredictor
from ..evaluation.runner import ModelPool
from ..files import write_json, write_text
from ..progress import library_warnings, progress_bar
from ..prompt.tokens import Segmenter
from ..spec.runconfig import RunConfig, checked
from ..store.scores import open_cache
from .assignments import Scored, WordTable, add_words, rank, single_words
from .candidates import SlotSums, stratified_folds
from .vocabulary import clean_words, slot_context, slot_log_probs

CANDIDATES = "candidates.yaml"
RESULT = "search.json"


@dataclass(frozen=True)
class SearchOptions:
    top_k: int = 10  # candidates per label (and per fold)
    pool: int = 100  # ... chosen by lift among the label's this many most likely words
    folds: int = 4
    max_words: int = 1
    keep: int = 3  # verbalizer files written
    seed_words: bool = False  # the template's own words join the candidates
    max_assignments: int = 100_000
    seed: int = 0


@dataclass
class Found:
    words: dict[str, list[str]]
    cv: float
    train: float
    path: Path


@dataclass
class WordSearch:
    out_dir: Path
    found: list[Found]
    given: float  # accuracy of the template's own words on the training rows
    candidates: dict[str, list[str]]
    assignments: int
    forward_passes: int
    seconds: float
    rows: int


def search_words(template: str | Path, train: str | Path, model: str | None = None, *, out: str | Path,
                 top_k: int = 10, pool: int = 100, folds: int = 4, max_words: int = 1, keep: int = 3,
                 seed_words: bool = False, max_assignments: int = 100_000, seed: int = 0, progress: bool = True,
                 cache: bool | str | Path = True, command: str | None = None, **run_options: Any) -> WordSearch:
    """Find label words for `template` on the labelled rows of `train`; write the best as verbalizer files.

    The search options are `SearchOptions`' fields; `run_options` are RunConfig fields (calibrate, normalize,
    batch_size, device, dtype, label_field, ...). Demonstrations are off: the search scores the zero-shot prompt."""
    options = SearchOptions(top_k=top_k, pool=pool, folds=folds, max_words=max_words, keep=keep,
                            seed_words=seed_words, max_assignments=max_assignments, seed=seed)
    config = checked(RunConfig, {"template": str(template), "data": str(train), "model": model,
                                 **{k: v for k, v in run_options.items() if v is not None}, "shots": 0})
    out_dir = Path(out)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise RunError("the output folder exists and is not empty; an earlier search is never overwritten",
                       path=str(out_dir), hint="pass a new --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    with library_warnings(out_dir / "warnings.log"):
        return _search(config, out_dir, options, progress, cache, command)


def _search(config: RunConfig, out_dir: Path, options: SearchOptions, progress: bool, cache: bool | str | Path,
            command: str | None) -> WordSearch:
    started = time.perf_counter()
    pool = ModelPool()
    base = prepare(config, load=lambda info: pool.get(info, config.device, config.dtype, config.device_map))
    if base.template.generative:
        raise RunError(f"search words scores the label words at a template's answer slot; a '{base.template.kind}' "
                       "template generates its answer instead", path=str(config.template),
                       hint="search the words of a scored template (manual, co-star, xml)")
    labels = base.verbalizer.labels
    gold = _gold(base)
    folds = min(options.folds, min(gold.count(c) for c in range(len(labels))))
    if folds < 2:
        raise DataError("every label needs at least 2 training rows to cross-validate label words",
                        path=str(config.data))
    fold_of = stratified_folds(gold, folds, options.seed)
    position = {e.index: i for i, e in enumerate(base.dataset.examples)}
    load = functools.partial(pool.get, base.info, config.device, config.dtype, config.device_map)
    scores = open_cache(cache)
    given = ScorePredictor(base, load, scores)

    with torch.inference_mode():
        word_of, sums = _slot_sums(base, given, fold_of, gold, position, folds, config, progress)
        given_accuracy = _accuracy(given, base, gold, position)
    full = sums.candidates(options.top_k, options.pool)
    per_fold = [sums.candidates(options.top_k, options.pool, without=k) for k in range(folds)]
    own = {label: list(words) for label, words in base.template.verbalizer.spec.labels.items()} \
        if options.seed_words else {}
    pools = _pools(labels, full, per_fold, sums.lift()[1], word_of, own)
    spec = base.template.verbalizer.spec
    candidates_file = out_dir / CANDIDATES
    write_text(candidates_file, yaml.safe_dump(
        {"labels": pools, "aggregate": spec.aggregate, "multi_token": spec.multi_token,
         **({"label_map": dict(spec.label_map)} if spec.label_map else {})}, sort_keys=False, allow_unicode=True))

    proposed_words = [[{word_of[c] for c in fold[label]} | set(own.get(labels[label], []))
                       for label in range(len(labels))] for fold in per_fold]
    with torch.inference_mode():
        table, scorer_passes = _word_table(config, candidates_file, load, scores, gold, fold_of, position,
                                           proposed_words, progress)
    words = [w for label in labels for w in pools[label]]
    offsets = [0]
    for label in labels:
        offsets.append(offsets[-1] + len(pools[label]))
    pool_columns = [list(range(offsets[c], offsets[c + 1])) for c in range(len(labels))]
    everything = single_words(pool_columns, options.max_assignments)
    best = rank(table, everything)[:options.keep]
    if options.max_words > 1:
        grown = [add_words(table, s, pool_columns, options.max_words) for s in best]
        best = sorted({s.assignment: s for s in best + grown}.values(), key=Scored.key)
        best = best[:options.keep]
    facts = _facts(config, options, base, folds, len(everything), given_accuracy, command)
    found = [_write(out_dir / f"verbalizer-{n}.yaml", s, labels, words, spec, facts)
             for n, s in enumerate(best, 1)]
    result = WordSearch(out_dir, found, given_accuracy, pools, len(everything),
                        given.forward_passes + scorer_passes, round(time.perf_counter() - started, 2), len(gold))
    write_json(out_dir / RESULT, {**facts, "candidates": pools, "found": [
        {"words": f.words, "cv_accuracy": f.cv, "train_accuracy": f.train, "file": f.path.name} for f in found],
        "forward_passes": result.forward_passes, "seconds": result.seconds})
    return result


def _gold(prepared: Prepared) -> list[int]:
    """Label index of every training row; the search needs every row labelled."""
    labels = prepared.verbalizer.labels
    missing = [e.line for e in prepared.dataset.examples if e.gold is None]
    if missing or not prepared.dataset.examples:
        raise DataError("searching label words needs labelled training rows"
                        + (f" (no label on line {missing[0]})" if missing else " (the file has none)"),
                        path=str(prepared.config.data))
    return [labels.index(e.gold) for e in prepared.dataset.examples]


def _slot_sums(base: Prepared, given: ScorePredictor, fold_of: list[int], gold: list[int], position: dict[int, int],
               folds: int, config: RunConfig, progress: bool) -> tuple[dict[int, str], SlotSums]:
    """One pass over the training rows: the clean whole words of the vocabulary and their slot log-prob sums."""
    anchor, lead = slot_context(base)
    word_of: dict[int, str] = {}
    sums = columns = None
    with progress_bar(progress, "search: every word at the slot", len(gold)) as bar:
        for batch in plan_batches(base.encoded, config.batch_size):
            log_probs = slot_log_probs(given.scorer, batch)
            if sums is None:
                word_of = clean_words(Segmenter(base.info.tokenizer), anchor, lead, log_probs.shape[-1])
                if len(word_of) < len(base.verbalizer.labels):
                    raise RunError(f"only {len(word_of)} vocabulary tokens read as whole words in the slot after "
                                   f"{anchor + lead!r}", path=str(config.template))
                columns = torch.tensor(sorted(word_of))
                sums = SlotSums.empty(folds, len(base.verbalizer.labels), len(columns))
            rows = [position[e.index] for e in batch]
            sums.add(log_probs[:, columns], [fold_of[r] for r in rows], [gold[r] for r in rows])
            bar.advance(len(batch))
    return {c: word_of[t] for c, t in enumerate(columns.tolist())}, sums


def _accuracy(predictor: ScorePredictor, prepared: Prepared, gold: list[int], position: dict[int, int]) -> float:
    """The template's own words on the training rows, scored as `run` scores them."""
    right = 0
    for batch in plan_batches(prepared.encoded, prepared.scoring.batch_size):
        predicted = predictor.label_log_probs(batch).argmax(-1).tolist()
        right += sum(p == gold[position[e.index]] for p, e in zip(predicted, batch))
    return right / len(gold)


def _pools(labels: list[str], full: list[list[int]], per_fold: list[list[list[int]]], lift: torch.Tensor,
           word_of: dict[int, str], own: dict[str, list[str]]) -> dict[str, list[str]]:
    """Label → candidate words: its own words (with seed_words), then every word proposed with all rows or
    without one fold, strongest lift first. A word proposed for several labels stays with its strongest."""
    proposed: dict[int, set[int]] = {c: set(full[c]).union(*(fold[c] for fold in per_fold)) for c in range(len(labels))}
    owner: dict[int, int] = {}
    for c, columns in proposed.items():
        for col in columns:
            if col not in owner or lift[c, col] > lift[owner[col], col]:
                owner[col] = c
    seeded = {w for words in own.values() for w in words}
    pools = {}
    for c, label in enumerate(labels):
        found = sorted((col for col in proposed[c] if owner[col] == c), key=lambda col: -float(lift[c, col]))
        pools[label] = list(own.get(label, [])) + [word_of[col] for col in found if word_of[col] not in seeded]
    return pools


def _word_table(config: RunConfig, candidates_file: Path, load, scores, gold: list[int], fold_of: list[int],
                position: dict[int, int], proposed_words: list[list[set[str]]], progress: bool
                ) -> tuple[WordTable, int]:
    """Every candidate word scored on every training row (and on the content-free inputs and the PMI premise
    when the template's scoring uses them), exactly as `run` scores label words."""
    prepared = prepare(config.model_copy(update={"verbalizer": str(candidates_file)}), load=lambda info: load())
    raw = ScorePredictor(replace(prepared, scoring=prepared.scoring.model_copy(
        update={"calibrate": "none", "normalize": prepared.scoring.continuation_normalize})), load, scores)
    matrix = torch.empty(len(gold), len(prepared.verbalizer.words))
    with progress_bar(progress, "search: candidate words", len(gold)) as bar:
        for batch in plan_batches(prepared.encoded, config.batch_size):
            matrix[[position[e.index] for e in batch]] = raw.word_scores(batch)
            bar.advance(len(batch))
    premise = premise_input(prepared)
    content_free = content_free_inputs(prepared) if prepared.scoring.calibrate == "contextual" else []
    verbalizer = prepared.verbalizer
    proposed = torch.tensor([[word in fold[verbalizer.word_label[w]] for w, word in enumerate(verbalizer.words)]
                             for fold in proposed_words])
    table = WordTable.build(matrix, gold, fold_of, proposed,
                            premise=raw.word_scores([premise])[0] if premise is not None else None,
                            content_free=raw.word_scores(content_free) if content_free else None,
                            aggregate=prepared.scoring.aggregate)
    return table, raw.forward_passes


def _facts(config: RunConfig, options: SearchOptions, base: Prepared, folds: int, assignments: int,
           given: float, command: str | None) -> dict[str, Any]:
    """What every found verbalizer and search.json record: where the words came from."""
    return {"command": command, "template": config.template, "template_sha256": base.template.sha256,
            "model": base.info.name, "train": config.data, "train_sha256": base.dataset.sha256,
            "rows": len(base.dataset.examples), "folds": folds, "seed": options.seed, "top_k": options.top_k,
            "pool": options.pool, "max_words": options.max_words, "seed_words": options.seed_words,
            "scoring": {"calibrate": base.scoring.calibrate, "normalize": base.scoring.normalize},
            "assignments": assignments, "given_words_train_accuracy": given}


def _write(path: Path, scored: Scored, labels: list[str], words: list[str], spec, facts: dict[str, Any]) -> Found:
    chosen = {label: [words[w] for w in scored.assignment[c]] for c, label in enumerate(labels)}
    scoring = ", ".join(f"{k} {v}" for k, v in facts["scoring"].items())
    header = [
        "Label words found by `promptcli search words` (LM-BFF's automatic label words, ranked by lift),",
        f"for {facts['template']} (sha256 {facts['template_sha256'][:12]}) on {facts['model']}, scoring: {scoring}.",
        f"Searched on the {facts['rows']} rows of {facts['train']} only (sha256 {facts['train_sha256'][:12]}):",
        f"  cross-validated accuracy {scored.cv:.1%} ({facts['folds']} folds, seed {facts['seed']}; "
        f"best of {facts['assignments']} assignments),",
        f"  {scored.train:.1%} on all of those rows; the template's own words: {facts['given_words_train_accuracy']:.1%}.",
    ] + ([f"Command: {facts['command']}"] if facts["command"] else [])
    body = {"name": path.stem, "labels": chosen, "aggregate": spec.aggregate, "multi_token": spec.multi_token,
            **({"label_map": dict(spec.label_map)} if spec.label_map else {})}
    write_text(path, "".join(f"# {line}\n" for line in header)
               + yaml.safe_dump(body, sort_keys=False, allow_unicode=True))
    return Found(chosen, scored.cv, scored.train, path)
