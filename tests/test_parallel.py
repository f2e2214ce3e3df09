"""`run` and `sweep` on two processes (torchrun, gloo on CPU): the same bytes as one process, and an
interrupted multi-process run resumes to them."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import promptcli
from conftest import REPO, write

EXAMPLES = str(REPO / "examples/sst2.jsonl")


def torchrun(*args: str, script: Path | None = None, processes: int = 2) -> subprocess.CompletedProcess:
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    target = [str(script)] if script else ["-m", "promptcli"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(launch + target + list(args), capture_output=True, text=True, env=env, timeout=300)


def same_outputs(one: Path, two: Path) -> None:
    for name in ("predictions.jsonl", "metrics.json"):
        assert (one / name).read_bytes() == (two / name).read_bytes(), name
    assert not list(two.glob("predictions.rank*.jsonl"))  # merged, then removed


CASES = {
    "mlm": ("bert", "templates/sst2/manual.yaml", []),
    "causal": ("gpt2", "templates/sst2/causal.yaml", []),
    "fewshot": ("gpt2", "templates/sst2/causal-fewshot.yaml", ["--train", EXAMPLES]),  # the shared prefix cache
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_two_processes_write_what_one_writes(tiny, tmp_path, case):
    model, template, extra = CASES[case]
    args = [str(REPO / template), "--data", EXAMPLES, "--model", tiny[model], "--batch-size", "4", "--device",
            "cpu", "--no-cache", *extra]
    one = subprocess.run([sys.executable, "-m", "promptcli", "run", *args, "--out", str(tmp_path / "one"), "--quiet"],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})  # as each rank
    assert one.returncode == 0, one.stderr
    two = torchrun("run", *args, "--out", str(tmp_path / "two"), "--format", "json")
    assert two.returncode == 0, two.stderr[-3000:]
    same_outputs(tmp_path / "one", tmp_path / "two")
    record = json.loads((tmp_path / "two/run.json").read_text())
    assert record["process"]["processes"] == 2 and record["status"] == "finished"
    alone = json.loads((tmp_path / "one/run.json").read_text())
    # the rows shared out, not scored twice (each process computes the shared prefix and calibration terms)
    assert alone["work"]["forward_passes"] <= record["work"]["forward_passes"] < 1.2 * alone["work"]["forward_passes"]
    assert two.stdout.count('"accuracy"') == 1  # one process prints


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="accelerate is not installed (pip install -e .[dev])")
def test_accelerate_launch_runs_two_processes(tiny, tmp_path):
    args = [str(REPO / "templates/sst2/causal.yaml"), "--data", EXAMPLES, "--model", tiny["gpt2"], "--batch-size", "4",
            "--device", "cpu", "--no-cache", "--quiet"]
    promptcli.run(args[0], EXAMPLES, tiny["gpt2"], out=tmp_path / "one", batch_size=4, device="cpu", cache=False,
                  progress=False)
    # --multi_gpu launches through torch.distributed.run, gloo without a GPU (--cpu would start one process)
    launch = ["accelerate", "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "promptcli", "run"]
    done = subprocess.run(launch + args + ["--out", str(tmp_path / "two")], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    same_outputs(tmp_path / "one", tmp_path / "two")
    assert json.loads((tmp_path / "two/run.json").read_text())["process"]["processes"] == 2


CRASH = """
import os, sys
import promptcli

def stop(done, total):
    if os.environ["RANK"] == "1" and done >= 12:
        os._exit(3)  # killed mid-run: no clean-up, no record

promptcli.run(sys.argv[1], sys.argv[2], sys.argv[3], out=sys.argv[4], batch_size=2, device="cpu", cache=False,
              progress=False, on_batch=stop)
