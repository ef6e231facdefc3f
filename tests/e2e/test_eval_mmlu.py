"""`servelab worker eval` on a tiny local set in MMLU's format, offline: write-up 002's quantization table
scores each model on MMLU.

The set is laid out as evalscope 1.14.1's `mmlu` adapter reads it through `local_path`: the adapter loads
its default subset `all` (test split for the questions, `dev` for the 5-shot exemplars) and splits it by
each record's `subject` (`reformat_subset`), so the directory is what the hub copy (cais/mmlu) has for
`all`: a data set card whose `configs` name the `all` config with its `test` and `dev` files, read by
`datasets`, rows with question / subject / choices (four) / answer (an index). Five exemplars per subject
in `dev` (the adapter asserts it has as many as it asks for). A scripted OpenAI server answers each
question in the format the prompt asks for ("ANSWER: X"), so the scores are known exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from e2e_support import run_worker
from test_eval_mmlu_pro_iquiz import REPLIES, scripted, write  # noqa: F401  (scripted: a fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

SUBJECTS = ["elementary_mathematics", "world_religions"]  # STEM and Humanities in evalscope's SUBJECT_MAPPING


def mmlu(subject: str, question: str, choices: list[str], answer: int) -> dict[str, Any]:
    return {"question": question, "subject": subject, "choices": choices, "answer": answer}


MMLU_TEST = [
    mmlu("elementary_mathematics", "What is 6 + 7?", ["11", "12", "13", "14"], 2),  # C
    mmlu("elementary_mathematics", "What is 9 - 4?", ["5", "6", "7", "8"], 0),  # A
    mmlu("elementary_mathematics", "What is 2 * 8?", ["12", "14", "16", "18"], 2),  # C
    mmlu("world_religions", "Which city holds the Kaaba?", ["Medina", "Mecca", "Cairo", "Jerusalem"], 1),  # B
    mmlu(
        "world_religions", "In which country was the Buddha born?", ["India", "Nepal", "China", "Tibet"], 1
    ),  # B
]
MMLU_DEV = [mmlu("elementary_mathematics", f"What is 1 + {i}?", [str(i + k) for k in range(1, 5)], 0)
            for i in range(1, 6)] + [
    mmlu("world_religions", f"Which festival number {i} is sample?", ["w", "x", "y", "z"], i % 4) for i in range(1, 6)
]  # fmt: skip
# replies by a piece of the question: mathematics right, wrong, right | religions right, wrong
MMLU_REPLIES = {
    "What is 6 + 7?": "6 + 7 = 13.\nANSWER: C",
    "What is 9 - 4?": "ANSWER: B",
    "What is 2 * 8?": "ANSWER: C",
    "Which city holds the Kaaba?": "ANSWER: B",
    "In which country was the Buddha born?": "ANSWER: A",
}
REPLIES.update(MMLU_REPLIES)  # the scripted server answers from this table


def mmlu_set(root: Path) -> Path:
    """cais/mmlu's `all` config in miniature: README.md configs, all/test.jsonl and all/dev.jsonl."""
    write(root / "all" / "test.jsonl", MMLU_TEST)
    write(root / "all" / "dev.jsonl", MMLU_DEV)
    card = ("---\nconfigs:\n- config_name: all\n  data_files:\n  - split: test\n    path: all/test.jsonl\n"
            "  - split: dev\n    path: all/dev.jsonl\n---\n# MMLU (tiny)\n")  # fmt: skip
    (root / "README.md").write_text(card)
    return root


@pytest.mark.parametrize("subsets", [SUBJECTS, None], ids=["subset_list", "every-subject"])
def test_mmlu_known_scores(
    scripted: tuple[str, list[str]],  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
    subsets: list[str] | None,
) -> None:
    """With spec.evaluation's subsets (subset_list), and without: the adapter's 57 subjects, of which only
    the set's two have questions."""
    url, prompts = scripted
    data = mmlu_set(tmp_path / "mmlu")
    args: dict[str, dict[str, Any]] = {"mmlu": {"local_path": str(data)}}
    if subsets:
        args["mmlu"]["subset_list"] = subsets
    argv = ["eval", "--api-url", url, "--model", "scripted", "--datasets", "mmlu", "--dataset-args",
            json.dumps(args), "--generation-config", json.dumps({"max_tokens": 64, "temperature": 0.0}),
            "--batch-size", "4", "--out", str(tmp_path / "out")]  # fmt: skip
    proc = run_worker("evalscope", argv)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result: dict[str, Any] = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["missingDatasets"] == []
    log = (tmp_path / "out" / "logs" / "eval.log").read_text()
    assert "Downloading" not in log and "not found, downloading" not in log
    assert len(prompts) == len(MMLU_TEST)
    # each question's prompt carries the five dev exemplars of its own subject
    asked = next(p for p in prompts if "What is 6 + 7?" in p)
    assert all(f"What is 1 + {i}?" in asked for i in range(1, 6)) and "festival" not in asked
    scores = {(s["subset"], s["metric"]): s for s in result["scores"] if s["dataset"] == "mmlu"}
    acc = {subset: s["score"] for (subset, metric), s in scores.items() if metric == "acc" or "acc" in metric}
    assert acc["elementary_mathematics"] == pytest.approx(2 / 3, abs=1e-4)
    assert acc["world_religions"] == pytest.approx(0.5, abs=1e-4)
    assert acc["OVERALL"] == pytest.approx(3 / 5, abs=1e-4)
    assert {s["num"] for (subset, _), s in scores.items() if subset != "OVERALL"} == {2, 3}
