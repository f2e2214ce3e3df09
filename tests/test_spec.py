"""Spec files: shipped ones load; bad ones fail with file, line, field and a useful message."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO, write
from promptcli.errors import SpecError
from promptcli.prompt.render import Renderer
from promptcli.spec.loading import load_template, load_verbalizer

VERB = "labels:\n  negative: [bad]\n  positive: [good]\n"


def shipped(kind: str) -> list[Path]:
    return sorted((REPO / kind).rglob("*.yaml"))


@pytest.mark.parametrize("path", shipped("templates"), ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_templates_load_and_compile(path):
    template = load_template(path)
    renderer = Renderer(template)
    prompt = renderer.render({f: "an example" for f in renderer.fields})
    assert prompt.prefix and "an example" in prompt.show()


MEASURED = [p for p in shipped("templates") if p.stem in ("causal", "chat", "causal-fewshot")]


@pytest.mark.parametrize("path", MEASURED, ids=lambda p: str(p.relative_to(REPO)))
def test_shipped_real_model_templates_state_their_measured_accuracy_and_command(path):
    """Each header says how its defaults were chosen and what it measured, with the command to repeat it."""
    header = "".join(line[1:].strip() + " " for line in path.read_text().splitlines() if line.startswith("#"))
    assert "chosen on" in header and "Measured by bench/quality.py" in header
    assert f"python bench/quality.py --tasks {path.parent.name} --models " in header
    assert "%" in header.split("Measured by", 1)[1]


@pytest.mark.parametrize("path", shipped("verbalizers"), ids=lambda p: p.name)
def test_shipped_verbalizers_load(path):
    assert len(load_verbalizer(path).spec.labels) >= 2


# (template text, verbalizer text, expected line, expected field, words the message must contain)
BAD_TEMPLATES = [
    ("kind: manual\ntext: '{{ text }} {{ mask }}'\nverbalizer: v.yaml\nlabel_feild: y\n", VERB,
     4, "label_feild", ["unknown field", "did you mean 'label_field'"]),
    ("text: '{{ mask }}'\nverbalizer: v.yaml\n", VERB, 1, "kind", ["required", "manual"]),
    ("kind: socratic\ntext: '{{ mask }}'\nverbalizer: v.yaml\n", VERB, 1, "kind", ["unknown kind 'socratic'"]),
    ("kind: manual\ntext: '{{ text }} {{ mask }}'\nverbalizer: v.yaml\ntext: again\n", VERB, 4, None,
     ["duplicate key 'text'"]),
    ("kind: manual\ntext: [unclosed\nverbalizer: v.yaml\n", VERB, 3, None, ["malformed YAML"]),
    ("kind: manual\nverbalizer: v.yaml\n", VERB, 1, "text", ["required field is missing"]),
    ("kind: co-star\nsections:\n  objective: classify\n  tone: 3\nverbalizer: v.yaml\n", VERB, 4,
     "sections.tone", ["valid string"]),
    ("kind: xml\nsections:\n  'bad tag': x\nverbalizer: v.yaml\n", VERB, 3, "sections",
     ["not a valid XML tag name"]),
    ("kind: manual\ntext: '{{ text }} {{ mask }}'\nverbalizer: missing.yaml\n", VERB, 3, "verbalizer",
     ["verbalizer file not found"]),
    ("kind: manual\ntext: '{{ text }} {{ mask }}'\nverbalizer:\n  labels:\n    only: [one]\n", VERB, 5,
     "verbalizer.labels", ["at least two labels"]),
    ("kind: manual\ntext: '{{ text }} {{ mask }}'\nverbalizer:\n  labels: {a: x, b: y}\n  agregate: max\n",
     VERB, 5, "verbalizer.agregate", ["unknown field", "aggregate"]),
    ("kind: manual\ntext: '{{ text }} {{ mask }}'\nverbalizer: v.yaml\n",
     "labels:\n  a: [x]\n  b: [y]\nlabel_map: {0: a, 1: c}\n", 4, "label_map", ["'c', which is not a label"]),
    ("kind: manual\ntext: '{{ text }} {{ mask }}'\nverbalizer: v.yaml\n",
     "labels:\n  a: [x, ' ']\n  b: [y]\n", 2, "labels", ["non-empty label word"]),
    ("kind: manual\ntext: '{{ text }} {{ mask }}'\nverbalizer: v.yaml\n",
     "labels:\n  a: [x]\n  b: [y]\nmulti_token: median\n", 4, "multi_token", ["'mean', 'sum' or 'first'"]),
    ("kind: manual\ntext: '{{ premise }} {{ mask }}'\nverbalizer: v.yaml\n",
     "labels:\n  yes: [True]\n  no: False\n", 2, "labels", ["read by YAML as the boolean True", 'quote it: ["True"]']),
]


@pytest.mark.parametrize("template,verbalizer,line,field,words", BAD_TEMPLATES)
def test_bad_specs_name_line_field_and_problem(tmp_path, template, verbalizer, line, field, words):
    write(tmp_path / "v.yaml", verbalizer)
    path = write(tmp_path / "t.yaml", template)
    with pytest.raises(SpecError) as info:
        load_template(path)
    err = info.value
    assert err.line == line, str(err)
    assert err.field == field, str(err)
    assert err.path and Path(err.path).name in ("t.yaml", "v.yaml")
    for word in words:
        assert word in str(err), str(err)


# Problems only visible when the Jinja text is compiled.
BAD_JINJA = [
    ("kind: manual\nverbalizer: v.yaml\ntext: '{{ text }'\n", 3, "text", ["Jinja syntax error"]),
    ("kind: manual\nverbalizer: v.yaml\ntext: '{{ text }}'\n", 3, "text", ["no answer slot"]),
    ("kind: manual\nverbalizer: v.yaml\nfields: [text]\ntext: '{{ text }} {{ title }} {{ mask }}'\n", 3, "fields",
     ["uses title", "does not list"]),
    ("kind: co-star\nverbalizer: v.yaml\nsections:\n  objective: '{% if %}'\n", 4, "sections.objective",
     ["Jinja syntax error"]),
]


@pytest.mark.parametrize("template,line,field,words", BAD_JINJA)
def test_bad_jinja_names_the_field(tmp_path, template, line, field, words):
    write(tmp_path / "v.yaml", VERB)
    with pytest.raises(SpecError) as info:
        Renderer(load_template(write(tmp_path / "t.yaml", template)))
    assert (info.value.line, info.value.field) == (line, field), str(info.value)
    for word in words:
        assert word in str(info.value)


def test_fields_are_inferred_from_the_template(tmp_path):
    write(tmp_path / "v.yaml", VERB)
    path = write(tmp_path / "t.yaml", "kind: manual\nverbalizer: v.yaml\n"
                 "text: 'Premise: {{ premise }} Hypothesis: {{ hypothesis | lower }} {{ mask }}'\n")
    assert Renderer(load_template(path)).fields == ["hypothesis", "premise"]


def test_inline_verbalizer_and_override(tmp_path):
    path = write(tmp_path / "t.yaml", "kind: manual\ntext: '{{ text }} {{ mask }}'\n"
                 "verbalizer:\n  labels: {no: [bad], yes: [good]}\n")
    assert load_template(path).verbalizer.spec.labels == {"no": ["bad"], "yes": ["good"]}
    other = write(tmp_path / "v.yaml", VERB)
    assert list(load_template(path, other).verbalizer.spec.labels) == ["negative", "positive"]


def test_label_map_keys_accept_ints_and_bools(tmp_path):
    path = write(tmp_path / "v.yaml", "labels: {a: [x], b: [y]}\nlabel_map: {0: a, true: b}\n")
    assert load_verbalizer(path).spec.label_map == {"0": "a", "true": "b"}


def test_alias_bombs_are_refused_quickly(tmp_path):
    """Aliases nested 9 deep ("billion laughs") hung `validate` and `run`: the file expands to 10^9 values."""
    import time

    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [" + ", ".join([f"*{previous}"] * 10) + "]")
    path = write(tmp_path / "bomb.yaml", "\n".join(lines) + "\nkind: manual\ntext: '{{ mask }}'\n")
    start = time.perf_counter()
    with pytest.raises(SpecError, match="expands to [0-9,]{13} values"):  # over a billion
        load_template(path)
    assert time.perf_counter() - start < 2


def test_a_label_word_of_invisible_characters_is_empty(tmp_path):
    path = write(tmp_path / "v.yaml", 'labels:\n  negative: ["\\u200b"]\n  positive: [good]\n')
    with pytest.raises(SpecError, match="label 'negative' needs at least one non-empty label word"):
        load_verbalizer(path)


def test_a_verbalizer_path_must_name_a_yaml_file(tmp_path):
    """A template could make promptcli read any file (`verbalizer: /proc/self/environ`) to find it is not YAML."""
    path = write(tmp_path / "t.yaml", "kind: manual\ntext: '{{ text }} {{ mask }}'\nverbalizer: /proc/self/environ\n")
    with pytest.raises(SpecError, match="a verbalizer is a .yaml file") as info:
        load_template(path)
    assert info.value.field == "verbalizer" and info.value.line == 3