"""


@pytest.mark.parametrize("resume_with", [2, 1])
def test_a_killed_process_resumes_to_the_same_bytes(tiny, tmp_path, resume_with):
    template = str(REPO / "templates/sst2/causal.yaml")
    whole = promptcli.run(template, EXAMPLES, tiny["gpt2"], out=tmp_path / "whole", batch_size=2, device="cpu",
                          cache=False, progress=False)
    script = write(tmp_path / "crash.py", CRASH)
    crashed = torchrun(template, EXAMPLES, tiny["gpt2"], str(tmp_path / "run"), script=script)
    assert crashed.returncode != 0
    kept = [json.loads(line) for f in (tmp_path / "run").glob("predictions*.jsonl")
            for line in f.read_text().splitlines() if line.endswith("}")]
    assert 12 <= len(kept) < 100  # part of the rows was written before the crash
    if resume_with == 2:
        resumed = torchrun("run", "--resume", str(tmp_path / "run"), "--quiet")
        assert resumed.returncode == 0, resumed.stderr[-3000:]
    else:
        promptcli.run(resume=tmp_path / "run", progress=False)
    same_outputs(whole.out_dir, tmp_path / "run")
    assert json.loads((tmp_path / "run/run.json").read_text())["resumed_rows"] >= 12


@pytest.mark.parametrize("parallel", ["rows", "variants"])
def test_a_sweep_on_two_processes_ranks_and_writes_what_one_does(tiny, tmp_path, parallel):
    spec = {"data": EXAMPLES, "train": EXAMPLES, "models": [tiny["gpt2"]], "ensemble": True,
            "templates": [str(REPO / "templates/sst2/causal.yaml"), str(REPO / "templates/sst2/causal-fewshot.yaml")],
            "calibrate": ["none", "contextual"], "options": {"batch_size": 4, "device": "cpu"}}
    path = write(tmp_path / "sweep.yaml", yaml.safe_dump(spec))
    one = promptcli.sweep(path, tmp_path / "one", progress=False, cache=False)
    two = torchrun("sweep", str(path), "--out", str(tmp_path / "two"), "--no-cache", "--quiet", "--parallel", parallel)
    assert two.returncode == 0, two.stderr[-3000:]
    processes = {json.loads(p.read_text())["process"].get("processes", 1): p for p in (tmp_path / "two").rglob("run.json")}
    assert set(processes) == {2 if parallel == "rows" else 1}  # rows shared out, or each variant run whole
    pids = {json.loads(p.read_text())["process"]["pid"] for p in (tmp_path / "two").rglob("run.json")}
    assert len(pids) == (1 if parallel == "rows" else 2)  # with whole variants, both processes recorded runs
    folders = [p.parent.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("predictions.jsonl")]
    assert len(folders) == 6  # four variants, two ensembles
    for folder in folders:
        same_outputs(tmp_path / "one" / folder, tmp_path / "two" / folder)
    board = json.loads((tmp_path / "two/leaderboard.json").read_text())
    assert [(r["variant"], r["value"], r["tied"]) for r in board] == \
        [(r.variant, r.value, r.tied) for r in one.leaderboard]


def test_the_progress_counts_the_other_processes_lines_as_they_come(tmp_path):
    from promptcli.evaluation.batches import PeerLines

    first, second = tmp_path / "predictions.rank1.jsonl", tmp_path / "predictions.rank2.jsonl"
    first.write_text('{"index": 0}\n')
    peers = PeerLines([first, second])  # the second process has written nothing yet
    assert peers.count() == 1
    with first.open("a") as handle:
        handle.write('{"index": 4}\n{"index": 5')  # a line being written is not counted until it ends
    second.write_text('{"index": 2}\n')
    assert peers.count() == 3
    with first.open("a") as handle:
        handle.write('}\n')
    assert peers.count() == 4


@pytest.mark.skipif(importlib.util.find_spec("accelerate") is None, reason="accelerate is not installed")
def test_device_map_loads_through_accelerate_and_scores_the_same(tiny, tmp_path, monkeypatch):
    import transformers

    seen = []
    real = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **kw: seen.append(kw.get("device_map")) or real(*a, **kw))
    runs = [promptcli.run(REPO / "templates/sst2/causal.yaml", EXAMPLES, tiny["gpt2"], out=tmp_path / f"r{i}",
                          progress=False, cache=False, **options)
            for i, options in enumerate([{}, {"device_map": "auto"}])]
    assert seen == [None, "auto"]  # this machine has no GPU: accelerate places every layer on the CPU
    same_outputs(tmp_path / "r0", tmp_path / "r1")
    assert runs[1].record.config["device_map"] == "auto"


def test_device_map_without_accelerate_names_the_install(tiny, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "accelerate" else real(name, *a))
    with pytest.raises(promptcli.PromptcliError, match="pip install accelerate"):
        promptcli.run(REPO / "templates/sst2/causal.yaml", EXAMPLES, tiny["gpt2"], out=tmp_path / "r",
                      progress=False, cache=False, device_map="auto")
    assert not (tmp_path / "r").exists()  # refused before anything was written
