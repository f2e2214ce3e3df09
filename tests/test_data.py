"""Data files: every format reads alike; bad rows name file, line and field, or are skipped."""
from __future__ import annotations

import json

import pytest

from conftest import write
from promptcli.spec.data import LabelSpace, load_dataset
from promptcli.errors import DataError

LABELS = LabelSpace(["negative", "positive"], {"0": "negative", "1": "positive"})
ROWS = [{"text": "good film", "label": 1}, {"text": "bad film", "label": "negative"}]


@pytest.mark.parametrize("name,content", [
    ("d.jsonl", "\n".join(json.dumps(r) for r in ROWS) + "\n"),
    ("d.json", json.dumps(ROWS)),
    ("d.csv", "text,label\ngood film,1\nbad film,negative\n"),
    ("d.tsv", "text\tlabel\ngood film\t1\nbad film\tnegative\n"),
])
def test_formats_read_alike(tmp_path, name, content):
    data = load_dataset(write(tmp_path / name, content), ["text"], "label", LABELS)
    assert [(e.index, e.fields["text"], e.gold) for e in data.examples] == [
        (0, "good film", "positive"), (1, "bad film", "negative")]
    assert data.labeled


def test_format_override(tmp_path):
    path = write(tmp_path / "d.txt", "text\tlabel\ngood\t1\n")
    assert load_dataset(path, ["text"], "label", LABELS, data_format="tsv").examples[0].gold == "positive"
    with pytest.raises(DataError, match="cannot tell the format"):
        load_dataset(path, ["text"], "label", LABELS)


BAD = [
    ('{"text": "ok", "label": 1}\n{"text": "broken", \n', 2, None, "malformed JSON"),
    ('{"text": "ok", "label": 1}\n{"title": "x", "label": 1}\n', 2, "text", "missing field"),
    ('{"text": "ok", "label": 1}\n{"text": "  ", "label": 0}\n', 2, "text", "empty text"),
    ('{"text": "ok", "label": 1}\n\n{"text": "x", "label": 7}\n', 3, "label", "label 7 is not in the verbalizer"),
    ('{"text": "ok", "label": 1}\n{"text": "x"}\n', 2, "label", "missing label"),
    ('[1, 2]\n', 1, None, "expected an object"),
]


@pytest.mark.parametrize("content,line,field,message", BAD)
def test_bad_rows_name_file_line_and_field(tmp_path, content, line, field, message):
    path = write(tmp_path / "d.jsonl", content)
    with pytest.raises(DataError) as info:
        load_dataset(path, ["text"], "label", LABELS)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), line, field)
    assert message in str(err) and "--skip-invalid" in str(err)


def test_skip_invalid_counts_and_keeps_good_rows(tmp_path):
    content = "".join(c for c, *_ in BAD[:4])  # every bad row after a good one
    path = write(tmp_path / "d.jsonl", content)
    data = load_dataset(path, ["text"], "label", LABELS, skip_invalid=True)
    assert len(data.examples) == 4 and all(e.fields["text"] == "ok" for e in data.examples)
    assert [s.line for s in data.skipped] == [2, 4, 6, 9]


