"""`servelab report` on real runs (taken to their end by the decision core, tests/report_fixtures.py) in all
four formats: what each says, that incomparable workloads are kept apart (and why), deltas against the
chosen baseline, the HTML page fetches nothing, and every JSON report is valid llm-d Benchmark Report v0.2."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import report_fixtures as rf
from servelab.cli import main
from servelab.reporting import compare, llmd, sources

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return rf.real_runs()


@pytest.fixture(scope="module")
def runs_dir(objects: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rf.write_runs_dir(tmp_path_factory.mktemp("runs"), objects)


def report(*args: str, capsys: pytest.CaptureFixture[str]) -> str:
    rc = main(["report", *args])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


def test_the_runs_are_real(objects: list[dict[str, Any]]) -> None:
    """What the decision core made of the scripted results: verdicts and SLO headlines by servelab itself."""
    by = {o["metadata"]["name"]: o["status"] for o in objects}
    assert all(s["phase"] == "Succeeded" for s in by.values())
    assert by["qwen-bf16-vllm"]["verdict"]["reason"] == "AllChecksPassed"
    assert by["qwen-q4km-llamacpp"]["verdict"]["reason"] == "SLONotMet"
    assert by["qwen-gguf"]["verdict"]["reason"] == "AcceptanceNotMet"
    assert by["qwen-gptq-vllm"]["quantization"] == "W4A16-G128"  # served from the QuantJob


def test_table_groups_by_workload_and_says_why(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = report("--runs-dir", str(runs_dir), capsys=capsys)
    assert "Workload group 1: evalscope chat random in=1024 out=256 ignoreEos" in out
    assert "Workload group 2: evalscope chat random in=1024 out=128 ignoreEos" in out
    assert (
        "Shown apart from group 1: it measured another workload (maxTokens: 256 vs 128; minTokens: 256 vs 128)"
        in out
    )
    group1, _ = out.split("Workload group 2", 1)
    assert "qwen-bf16-vllm-short" not in group1  # never in the same table as the other workload
    # side by side per concurrency, deltas against the first run of the group
    assert re.search(r"\|\s+1 \|\s+92\.00 \|\s+131\.00 \(\+42\.4%\) \|\s+48\.00 \(-47\.8%\) \|", group1)
    assert "Deltas against qwen-bf16-vllm (the first run; choose with --baseline)." in group1
    assert "server-capped" in group1 and "saturated" in group1  # point labels
    assert "40.84" in group1 and "failed: SLONotMet" in group1  # SLO headline and verdicts
    assert "math_500 mean_acc 0.535" in group1  # the GPTQ run's accuracy, from its QuantJob's output
    for expected in ("Verdicts", "AcceptanceNotMet", "pp512 @ d4096", "QuantJob qwen-gguf: size and quality against F16",
                     "15.6200 ± 0.1200 (+6.9%)", "0.5116 (-0.0465)", "QuantJob qwen-gptq: task scores"):  # fmt: skip
        assert expected in out, expected


def test_baseline_is_chosen_and_never_crosses_workloads(
    runs_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = report("--runs-dir", str(runs_dir), "--baseline", "qwen-q4km-llamacpp", capsys=capsys)
    group1, group2 = out.split("Workload group 2", 1)
    assert re.search(r"\|\s+1 \|\s+92\.00 \(\+91\.7%\) \|\s+131\.00 \(\+172\.9%\) \|\s+48\.00 \|", group1)
    assert (
        "no deltas: the baseline qwen-q4km-llamacpp measured another workload (maxTokens: 256 vs 128"
        in group2
    )


def test_markdown_writes_its_plots_beside_it(
    runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.md"
    report("--runs-dir", str(runs_dir), "--format", "markdown", "-o", str(out), capsys=capsys)
    text = out.read_text()
    assert "| Concurrency | qwen-bf16-vllm | qwen-gptq-vllm | qwen-q4km-llamacpp |" in text
    assert "| 1 | 92.00 | 131.00 (+42.4%) | 48.00 (-47.8%) |" in text
    links = re.findall(r"!\[[^]]*\]\(([^)]+\.svg)\)", text)
    assert {Path(link).name for link in links} == {"group-1-sweep.svg", "group-1-pareto.svg", "group-2-sweep.svg",
                                                   "group-2-pareto.svg", "depth-pp512-tg32.svg", "quality.svg"}  # fmt: skip
    for link in links:
        svg = (out.parent / link).read_text()
        assert svg.startswith("<svg") and "<path" in svg and len(svg) > 5000


def test_html_is_one_self_contained_page(
    runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.html"
    report("--runs-dir", str(runs_dir), "--format", "html", "-o", str(out), capsys=capsys)
    page = out.read_text()
    assert page.count("<svg") == 6 and page.count('<figure data-plot="') == 6
    for fetching in ("<script", "<link", "<img", "src=", "@import"):
        assert fetching not in page, fetching
    assert not re.findall(r"url\((?!#)", page)  # only references inside the page (SVG clip paths)
    ids = re.findall(r'\bid="([^"]+)"', page)
    assert len(ids) == len(set(ids))  # six SVGs inline, no id shared
    # the only URLs are XML namespace names (never fetched) and in-page anchors
    assert not re.findall(r"https?://", re.sub(r'xmlns(:\w+)?="[^"]*"', "", page))
    assert (
        '<span class="delta good">+42.4%</span>' in page and '<span class="delta bad">-47.8%</span>' in page
    )


def test_json_is_valid_llmd_benchmark_report(runs_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = json.loads(report("--runs-dir", str(runs_dir), "--format", "json", capsys=capsys))
    validator = jsonschema.Draft202012Validator(llmd.schema())
    for rep in reports:
        errors = sorted(validator.iter_errors(rep), key=str)
        assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]
    # one report per valid load point: 4 + 4 + 4 + 2
    assert len(reports) == 14
    by = {(r["scenario"]["stack"][0]["metadata"]["label"], r["scenario"]["load"]["standardized"]["concurrency"]): r
          for r in reports}  # fmt: skip
    gptq = by[("qwen-gptq-vllm", 16)]
    assert gptq["scenario"]["stack"][0]["standardized"]["accelerator"] == {
        "model": "NVIDIA-L40S", "count": 1, "parallelism": {"tp": 1}}  # fmt: skip
    agg = gptq["results"]["request_performance"]["aggregate"]
    assert agg["throughput"]["output_token_rate"] == {"units": "tokens/s", "mean": 1268.0}
    assert agg["latency"]["time_to_first_token"]["p99"] == pytest.approx(0.1296)
    assert (
        gptq["run"]["eid"]
        == by[("qwen-gptq-vllm", 1)]["run"]["eid"]
        != by[("qwen-bf16-vllm", 1)]["run"]["eid"]
    )


def test_json_into_a_directory_one_file_per_report(
    runs_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report(
        "--runs-dir", str(runs_dir), "--format", "json", "-o", str(tmp_path), "qwen-bf16-vllm", capsys=capsys
    )
    assert sorted(p.name for p in tmp_path.glob("*.json")) == [
        f"qwen-bf16-vllm-c{c}.json" for c in (1, 16, 4, 64)
    ]


def test_cluster_objects_and_run_directories_are_one_path(
    objects: list[dict[str, Any]], runs_dir: Path, tmp_path: Path
) -> None:
    """What `kubectl get -o yaml` returns (a List) gives the same report as the run directories."""
    listing = tmp_path / "list.yaml"
    listing.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objects}))
    a = compare.build(sources.from_paths([listing]))
    b = compare.build(sources.from_paths([runs_dir]))
    assert [t.text() for s in a.sections for t in s.tables] == [
        t.text() for s in b.sections for t in s.tables
    ]


def test_nothing_found_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--runs-dir", str(tmp_path)]) == 2
    assert "no ServeBenchmark or QuantJob found" in capsys.readouterr().err
    assert main(["report", "--runs-dir", str(tmp_path / "missing")]) == 2


def test_pareto_front() -> None:
    from servelab.reporting.plots import frontier

    assert frontier([(1, 10), (2, 8), (1.5, 7), (3, 2), (0.5, 12)]) == [(0.5, 12), (1, 10), (2, 8), (3, 2)]


def test_a_quantjobs_scoring_runs_stay_in_its_table(objects: list[dict[str, Any]], tmp_path: Path) -> None:
    """Locally a scoring run has only its owner's label; in a cluster also an ownerReference."""
    scoring = json.loads(json.dumps(next(o for o in objects if o["metadata"]["name"] == "qwen-bf16-vllm")))
    scoring["metadata"] = {
        "name": "qwen-gguf-q1-score-f16",
        "labels": {"servelab.dev/owner-uid": "local-quantjob-qwen-gguf"},
    }
    runs = sources.from_paths([rf.write_runs_dir(tmp_path, [*objects, scoring])])
    doc = compare.build(runs)
    assert "qwen-gguf-q1-score-f16" not in "\n".join(t.text() for s in doc.sections for t in s.tables)
