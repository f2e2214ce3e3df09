"""Bad inputs, each given to the real CLI in a fresh process, with a verdict: the issue-14 picture, redone.

    python bench/hardening.py [--root CHECKOUT] [--only SECTION] [--timeout 30] [--out hardening.json]

Verdicts:
- CLEAR: refused (exit not 0 or 70), no traceback, and the message holds every word the case expects
  (the file, line, field or option to fix);
- UNCLEAR: refused, but the message misses one of those words (it blames something else);
- ACCEPTED: exit 0 on an input that should be refused;
- INTERNAL: exit 70 ("internal error") or a Python traceback;
- HANG: still running after --timeout seconds (killed);
- HANDLED / WRONG: a case whose right outcome is success with a stated property (a finished run
  resumed untouched, the README's validate command), which held / did not.

`--root` runs another checkout's promptcli (its folder goes first on PYTHONPATH), so the same cases
give before/after counts: `git worktree add /tmp/before <commit>` then `--root /tmp/before`. The
models are tiny random ones (tests/tiny.py): these cases test messages, not accuracy.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

TEMPLATE = "kind: manual\ntext: 'Review: {{ text }} It was {{ mask }}'\nverbalizer: v.yaml\n"
VERBALIZER = "labels:\n  negative: [bad]\n  positive: [good]\n"
ROWS = [{"text": t, "label": label} for t, label in [("a great film", "positive"), ("awful", "negative"),
                                                      ("i liked it", "positive"), ("boring plot", "negative")] * 2]
LINES = [json.dumps(r) for r in ROWS]
DATA = "".join(line + "\n" for line in LINES)
BASE = {"t.yaml": TEMPLATE, "v.yaml": VERBALIZER, "d.jsonl": DATA}
RUN = ["run", "t.yaml", "--data", "d.jsonl", "--model", "{gpt2}", "--quiet", "--out", "out"]
TUNE = ["tune", "t.yaml", "--train", "d.jsonl", "--model", "{gpt2}", "--epochs", "1", "--quiet", "--out", "prompt"]
SWEEP = "templates: [t.yaml]\ndata: d.jsonl\nmodels: ['{gpt2}']\n"
BOMB = "\n".join(['a: &a ["l", "l", "l", "l", "l", "l", "l", "l", "l", "l"]'] +
                 [f"{c}: &{c} [" + ", ".join([f"*{chr(ord(c) - 1)}"] * 10) + "]" for c in "bcdefghi"])


def safetensors_text(key: str) -> str:
    """A valid safetensors file holding one 1×1 float32 tensor, as text (every byte is ASCII)."""
    header = json.dumps({key: {"dtype": "F32", "shape": [1, 1], "data_offsets": [0, 4]}})
    return struct.pack("<Q", len(header)).decode("ascii") + header + "\0" * 4


def run_with(*extra: str) -> list[str]:
    return [*RUN, *extra]


def data_case(text: str, *extra: str) -> dict:
    return {"files": {"d.jsonl": text}, "args": run_with(*extra)}


@dataclass
class Case:
    section: str
    name: str
    args: list[str]
    words: list[str] = field(default_factory=list)  # all must be in the message (whitespace ignored)
    files: dict[str, str] = field(default_factory=dict)  # written over BASE in the case's folder
    setup: list[list[str]] = field(default_factory=list)  # commands run first (must succeed)
    succeeds: Callable[[Path, subprocess.CompletedProcess], bool] | None = None  # a should-succeed case
    absent: str | None = None  # a file that must not exist afterwards (a payload that must not run)


def unchanged_metrics(folder: Path, done: subprocess.CompletedProcess) -> bool:
    return (folder / "out/metrics.json").read_bytes() == (folder / "metrics-before.json").read_bytes()


CASES = [
    # template and verbalizer files
    Case("spec", "unknown field, misspelt", RUN, ["t.yaml", "label_feild"], {"t.yaml": TEMPLATE + "label_feild: y\n"}),
    Case("spec", "no kind", RUN, ["t.yaml", "kind"], {"t.yaml": "text: '{{ text }} {{ mask }}'\nverbalizer: v.yaml\n"}),
    Case("spec", "unknown kind", RUN, ["t.yaml", "socratic"], {"t.yaml": TEMPLATE.replace("manual", "socratic")}),
    Case("spec", "no answer slot", RUN, ["t.yaml", "slot"], {"t.yaml": TEMPLATE.replace(" {{ mask }}", "")}),
    Case("spec", "two answer slots", RUN, ["t.yaml", "slot"],
         {"t.yaml": TEMPLATE.replace("{{ mask }}", "{{ mask }} {{ mask }}")}),
    Case("spec", "YAML syntax error", RUN, ["t.yaml:"], {"t.yaml": TEMPLATE + "oops: [unclosed\n"}),
    Case("spec", "YAML alias bomb (10^9 values)", RUN, ["t.yaml"], {"t.yaml": BOMB + "\n" + TEMPLATE}),
    Case("spec", "!!python/object/apply tag", RUN, ["t.yaml"],
         {"t.yaml": TEMPLATE + "x: !!python/object/apply:os.system ['touch pwned']\n"}, absent="pwned"),
    Case("spec", "Jinja include", RUN, ["t.yaml", "include"],
         {"t.yaml": TEMPLATE.replace("Review:", '{% include "v.yaml" %}')}),
    Case("spec", "Jinja nested range(99999) loops", RUN, ["t.yaml"], {"t.yaml": TEMPLATE.replace(
        "Review:", "{% for i in range(99999) %}{% for j in range(99999) %}x{% endfor %}{% endfor %}")}),
    Case("spec", "Jinja 'a' * 50000000", RUN, ["t.yaml"], {"t.yaml": TEMPLATE.replace("Review:", '{{ "a" * 50000000 }}')}),
    Case("spec", "Jinja range(100000000)", RUN, ["t.yaml"], {"t.yaml": TEMPLATE.replace("Review:", "{{ range(100000000) }}")}),
    Case("spec", "soft(5000) without a soft prompt", RUN, ["t.yaml", "soft"],
         {"t.yaml": TEMPLATE.replace("Review:", "{{ soft(5000) }}")}),
    Case("spec", "verbalizer path /etc/passwd", RUN, ["t.yaml", "passwd"],
         {"t.yaml": TEMPLATE.replace("v.yaml", "/etc/passwd")}),
    Case("spec", "verbalizer file missing", RUN, ["v2.yaml"], {"t.yaml": TEMPLATE.replace("v.yaml", "v2.yaml")}),
    Case("spec", "verbalizer is a list", RUN, ["v.yaml"], {"v.yaml": "- bad\n- good\n"}),
    Case("spec", "label word a zero-width space", RUN, ["v.yaml", "positive"],
         {"v.yaml": VERBALIZER.replace("[good]", "['\u200b']")}),
    Case("spec", "same word for two labels", RUN, ["v.yaml", "bad"], {"v.yaml": VERBALIZER.replace("[good]", "[bad]")}),
    Case("spec", "unquoted yes/no label words are words (YAML 1.2 booleans)", RUN,
         files={"v.yaml": "labels:\n  negative: [no]\n  positive: [yes]\n"},
         succeeds=lambda folder, done: done.returncode == 0),
    Case("spec", "unquoted True/False label words", RUN, ["v.yaml", "boolean"],
         {"v.yaml": "labels:\n  negative: [False]\n  positive: [True]\n"}),
    Case("spec", "no labels", RUN, ["v.yaml", "labels"], {"v.yaml": "labels: {}\n"}),
    Case("spec", "one label", RUN, ["v.yaml", "labels"], {"v.yaml": "labels:\n  positive: [good]\n"}),
    # data files
    Case("data", "data file missing", run_with()[:3] + ["nope.jsonl"] + RUN[4:], ["nope.jsonl"]),
    Case("data", "a folder as --data", RUN[:3] + ["."] + RUN[4:], ["folder"]),
    Case("data", "broken JSON on line 3", **data_case(DATA.replace(LINES[2], LINES[2].replace('"i liked it"', "i liked"))),
         words=["d.jsonl:3"]),
    Case("data", "row without the text field", **data_case(DATA.replace('"text": "awful"', '"txt": "awful"', 1)),
         words=["d.jsonl:2", "text"]),
    Case("data", "text null", **data_case(DATA.replace('"awful"', "null", 1)), words=["d.jsonl:2", "text"]),
    Case("data", "text a list", **data_case(DATA.replace('"awful"', '["bad", "film"]', 1)), words=["d.jsonl:2", "text"]),
    Case("data", "text a number is shown as text (documented)", **data_case(DATA.replace('"awful"', "3.5", 1)),
         succeeds=lambda folder, done: done.returncode == 0),
    Case("data", "text a boolean", **data_case(DATA.replace('"awful"', "true", 1)), words=["d.jsonl:2", "text"]),
    Case("data", "text NaN", **data_case(DATA.replace('"awful"', "NaN", 1)), words=["d.jsonl:2", "text"]),
    Case("data", "duplicate key in a row", **data_case(DATA.replace('"awful",', '"awful", "text": "great",', 1)),
         words=["d.jsonl:2", "text"]),
    Case("data", "first row unlabelled, the rest labelled", **data_case(
        DATA.replace(', "label": "positive"', "", 1)), words=["d.jsonl:1", "label"]),
    Case("data", "label not in the verbalizer", **data_case(DATA.replace('"negative"', '"neutral"', 1)),
         words=["d.jsonl:2", "neutral"]),
    Case("data", "--label-field no row has", run_with("--label-field", "gold"), ["gold"]),
    Case("data", "empty data file", **data_case(""), words=["d.jsonl"]),
    Case("data", "CSV without the text column", RUN[:3] + ["d.csv"] + RUN[4:], ["d.csv", "text"],
         {"d.csv": "sentence,label\nfine,positive\n"}),
    Case("data", "private-use slot character in text", **data_case(DATA.replace("awful", "aw\ue000ful", 1)),
         words=["d.jsonl:2", "text"]),
    # options
    Case("options", "--device meta", run_with("--device", "meta"), ["meta"]),
    Case("options", "--device cuda on a machine without a GPU", run_with("--device", "cuda"), ["CUDA"]),
    Case("options", "--dtype float64", run_with("--dtype", "float64"), ["float64"]),
    Case("options", "--batch-size 0", run_with("--batch-size", "0"), ["batch-size"]),
    Case("options", "--max-length 0", run_with("--max-length", "0"), ["max-length"]),
    Case("options", "--max-length -5", run_with("--max-length", "-5"), ["max-length"]),
    Case("options", "--normalize bogus", run_with("--normalize", "bogus"), ["bogus"]),
    Case("options", "--limit 0", run_with("--limit", "0"), ["limit"]),
    Case("options", "--scorer causal on a masked LM", [*RUN[:4], "--model", "{bert}", *RUN[6:], "--scorer", "causal"],
         ["causal"]),
    Case("options", "--out names a file", RUN[:-1] + ["d.jsonl"], ["d.jsonl"]),
    Case("options", "--model a folder that does not exist", [*RUN[:4], "--model", "./no/such", *RUN[6:]], ["no/such"]),
    Case("options", "--model a file", [*RUN[:4], "--model", "d.jsonl", *RUN[6:]], ["d.jsonl"]),
    Case("options", "--store a folder", run_with("--store", "."), ["folder"]),
    Case("options", "runs list --kind bogus", ["runs", "list", "--kind", "bogus"], ["bogus"]),
    Case("options", "--soft-prompt folder with a damaged safetensors file", run_with("--soft-prompt", "sp"),
         ["adapter_model.safetensors"], {"sp/adapter_model.safetensors": "x"}),
    Case("options", "--soft-prompt folder with a broken manifest", run_with("--soft-prompt", "sp"),
         ["promptcli_soft_prompt.json"], {"sp/promptcli_soft_prompt.json": "{not json",
                                          "sp/adapter_model.safetensors": safetensors_text("prompt_embeddings")}),
    Case("options", "pickle weights (pytorch_model.bin)", [*RUN[:4], "--model", "pickled", *RUN[6:]], ["pickle"],
         absent="pwned"),
    # resuming
    Case("resume", "--resume a folder that does not exist", ["run", "--resume", "nowhere", "--quiet"], ["nowhere"]),
    Case("resume", "--resume with another model", ["run", "--resume", "out", "--model", "{bert}", "--quiet"], ["model"],
         setup=[RUN]),
    Case("resume", "--resume a finished run changes nothing", ["run", "--resume", "out", "--quiet"], setup=[RUN],
         succeeds=unchanged_metrics),
    # sweeps
    Case("sweep", "every variant's data missing", ["sweep", "s.yaml", "--out", "sw", "--quiet"], ["nope.jsonl"],
         {"s.yaml": SWEEP.replace("d.jsonl", "nope.jsonl")}),
    Case("sweep", "--shots a,b", ["sweep", "s.yaml", "--shots", "a,b", "--out", "sw", "--quiet"], ["shots"],
         {"s.yaml": SWEEP}),
    Case("sweep", "--normalize bogus", ["sweep", "s.yaml", "--normalize", "bogus", "--out", "sw", "--quiet"], ["bogus"],
         {"s.yaml": SWEEP}),
    Case("sweep", "show: an unknown variant", ["sweep", "s.yaml", "--out", "sw", "--quiet"], ["nobody"],
         {"s.yaml": SWEEP + "show: nobody\n"}),
    Case("sweep", "a model path that does not exist", ["sweep", "s.yaml", "--out", "sw", "--quiet"], ["no/such"],
         {"s.yaml": SWEEP.replace("{gpt2}", "./no/such")}),
    # tune
    Case("tune", "a cot template", TUNE, ["cot"], {"t.yaml": "kind: cot\ntext: '{{ text }}'\nanswer_trigger: "
                                                   "'So it was {{ mask }}'\nverbalizer: v.yaml\n"}),
    Case("tune", "--optimizer rmsprop", [*TUNE, "--optimizer", "rmsprop"], ["rmsprop"]),
    Case("tune", "--precision fp8", [*TUNE, "--precision", "fp8"], ["fp8"]),
    Case("tune", "--lr -1", [*TUNE, "--lr", "-1"], ["lr"]),
    Case("tune", "--virtual-tokens 5000", [*TUNE, "--virtual-tokens", "5000"], ["virtual-tokens"]),
    Case("tune", "--train missing", [*TUNE[:3], "nope.jsonl", *TUNE[4:]], ["nope.jsonl"]),
    # documented commands
    Case("docs", "README: validate templates/ verbalizers/ --model <causal>",
         ["validate", str(REPO / "templates"), str(REPO / "verbalizers"), "--model", "{gpt2}"],
         succeeds=lambda folder, done: done.returncode == 0),
]


def prepare(folder: Path, case: Case, models: dict[str, str]) -> None:
    for name, text in {**BASE, **case.files}.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.replace("{gpt2}", models["gpt2"]), encoding="utf-8")
    if "pickled" in case.args:
        import pickle
        import shutil

        shutil.copytree(models["gpt2"], folder / "pickled")
        for weights in (folder / "pickled").glob("*.safetensors"):
            weights.unlink()
        payload = (os.system, (f"touch {folder / 'pwned'}",))
        (folder / "pickled/pytorch_model.bin").write_bytes(pickle.dumps(type("P", (), {"__reduce__": lambda s: payload})()))


def verdict(case: Case, folder: Path, done: subprocess.CompletedProcess | None) -> str:
    if done is None:
        return "HANG"
    output = done.stdout + done.stderr
    if done.returncode == 70 or "Traceback (most recent call last)" in output or "internal error" in output:
        return "INTERNAL"
    if case.absent and (folder / case.absent).exists():
        return "INTERNAL"  # a payload ran
    if case.succeeds is not None:
        return "HANDLED" if case.succeeds(folder, done) else "WRONG"
    if done.returncode == 0:
        return "ACCEPTED"
    flat = "".join(output.split())
    return "CLEAR" if all("".join(w.split()) in flat for w in case.words) else "UNCLEAR"


def run_case(case: Case, root: Path, models: dict[str, str], work: Path, timeout: float) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="case-", dir=work))
    prepare(folder, case, models)
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "NO_COLOR": "1",
           "PROMPTCLI_HOME": str(work / "home")}  # run store and score cache of its own

    def cli(args: list[str]) -> subprocess.CompletedProcess | None:
        command = [sys.executable, "-m", "promptcli.cli", *(a.format(**models) for a in args)]
        proc = subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return None
        return subprocess.CompletedProcess(command, proc.returncode, out, err)

    for step in case.setup:
        ready = cli(step)
        assert ready is not None and ready.returncode == 0, f"{case.name}: setup failed: {ready and ready.stderr}"
    if (folder / "out/metrics.json").exists():
        (folder / "metrics-before.json").write_bytes((folder / "out/metrics.json").read_bytes())
    start = time.perf_counter()
    done = cli(case.args)
    message = "" if done is None else " ".join((done.stderr or done.stdout).split())[:300]
    return {"section": case.section, "case": case.name, "verdict": verdict(case, folder, done),
            "exit": None if done is None else done.returncode, "seconds": round(time.perf_counter() - start, 1),
            "message": message}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(REPO), help="the checkout whose promptcli runs (default: this one)")
    p.add_argument("--only", help="one section: " + ", ".join(dict.fromkeys(c.section for c in CASES)))
    p.add_argument("--timeout", type=float, default=30.0, help="seconds before a case counts as a HANG")
    p.add_argument("--out", help="write every case's verdict and message here (JSON)")
    args = p.parse_args(argv)
    import tiny

    with tempfile.TemporaryDirectory(prefix="promptcli-hardening-") as tmp:
        work = Path(tmp)
        models = {"gpt2": str(tiny.build_gpt2(work / "gpt2")), "bert": str(tiny.build_bert(work / "bert"))}
        results = []
        for case in CASES:
            if args.only and case.section != args.only:
                continue
            results.append(run_case(case, Path(args.root).resolve(), models, work, args.timeout))
            r = results[-1]
            print(f"{r['verdict']:9} {r['section']:8} {r['case']:50} exit {r['exit']}  {r['message'][:110]}", flush=True)
    counts = Counter(r["verdict"] for r in results)
    print(f"\n{len(results)} cases: " + ", ".join(f"{counts[v]} {v}" for v in
                                                 ("CLEAR", "HANDLED", "UNCLEAR", "ACCEPTED", "WRONG", "INTERNAL", "HANG")))
    if args.out:
        Path(args.out).write_text(json.dumps({"root": args.root, "counts": counts, "cases": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
