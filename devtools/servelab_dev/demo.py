"""`servelab demo`: servelab's main job on its embedded default, on any machine.

Makes a tiny random-weight Qwen3-style model and local data (nothing is downloaded), then runs
examples/local/tiny-gguf-comparison.yaml through the local executor: llama.cpp GGUF quantization
(IQ4_XS with an importance matrix, Q4_K_M without), perplexity/KL of each, then f16 vs IQ4_XS vs
Q4_K_M each scored on tiny QA and math_500-format sets (the QuantJob's evalscope evaluation), and
each served by llama-server for an evalscope perf sweep: the seeds' tables and a chart.
"""

from __future__ import annotations

import argparse
import json
import os
import sysconfig
import time
from pathlib import Path

from servelab.manifests import load_manifests
from servelab.paths import repo_path

QA = [
    ("What is the capital of France?", "Paris"),
    ("How many legs does a spider have?", "Eight"),
    ("What colour is the sky on a clear day?", "Blue"),
    ("What is two plus two?", "Four"),
    ("Which planet is known as the red planet?", "Mars"),
    ("What is frozen water called?", "Ice"),
    ("How many days are in a week?", "Seven"),
    ("What do bees make?", "Honey"),
]

# math_500's layout (test.jsonl: problem, solution, answer, subject, level, unique_id), one row per level
MATH = [
    ("What is $12 + 30$?", "42", "Prealgebra", 1),
    ("Solve for $x$: $2x + 3 = 11$.", "4", "Algebra", 2),
    ("What is the remainder when $100$ is divided by $7$?", "2", "Number Theory", 3),
    ("In how many ways can 3 different books be arranged on a shelf?", "6", "Counting & Probability", 4),
    ("Find the sum of the roots of $x^2 - 5x + 6 = 0$.", "5", "Intermediate Algebra", 5),
]


def local_text(names: list[str]) -> str:
    """Text that exists on every machine with this Python: standard-library sources."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return "\n\n".join((stdlib / n).read_text(encoding="utf-8", errors="replace") for n in names)


def write_demo_data(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "calibration.txt").write_text(local_text(["textwrap.py", "string.py", "shlex.py", "fnmatch.py"]))
    (root / "eval.txt").write_text(local_text(["argparse.py"])[:60000])
    qa = root / "qa"
    qa.mkdir(exist_ok=True)
    (qa / "example.jsonl").write_text("".join(json.dumps({"query": q, "response": a}) + "\n" for q, a in QA))
    math = root / "math_500"
    math.mkdir(exist_ok=True)
    rows = [{"problem": p, "solution": f"The answer is $\\boxed{{{a}}}$.", "answer": a, "subject": s, "level": lv,
             "unique_id": f"test/demo/{i}.json"} for i, (p, a, s, lv) in enumerate(MATH)]  # fmt: skip
    (math / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", type=Path, default=Path("servelab-runs/demo"), help="output directory")
    parser.add_argument("--manifest", type=Path, default=repo_path("examples", "local", "tiny-gguf-comparison.yaml"),
                        help="manifest to run (default: the tiny GGUF comparison)")  # fmt: skip


def measurement_notes(runs: Path, loads: list[float]) -> list[str]:
    """Whether the machine could measure: its load average over the run against its cores, and per
    benchmark the points whose repetitions disagreed (unstable) or whose client was at its limit."""
    cores = os.cpu_count() or 1
    peak = max(loads)
    notes = [f"machine: {cores} cores, load average {' -> '.join(f'{x:.1f}' for x in loads)}"
             + (f": busier than its cores ({peak / cores:.1f} runnable per core), so load points share "
                "the CPUs with other work" if peak > cores else "")]  # fmt: skip
    for path in sorted(runs.glob("*/status.json")):
        body = json.loads(path.read_text())
        if body.get("kind") != "ServeBenchmark":
            continue
        points = (body.get("status") or {}).get("results") or []
        unstable = [p for p in points if p.get("unstable")]
        bound = [p for p in points if p.get("label") == "client-bound"]
        name = body.get("metadata", {}).get("name", path.parent.name)
        if not unstable and not bound:
            notes.append(f"{name}: all {len(points)} points repeatable within spec.load.maxRelativeSpread")
            continue
        notes.append(
            f"{name}: too busy to measure {len(unstable)} of {len(points)} points (repetitions disagree: c="
            f"{', '.join(str(p['concurrency']) for p in unstable) or '-'}), {len(bound)} client-bound; "
            "read those as noise, not a trend"
        )
    return notes


def run(args: argparse.Namespace) -> int:
    from servelab.local.cli import execute
    from servelab_dev.tinymodel import ensure_tiny_model

    t0 = time.monotonic()
    runs = args.runs_dir.resolve()
    print("servelab demo: preparing the tiny model and local data (first run builds llama.cpp and the "
          "worker environments into ~/.cache/servelab; later runs reuse them)", flush=True)  # fmt: skip
    if not os.environ.get("SERVELAB_TINY_MODEL"):
        os.environ["SERVELAB_TINY_MODEL"] = str(ensure_tiny_model())
    os.environ.setdefault("SERVELAB_DEMO_DATA", str(write_demo_data(runs / "data")))
    print(
        f"model: {os.environ['SERVELAB_TINY_MODEL']}\ndata:  {os.environ['SERVELAB_DEMO_DATA']}", flush=True
    )
    resources = load_manifests(args.manifest)
    for res in resources:
        res.spec()
    loads = [os.getloadavg()[0]]
    rc = execute(resources, runs)
    loads.append(os.getloadavg()[0])
    for note in measurement_notes(runs, loads):
        print(f"measurement: {note}")
    print(f"servelab demo finished in {time.monotonic() - t0:.0f}s (exit {rc})")
    return rc
