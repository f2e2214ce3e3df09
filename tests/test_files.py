"""Every file promptcli writes is replaced atomically: a failed write keeps the old file and leaves no litter."""
from __future__ import annotations

import os

import pytest

from promptcli import files
from promptcli.errors import RunError


def test_a_failed_write_keeps_the_old_file_and_removes_its_temporary(tmp_path, monkeypatch):
    target = tmp_path / "run.json"
    files.write_json(target, {"status": "running"})

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(RunError, match="cannot write run.json: No space left on device"):
        files.write_json(target, {"status": "finished"})
    assert files.read_json(target) == {"status": "running"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    folder = tmp_path / "checkpoint"
    files.replace_folder(folder, lambda tmp: files.write_text(tmp / "a.txt", "one"))

    def half(tmp):
        files.write_text(tmp / "a.txt", "two")
        raise KeyboardInterrupt  # interrupted before the folder was complete

    with pytest.raises(KeyboardInterrupt):
        files.replace_folder(folder, half)
    assert (folder / "a.txt").read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    files.replace_folder(folder, lambda tmp: files.write_text(tmp / "b.txt", "three"))
    assert sorted(p.name for p in folder.iterdir()) == ["b.txt"]


def test_a_damaged_json_file_is_named(tmp_path):
    (tmp_path / "run.json").write_text('{"status": ')
    with pytest.raises(RunError, match="run.json is not valid JSON"):
        files.read_json(tmp_path / "run.json")