def test_unlabelled_data_is_allowed(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a"}\n{"text": "b"}\n')
    data = load_dataset(path, ["text"], "label", LABELS)
    assert not data.labeled and [e.gold for e in data.examples] == [None, None]


def test_csv_with_extra_cells_and_bad_utf8(tmp_path):
    with pytest.raises(DataError, match="header has 2 columns") as info:
        load_dataset(write(tmp_path / "d.csv", "text,label\na,1,extra\n"), ["text"], "label", LABELS)
    assert info.value.line == 2
    path = tmp_path / "e.jsonl"
    path.write_bytes(b'{"text": "ok", "label": 1}\n{"text": "\xff", "label": 1}\n')
    with pytest.raises(DataError, match="not valid UTF-8") as info:
        load_dataset(path, ["text"], "label", LABELS)
    assert info.value.line == 2


def test_missing_file_and_empty_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_dataset(tmp_path / "nope.jsonl", ["text"], "label", LABELS)
    with pytest.raises(DataError, match="no usable rows"):
        load_dataset(write(tmp_path / "d.jsonl", "\n"), ["text"], "label", LABELS)


# ---- labels are never dropped silently --------------------------------------------------------------

def test_labelled_data_is_decided_over_all_rows(tmp_path):
    """Labelled-ness was decided by the first row: an unlabelled first row silently dropped every label."""
    path = write(tmp_path / "d.jsonl", '{"text": "a"}\n{"text": "b", "label": 1}\n{"text": "c", "label": 0}\n')
    with pytest.raises(DataError, match="missing label") as info:
        load_dataset(path, ["text"], "label", LABELS)
    assert (info.value.line, info.value.field) == (1, "label")
    data = load_dataset(path, ["text"], "label", LABELS, skip_invalid=True)
    assert data.labeled and [e.gold for e in data.examples] == ["positive", "negative"]
    null_first = write(tmp_path / "n.jsonl", '{"text": "a", "label": null}\n{"text": "b", "label": 1}\n')
    with pytest.raises(DataError, match="missing label"):
        load_dataset(null_first, ["text"], "label", LABELS)


def test_a_named_label_field_that_no_row_has_is_an_error(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": 1}\n')
    with pytest.raises(DataError, match="no row has the label field 'gold' \\(fields of the first row: text, label\\)"):
        load_dataset(path, ["text"], "gold", LABELS, require_labels=True)
    assert not load_dataset(path, ["text"], "gold", LABELS).labeled  # the template's default: unlabelled data


def test_a_misspelt_label_field_fails_the_run(tiny, tmp_path):
    import promptcli
    from conftest import REPO

    path = write(tmp_path / "d.jsonl", '{"text": "a fine film", "label": "positive"}\n')
    with pytest.raises(DataError, match="no row has the label field 'gold'"):
        promptcli.run(REPO / "tests/templates/causal.yaml", path, tiny["gpt2"], out=tmp_path / "o", progress=False,
                      label_field="gold")


@pytest.mark.parametrize("content,message,field", [
    ('{"text": "a", "text": "b", "label": 1}\n', "the key 'text' appears twice", "text"),
    ('{"text": null, "label": 1}\n', "the field is null", "text"),
    ('{"text": "slot \\ue000 here", "label": 1}\n', r"U\+E000", "text"),
])
def test_rows_that_would_be_misread_are_errors(tmp_path, content, message, field):
    path = write(tmp_path / "d.jsonl", content)
    with pytest.raises(DataError, match=message) as info:
        load_dataset(path, ["text"], "label", LABELS)
    assert (info.value.line, info.value.field) == (1, field)


def test_integral_float_labels_find_integer_keys(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"text": "a", "label": 1.0}\n{"text": "b", "label": 0.0}\n')
    assert [e.gold for e in load_dataset(path, ["text"], "label", LABELS).examples] == ["positive", "negative"]


def test_a_subsample_is_seeded_stratified_and_in_file_order(tmp_path):
    rows = [{"text": f"row {i}", "label": int(i % 4 == 0)} for i in range(100)]  # 25 positive, 75 negative
    path = write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    data = load_dataset(path, ["text"], "label", LABELS, subsample=20, seed=3)
    indices = [e.index for e in data.examples]
    assert len(indices) == 20 and indices == sorted(indices)
    assert sum(e.gold == "positive" for e in data.examples) == 5  # the label's 25% share
    assert indices == [e.index for e in load_dataset(path, ["text"], "label", LABELS, subsample=20, seed=3).examples]
    assert indices != [e.index for e in load_dataset(path, ["text"], "label", LABELS, subsample=20, seed=4).examples]
    window = load_dataset(path, ["text"], "label", LABELS, rows=range(10, 20))
    assert [e.index for e in window.examples] == list(range(10, 20))  # indices stay the file's row numbers
    big = {e.index for e in load_dataset(path, ["text"], "label", LABELS, subsample=60, seed=3).examples}
    nested = [e for e in load_dataset(path, ["text"], "label", LABELS, subsample=20, subsample_from=60,
                                      seed=3).examples]
    assert len(nested) == 20 and {e.index for e in nested} < big  # a sample within the sample
    assert sum(e.gold == "positive" for e in nested) == 5 and not set(indices) < big  # plain samples need not nest


def test_row_ranges_are_checked(tiny, tmp_path):
    import promptcli
    from conftest import REPO
    from promptcli.errors import RunError

    with pytest.raises(RunError, match="rows='20:10' is an empty row range"):
        promptcli.run(REPO / "tests/templates/causal.yaml", REPO / "examples/sst2.jsonl", tiny["gpt2"],
                      out=tmp_path / "o", progress=False, rows="20:10")
    result = promptcli.run(REPO / "tests/templates/causal.yaml", REPO / "examples/sst2.jsonl", tiny["gpt2"],
                           out=tmp_path / "p", progress=False, rows="5:9", cache=False)
    assert [p.index for p in result.predictions] == [5, 6, 7, 8] and result.record.config["rows"] == "5:9"
