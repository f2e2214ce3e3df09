"""The README cannot drift from the program: every spec field and CLI option is documented."""
from __future__ import annotations

import re

import pytest
import typer.main

from conftest import REPO
from promptcli.cli import app
from promptcli.spec.sweepfile import SweepOptions, SweepSpec
from promptcli.spec.template import (CoStarSections, CoStarTemplate, CotTemplate, DecodingSpec, DemonstrationsSpec,
                                     ManualTemplate, ScoringSpec, SelfConsistencyTemplate, XmlTemplate)
from promptcli.spec.verbalizer import VerbalizerSpec

README = (REPO / "README.md").read_text()


@pytest.mark.parametrize("model", [ManualTemplate, CoStarTemplate, XmlTemplate, CoStarSections, VerbalizerSpec,
                                   ScoringSpec, DemonstrationsSpec, DecodingSpec, CotTemplate, SelfConsistencyTemplate,
                                   SweepSpec, SweepOptions])
def test_every_spec_field_is_documented(model):
    missing = [name for name in model.model_fields if f"`{name}`" not in README and f"{name}:" not in README]
    assert not missing, f"README does not document {model.__name__} fields {missing}"


@pytest.mark.parametrize("name", ["run", "sweep", "tune", "search words", "search formats"])
def test_every_option_is_documented(name):
    command = typer.main.get_command(app)
    for part in name.split():
        command = command.commands[part]
    options = [opt for param in command.params for opt in param.opts if opt.startswith("--")]
    missing = [opt for opt in options if opt not in README]
    assert not missing, f"README does not document {name} options {missing}"


def test_quick_start_files_exist():
    block = README.split("## Quick start", 1)[1].split("##", 1)[0]
    paths = set(re.findall(r"(?:templates|examples)/[\w./-]+", block))
    assert paths and all((REPO / p).is_file() for p in paths), paths


def test_ci_runs_the_readme_test_command():
    block = README.split("## Quick start", 1)[1].split("##", 1)[0]
    commands = re.findall(r"```bash\n(.+?)\n```", block)
    assert len(commands) == 2 and "promptcli run" in commands[0] and "pytest" in commands[1]
    assert commands[1] in (REPO / ".ci/run").read_text()
