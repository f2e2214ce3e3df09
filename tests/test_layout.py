"""The package's shape: stages that import only downwards, no import cycles, light commands that stay light.

Imports are read from the source (module level and inside functions alike), so a cycle cannot hide
behind a function-level import, and a new module cannot quietly reach up a stage.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

PACKAGE = REPO / "promptcli"
# Lowest first: a module may import its own stage and the stages before it, never one after it.
STAGES = ["errors", "files", "progress", "versions", "spec", "store", "models", "prompt", "scoring", "evaluation",
          "report", "sweeps", "search", "tuning", "cli", "__main__"]
MAX_LINES = 300


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """promptcli modules that `path` imports, resolved to module names (`from . import x` included)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("promptcli")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("promptcli"):
                continue
            for alias in node.names:  # `from .x import y` may name a submodule y
                sub = f"{target}.{alias.name}"
                found.add(sub if MODULES.get(sub) else target)
    return {m for m in found if m in MODULES} - {name}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: imports_of(path) for name, path in MODULES.items()}


def stage(module: str) -> int:
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 else -1  # the package itself is the facade


def test_every_module_belongs_to_a_stage():
    assert all(len(m.split(".")) == 1 or m.split(".")[1] in STAGES for m in MODULES), \
        sorted(m for m in MODULES if len(m.split(".")) > 1 and m.split(".")[1] not in STAGES)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "promptcli"))
def test_no_import_reaches_a_later_stage(module):
    upward = sorted(m for m in GRAPH[module] if stage(m) > stage(module))
    assert not upward, f"{module} (stage {STAGES[stage(module)]}) imports later stages: {upward}"


def test_no_import_cycles():
    """Depth-first search over module imports; any back edge is a cycle."""
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycles.append(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])
    assert not cycles, cycles


def test_the_graph_is_read_correctly():
    """Guard for the checks above: known edges are found (a broken parser would pass them vacuously)."""
    assert "promptcli.evaluation.inputs" in GRAPH["promptcli.evaluation.runner"]
    assert "promptcli.scoring.causal" in GRAPH["promptcli.scoring"]  # `from . import causal`
    assert "promptcli.spec.runconfig" in GRAPH["promptcli.tuning.tuner"]  # a function-level import counts too


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    lines = MODULES[module].read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_LINES, f"{module} has {lines} lines; split it by job"


def test_validate_and_render_without_a_model_do_not_import_torch(tmp_path):
    """`validate` and `render` with no model need no weights: importing torch alone costs seconds."""
    code = (
        "import sys, promptcli\n"
        f"promptcli.validate([{str(REPO / 'templates')!r}])\n"
        f"promptcli.render({str(REPO / 'templates/sst2/causal-fewshot.yaml')!r}, {str(REPO / 'examples/sst2.jsonl')!r}, "
        f"train={str(REPO / 'examples/sst2.jsonl')!r})\n"
        "heavy = sorted(m for m in ('torch', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]


def test_every_file_write_goes_through_files_py():
    """One implementation of atomic writing: no other module writes a file itself (a crash mid-write would
    leave half a file). Appending predictions (`PredictionWriter`) and SQLite are their own kinds of write."""
    allowed = {"promptcli.files", "promptcli.evaluation.outputs"}
    writers = []
    for module, path in MODULES.items():
        if module in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            if isinstance(node.func, ast.Attribute) and node.func.attr in ("write_text", "write_bytes"):
                writers.append(f"{module}:{node.lineno} {node.func.attr}")
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"), None)
            if isinstance(node.func, (ast.Name, ast.Attribute)) and getattr(node.func, "id", getattr(node.func, "attr", "")) \
                    == "open" and isinstance(mode, ast.Constant) and "w" in str(mode.value):
                writers.append(f"{module}:{node.lineno} open(..., {mode.value!r})")
    assert not writers, writers
