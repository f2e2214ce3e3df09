"""Rendering: golden strings per layout, strict undefined fields, the sandbox."""
from __future__ import annotations

import pytest

from conftest import write
from promptcli.errors import DataError, SpecError
from promptcli.prompt.render import Renderer
from promptcli.spec.loading import load_template

VERB = "verbalizer:\n  labels: {negative: [bad], positive: [good]}\n"


def renderer(tmp_path, body: str) -> Renderer:
    return Renderer(load_template(write(tmp_path / "t.yaml", body + VERB)))


def test_manual_golden(tmp_path):
    r = renderer(tmp_path, "kind: manual\ntext: |\n  Review: {{ text }}\n  It was {{ mask }}.\n")
    prompt = r.render({"text": "a fine film"})
    assert (prompt.prefix, prompt.suffix) == ("Review: a fine film\nIt was ", ".")


def test_co_star_golden(tmp_path):
    r = renderer(tmp_path, "kind: co-star\nsections:\n  context: Reviews.\n  objective: Classify.\n"
                           "  tone: Neutral.\n  response: One word.\ninput_name: review\n"
                           "answer: 'Sentiment: {{ mask }}'\n")
    assert r.render({"text": "a fine film"}).show() == (
        "# CONTEXT #\nReviews.\n\n# OBJECTIVE #\nClassify.\n\n# TONE #\nNeutral.\n\n# RESPONSE #\nOne word.\n\n"
        "#############\n# REVIEW #\na fine film\n#############\n\nSentiment: {{ mask }}")


def test_xml_golden(tmp_path):
    r = renderer(tmp_path, "kind: xml\nsections:\n  instructions: Classify the review.\n  format: One word.\n"
                           "input_tag: review\ninput: '{{ title }}: {{ text }}'\n")
    assert r.fields == ["text", "title"]
    assert r.render({"text": "a fine film", "title": "T"}).show() == (
        "<instructions>\nClassify the review.\n</instructions>\n<format>\nOne word.\n</format>\n"
        "<review>\nT: a fine film\n</review>\nAnswer: {{ mask }}")


def test_missing_field_names_row_and_field(tmp_path):
    r = renderer(tmp_path, "kind: manual\ntext: '{{ text }} {{ mask }}'\n")
    with pytest.raises(DataError) as info:
        r.render({"sentence": "x"}, where="data.jsonl:7")
    assert info.value.field == "text" and str(info.value).startswith("data.jsonl:7")


def test_sandbox_blocks_python_internals(tmp_path):
    r = renderer(tmp_path, "kind: manual\ntext: '{{ text.__class__.__mro__[1].__subclasses__() }} {{ mask }}'\n")
    with pytest.raises((SpecError, DataError)) as info:
        r.render({"text": "x"})
    assert "sandbox" in str(info.value) or "unsafe" in str(info.value)


def test_two_answer_slots_are_an_error(tmp_path):
    r = renderer(tmp_path, "kind: manual\ntext: '{{ mask }} {{ text }} {{ mask }}'\n")
    with pytest.raises(SpecError, match="exactly one answer slot"):
        r.render({"text": "x"})


# ---- bounds: a template may not hang a run or fill memory; the template is blamed, not the data ----

BOUNDED = [
    ("{% for a in range(9999) %}{% for b in range(9999) %}{% endfor %}{% endfor %}", "took over"),
    ("{{ 'a' * 50000000 }}", "built with \\*"),
    ("{{ range(100000000) | list | length }}", "range\\(\\) of 100,000,000 items"),
    ("{{ 10 ** 10000 }}", "exponents above 64"),
    ("{% include 'other.yaml' %}", "cannot include, import or extend"),
    ("{{ soft(5000) }}", "soft\\(\\) takes a number of tokens from 1 to 4096"),
    ("{% for i in range(900) %}{{ text }}{% endfor %}", "rendered .* characters for one row"),
]


@pytest.mark.parametrize("jinja,message", BOUNDED, ids=[m for _, m in BOUNDED])
def test_bounds_are_template_errors_within_seconds(tmp_path, monkeypatch, jinja, message):
    import time

    from promptcli.prompt import environment

    monkeypatch.setattr(environment, "MAX_SECONDS", 1.0)
    r = renderer(tmp_path, f"kind: manual\ntext: \"{jinja} {{{{ text }}}} {{{{ mask }}}}\"\n")
    start = time.perf_counter()
    with pytest.raises(SpecError, match=message) as info:
        r.render({"text": "x" * 2000}, where="data.jsonl:3")
    assert time.perf_counter() - start < 5
    assert info.value.path.endswith("t.yaml")  # the template's fault, named as such


@pytest.mark.parametrize("value,shown", [(["bad", "film"], "list"), (True, "bool"), (float("nan"), "float nan")])
def test_a_value_that_is_not_text_is_not_printed_as_python(tmp_path, value, shown):
    """`Review: ['bad', 'film']` and `Review: True` once reached the model."""
    r = renderer(tmp_path, "kind: manual\ntext: 'Review: {{ text }} {{ mask }}'\n")
    with pytest.raises(DataError, match=f"gave {shown}") as info:
        r.render({"text": value}, where="data.jsonl:4")
    assert str(info.value).startswith("data.jsonl:4")
    assert r.render({"text": 2019}).prefix == "Review: 2019 "  # numbers are text enough
