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
