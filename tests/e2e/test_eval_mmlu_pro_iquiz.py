"""`servelab worker eval` on tiny local sets in evalscope's MMLU-Pro and IQuiz formats, offline, and the
write-up 000 evaluation as written (`--datasets math_500 ifeval iquiz`).

The sets are laid out as evalscope 1.14.1 reads them through `local_path`: MMLU-Pro (`mmlu_pro`, 10
options, subsets by category, 5-shot exemplars from the validation split): `default_test.jsonl` and
`default_validation.jsonl` with question / options / answer / answer_index / category / cot_content /
question_id; IQuiz (`iquiz`, Chinese IQ/EQ questions), laid out as its hub copy is (a data set card whose
`configs` name the IQ and EQ subsets, each `<subset>/test.jsonl`, loaded by `datasets`) with question /
choices / answer / level. A scripted OpenAI server answers each question in the format the prompt asks
for ("ANSWER: X", "答案：X"), so the scores are known exactly; math_500 and ifeval reuse
test_eval_formats's sets, answers and punkt_tab."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import run_worker
from test_eval_formats import IFEVAL, MATH_500, SCRIPT, punkt_data  # noqa: F401  (punkt_data: a fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

LETTERS = "ABCDEFGHIJ"


def mmlu_pro(qid: int, category: str, question: str, options: list[str], answer: int) -> dict[str, Any]:
    letter = LETTERS[answer]
    return {"question_id": qid, "question": question, "options": options, "answer": letter, "answer_index": answer,
            "cot_content": f"A: Let's think step by step. The answer is ({letter}).", "category": category,
            "src": "servelab-tiny"}  # fmt: skip


NUMBERS = [str(n) for n in range(10, 20)]
MMLU_PRO_TEST = [
    mmlu_pro(1, "math", "What is 7 + 5?", NUMBERS, 2),  # 12 = C
    mmlu_pro(2, "math", "What is 3 * 6?", NUMBERS, 8),  # 18 = I
    mmlu_pro(3, "physics", "How many newtons in 15 N?", NUMBERS, 5),  # 15 = F
    mmlu_pro(4, "physics", "How many seconds in 11 s?", NUMBERS, 1),  # 11 = B
]
# five exemplars per category: evalscope's default is 5-shot, from the validation split
MMLU_PRO_VALIDATION = [mmlu_pro(100 + i, "math", f"What is 9 + {i}?", NUMBERS, i) for i in range(1, 6)] + [
    mmlu_pro(200 + i, "physics", f"How many metres in 1{i} m?", NUMBERS, i) for i in range(1, 6)
]
IQUIZ = {
    "IQ": [
        {"question": "数列 2, 4, 6, 8 的下一项是？", "choices": ["9", "10", "12", "14"], "answer": "B", "level": 1},
        {"question": "如果所有的猫都是动物，那么下列哪项正确？",
         "choices": ["有些动物是猫", "所有动物都是猫", "没有猫是动物"], "answer": "A", "level": 2},
    ],
    "EQ": [
        {"question": "朋友考试失利很难过，你应该怎么做？",
         "choices": ["嘲笑他", "安慰并倾听他", "不理他"], "answer": "B", "level": 1},
    ],
}  # fmt: skip

# replies by a piece of the question: MMLU-Pro right, wrong | right, right; IQuiz right, wrong | right
REPLIES = {
    "What is 7 + 5?": "7 + 5 = 12.\nANSWER: C",
    "What is 3 * 6?": "ANSWER: A",
    "How many newtons in 15 N?": "ANSWER: F",
    "How many seconds in 11 s?": "Eleven.\nANSWER: B",
    "数列 2, 4, 6, 8": "每次加 2。\n答案：B",
    "所有的猫都是动物": "答案：B",
    "朋友考试失利": "答案：B",
    **SCRIPT,
}


class _Handler(http.server.BaseHTTPRequestHandler):
    prompts: list[str] = []

    def do_GET(self) -> None:
        self._send(200, {"object": "list", "data": [{"id": "scripted", "object": "model"}]})

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        prompt = request["messages"][-1]["content"]
        self.prompts.append(prompt)
        # the question asked is the last one in the prompt (MMLU-Pro's 5-shot exemplars come first)
        found = [(prompt.rfind(key), reply) for key, reply in REPLIES.items() if key in prompt]
        content = max(found)[1] if found else "UNSCRIPTED"
        self._send(200, {"id": f"c{len(self.prompts)}", "object": "chat.completion", "created": int(time.time()),
                         "model": "scripted", "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
                         "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20}})  # fmt: skip

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[tuple[str, list[str]]]:
    prompts: list[str] = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), type("H", (_Handler,), {"prompts": prompts}))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", prompts
    httpd.shutdown()
    httpd.server_close()


def write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def sets(root: Path) -> dict[str, dict[str, Any]]:
    write(root / "mmlu_pro" / "default_test.jsonl", MMLU_PRO_TEST)
    write(root / "mmlu_pro" / "default_validation.jsonl", MMLU_PRO_VALIDATION)
    for subset, rows in IQUIZ.items():
        write(root / "iquiz" / subset / "test.jsonl", rows)
    # the hub copy's layout: one config per subset, named in the data set card (read by `datasets`)
    configs = "".join(
        f"- config_name: {s}\n  data_files:\n  - split: test\n    path: {s}/test.jsonl\n" for s in IQUIZ
    )
    (root / "iquiz" / "README.md").write_text(f"---\nconfigs:\n{configs}---\n# IQuiz (tiny)\n")
    write(root / "math_500" / "test.jsonl", MATH_500)
    write(root / "ifeval" / "ifeval_input_data.jsonl", IFEVAL)
    return {name: {"local_path": str(root / name)} for name in ("mmlu_pro", "iquiz", "math_500", "ifeval")}


def evaluate(
    url: str, datasets: list[str], tmp: Path, nltk: Path | None = None
) -> dict[tuple[str, str], float]:
    args = sets(tmp / "data")
    argv = ["eval", "--api-url", url, "--model", "scripted", "--datasets", *datasets, "--dataset-args",
            json.dumps({d: args[d] for d in datasets}), "--generation-config",
            json.dumps({"max_tokens": 64, "temperature": 0.0}), "--batch-size", "4", "--out", str(tmp / "out")]  # fmt: skip
    if nltk is not None:
        argv += ["--nltk-data", str(nltk)]
    proc = run_worker("evalscope", argv)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result: dict[str, Any] = json.loads((tmp / "out" / "result.json").read_text())
    assert result["missingDatasets"] == []
    log = (tmp / "out" / "logs" / "eval.log").read_text()
    assert "Downloading" not in log and "not found, downloading" not in log
    return {(s["dataset"], s["subset"]): s["score"] for s in result["scores"] if "acc" in s["metric"]}


def test_mmlu_pro_and_iquiz_known_scores(scripted: tuple[str, list[str]], tmp_path: Path) -> None:
    url, prompts = scripted
    scores = evaluate(url, ["mmlu_pro", "iquiz"], tmp_path)
    assert len(prompts) == len(MMLU_PRO_TEST) + sum(map(len, IQUIZ.values()))
    # MMLU-Pro's prompt carries 5-shot exemplars of the question's category from the validation split
    asked = next(p for p in prompts if "What is 7 + 5?" in p)
    assert all(f"What is 9 + {i}?" in asked for i in range(1, 6)) and "How many metres" not in asked
    assert scores[("mmlu_pro", "math")] == pytest.approx(0.5, abs=1e-4)
    assert scores[("mmlu_pro", "physics")] == pytest.approx(1.0, abs=1e-4)
    assert scores[("mmlu_pro", "OVERALL")] == pytest.approx(0.75, abs=1e-4)
    assert scores[("iquiz", "IQ")] == pytest.approx(0.5, abs=1e-4)
    assert scores[("iquiz", "EQ")] == pytest.approx(1.0, abs=1e-4)


def test_write_up_000_evaluation_as_written(
    scripted: tuple[str, list[str]],
    punkt_data: Path,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    """`--datasets math_500 ifeval iquiz` in one run, each from its local set."""
    url, _ = scripted
    scores = evaluate(url, ["math_500", "ifeval", "iquiz"], tmp_path, punkt_data)
    assert {d for d, _ in scores} == {"math_500", "iquiz"}  # ifeval's metrics are not accuracies
    assert scores[("math_500", "OVERALL")] == pytest.approx(4 / 6, abs=1e-4)
    assert scores[("iquiz", "OVERALL")] == pytest.approx(2 / 3, abs=1e-4)
