"""`promptcli search formats`: variants change only the template's own words and layout, and the spread is
what the variants' own runs measure."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import promptcli
from conftest import REPO
from promptcli.cli import app
from promptcli.prompt.render import Renderer
from promptcli.search.formats import Format, apply, variants
from promptcli.spec.loading import load_template

TEXT = "What is the sentiment of this review?\nReview: {{ text }}\nSentiment: {{ mask }}\n"


def test_each_dimension_changes_what_it_says_and_nothing_else():
    assert apply(TEXT, Format()) == TEXT
    assert apply(TEXT, Format(names="Text")) == TEXT.replace("Review:", "Text:")
    assert apply(TEXT, Format(names="none")) == TEXT.replace("Review: ", "")
    assert apply(TEXT, Format(separator="space")) == TEXT.rstrip("\n").replace("\n", " ") + "\n"
    assert apply(TEXT, Format(separator="blank line")) == TEXT.rstrip("\n").replace("\n", "\n\n") + "\n"
    assert apply(TEXT, Format(case="upper")) == \
        "WHAT IS THE SENTIMENT OF THIS REVIEW?\nREVIEW: {{ text }}\nSENTIMENT: {{ mask }}\n"  # Jinja untouched
    assert apply(TEXT, Format(instruction=False)) == "Review: {{ text }}\nSentiment: {{ mask }}\n"
    # the slot line keeps its words whatever the field names
    assert "Sentiment: {{ mask }}" in apply(TEXT, Format(names="none"))


def test_variants_are_distinct_seeded_and_start_with_the_template_as_written():
    drawn = variants(TEXT, 10, seed=1)
    assert drawn[0] == Format() and len(drawn) == 10
    assert len({apply(TEXT, f) for f in drawn}) == 10
    assert drawn == variants(TEXT, 10, seed=1) != variants(TEXT, 10, seed=2)
    assert len(variants("{{ text }} It was {{ mask }}", 99, 0)) == 3  # only the case can change there


@pytest.mark.parametrize("template", ["sst2/causal.yaml", "sst2/chat.yaml", "rte/causal.yaml"])
def test_written_variants_are_valid_templates_that_keep_the_data_and_the_slot(tmp_path, template):
    from promptcli.search.spread import write_variants

    written = write_variants(REPO / "templates" / template, tmp_path, 8, seed=0)
    row = {"text": "a quietly moving film", "premise": "The cat sat.", "hypothesis": "A cat sat."}
    for path, fmt in written.items():
        spec = load_template(path)
        prompt = Renderer(spec).render({f: row[f] for f in Renderer(spec).fields})
        assert all(row[f] in prompt.prefix for f in Renderer(spec).fields)
        assert spec.verbalizer.spec.labels == load_template(REPO / "templates" / template).verbalizer.spec.labels


def test_the_spread_is_what_each_variant_scores(tiny, tmp_path):
    out = tmp_path / "formats"
    found = promptcli.search_formats([REPO / "templates/sst2/causal.yaml"], REPO / "examples/sst2.jsonl", tiny["gpt2"], out=out,
                           count=4, progress=False, store=False, calibrate="none")
    (spread,) = found.spreads
    assert len(spread.values) == 4 and spread.pairs == 6 and spread.original.endswith("f00")
    for name, value in spread.values.items():
        template = out / "templates/causal" / f"{name}.yaml"
        run = promptcli.run(template, REPO / "examples/sst2.jsonl", tiny["gpt2"], calibrate="none", progress=False,
                            out=tmp_path / name, cache=False, store=False)
        assert run.accuracy == pytest.approx(value)
    summary = json.loads((out / "formats.json").read_text())[0]
    assert summary["min"] == min(spread.values.values()) and summary["max"] == max(spread.values.values())
    assert set(spread.tied) <= set(spread.values) and max(spread.values, key=spread.values.get) in spread.tied
    html = (out / "formats.html").read_text()
    assert html.count("<circle") == 4 and 'id="spread-0"' in html


def test_cli_prints_the_spread_and_names_what_was_skipped(tiny, tmp_path):
    result = CliRunner().invoke(app, ["search", "formats", str(REPO / "templates/sst2/causal.yaml"),
                                      str(REPO / "templates/sst2/chat.yaml"), "--data",
                                      str(REPO / "examples/sst2.jsonl"), "-m", tiny["gpt2"], "--out",
                                      str(tmp_path / "out"), "--variants", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "format spread" in result.output and "causal" in result.output
    assert "skipped" in result.output and "chat template" in result.output  # the tiny gpt2 has none


def test_order_variants_keep_the_demonstrations_and_change_only_their_order(tiny, tmp_path):
    from promptcli.search.spread import write_variants

    written = write_variants(REPO / "templates/sst2/causal-fewshot.yaml", tmp_path, 10, seed=0, vary=("order",),
                             orders=3)
    orders = [f.order for f in written.values()]
    assert orders[0] is None and sorted(orders[1:]) == [1, 2, 3]
    prompts = []
    for path in written:
        (row,) = promptcli.render(path, REPO / "examples/sst2.jsonl", limit=1, train=REPO / "examples/sst2.jsonl")
        prompts.append(row["text"])
    blocks = [sorted(p.split("\n\n")) for p in prompts]
    assert all(b == blocks[0] for b in blocks)  # the same demonstrations and query
    assert len(set(prompts)) > 1  # in other orders


def test_demonstration_order_is_a_seeded_permutation_of_the_same_rows():
    from promptcli.prompt.demos import DemoSelector
    from promptcli.spec.data import Example
    from promptcli.spec.template import DemonstrationsSpec

    pool = [Example(index=i, line=i + 1, fields={"text": f"row {i}"}, gold=("a", "b")[i % 2]) for i in range(12)]

    def chosen(order):
        selector = DemoSelector(pool, DemonstrationsSpec(per_class=3, order=order), ["a", "b"], {"a": "A", "b": "B"},
                                ["text"])
        query = Example(index=99, line=99, fields={"text": "query"}, gold=None)
        return [d.fields["text"] for d in selector.select(query).demos]

    plain, shuffled = chosen(None), chosen(5)
    assert sorted(plain) == sorted(shuffled) and plain != shuffled and shuffled == chosen(5)
