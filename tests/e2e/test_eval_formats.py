"""`servelab worker eval` on tiny local data sets in evalscope's math_500 and ifeval formats, offline.

The data sets are laid out as the hub copies are (math_500: `test.jsonl` with problem / solution /
answer / subject / level / unique_id; ifeval: one jsonl with key / prompt / instruction_id_list /
kwargs, read as split `train`) and loaded through `local_path`. IFEval's scoring needs NLTK's
`punkt_tab` sentence tokenizer, which is a download; here it is a Punkt model trained on local text
(`e2e_support.make_punkt_tab`) and handed to the worker with `--nltk-data`.

Two servers: the real llama-server with the tiny random-weight model (every sample is sent and scored;
the scores are near 0 and only checked for range), and a scripted OpenAI server whose answers are
fixed per prompt, so the scores are known exactly. Plus the offline guard: ifeval without punkt_tab
fails before evalscope starts instead of downloading it mid-run.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import LlamaServer, free_port, make_punkt_tab, run_worker

from servelab.toolchain import envs
from servelab_dev.tinymodel import ensure_tiny_gguf

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

MATH_500: list[dict[str, Any]] = [
    {
        "problem": "What is $12 + 30$?",
        "solution": "Adding, $12 + 30 = \\boxed{42}$.",
        "answer": "42",
        "subject": "Prealgebra",
        "level": 1,
        "unique_id": "test/prealgebra/1.json",
    },
    {
        "problem": "Solve for $x$: $2x + 3 = 11$.",
        "solution": "Subtract 3 and divide by 2: $x = \\boxed{4}$.",
        "answer": "4",
        "subject": "Algebra",
        "level": 1,
        "unique_id": "test/algebra/2.json",
    },
    {
        "problem": "What is the remainder when $100$ is divided by $7$?",
        "solution": "$100 = 14 \\cdot 7 + 2$, so the remainder is $\\boxed{2}$.",
        "answer": "2",
        "subject": "Number Theory",
        "level": 2,
        "unique_id": "test/number_theory/3.json",
    },
    {
        "problem": "In how many ways can 3 different books be arranged on a shelf?",
        "solution": "There are $3! = \\boxed{6}$ orders.",
        "answer": "6",
        "subject": "Counting & Probability",
        "level": 3,
        "unique_id": "test/counting_and_probability/4.json",
    },
    {
        "problem": "Compute $\\sin^2 x + \\cos^2 x$ for $x = 1$.",
        "solution": "The identity gives $\\boxed{1}$ for every $x$.",
        "answer": "1",
        "subject": "Precalculus",
        "level": 4,
        "unique_id": "test/precalculus/5.json",
    },
    {
        "problem": "Find the sum of the roots of $x^2 - 5x + 6 = 0$.",
        "solution": "By Vieta, the sum is $\\boxed{5}$.",
        "answer": "5",
        "subject": "Intermediate Algebra",
        "level": 5,
        "unique_id": "test/intermediate_algebra/6.json",
    },
]

IFEVAL: list[dict[str, Any]] = [
    {
        "key": 1001,
        "prompt": "Write a short note about the moon. Your response should contain at least 3 sentences.",
        "instruction_id_list": ["length_constraints:number_sentences"],
        "kwargs": [{"num_sentences": 3, "relation": "at least"}],
    },
    {
        "key": 1002,
        "prompt": "Describe a cat in English, using only lowercase letters.",
        "instruction_id_list": ["change_case:english_lowercase", "language:response_language"],
        "kwargs": [{}, {"language": "en"}],
    },
    {
        "key": 1003,
        "prompt": "List exactly 3 fruits as markdown bullet points. Include the word banana. Do not use any commas.",
        "instruction_id_list": [
            "detectable_format:number_bullet_lists",
            "keywords:existence",
            "punctuation:no_comma",
        ],
        "kwargs": [{"num_bullets": 3}, {"keywords": ["banana"]}, {}],
    },
    {
        "key": 1004,
        "prompt": "Write a slogan with at least 2 words in ALL CAPITAL letters.",
        "instruction_id_list": ["change_case:capital_word_frequency"],
        "kwargs": [{"capital_frequency": 2, "capital_relation": "at least"}],
    },
]

N_INSTRUCTIONS = sum(len(r["instruction_id_list"]) for r in IFEVAL)
# evalscope 1.14.1's IFEval metrics as the worker names them ({aggregation}_{name}) and their `num`:
# prompt level counts prompts, instruction level is a weighted mean over every instruction
IFEVAL_METRICS = {
    "mean_prompt_level_strict": len(IFEVAL),
    "mean_prompt_level_loose": len(IFEVAL),
    "weighted_mean_inst_level_strict": N_INSTRUCTIONS,
    "weighted_mean_inst_level_loose": N_INSTRUCTIONS,
}

# The scripted server's answers, by a piece of the prompt.
SCRIPT = {
    # math_500: right, right | wrong | right | wrong | right
    "$12 + 30$": "So the answer is $\\boxed{42}$.",
    "$2x + 3 = 11$": "Then $x = \\boxed{4}$.",
    "divided by $7$": "The remainder is $\\boxed{3}$.",
    "3 different books": "$3! = \\boxed{6}$",
    "$\\sin^2 x + \\cos^2 x$": "$\\boxed{0}$",
    "$x^2 - 5x + 6 = 0$": "The roots are 2 and 3, summing to $\\boxed{5}$.",
    # ifeval: 3 sentences (one with "e.g."): followed
    "about the moon": "The moon circles the earth. It reflects sunlight, e.g. at night. It has no air.",
    # lowercase, English: both followed
    "Describe a cat": "the cat is a small animal that likes to sleep in the warm sun all day long.",
    # 3 bullets and banana, but a comma in the last line: strict 2/3, loose 3/3 (last line dropped)
    "List exactly 3 fruits": "* apple\n* banana\n* cherry, ripe",
    # THIS, IS, A are capital words (nltk.word_tokenize, i.e. punkt_tab): followed
    "ALL CAPITAL": "THIS IS A fine slogan",
}


def _write_sets(root: Path) -> dict[str, Any]:
    math = root / "math_500"
    math.mkdir()
    (math / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in MATH_500))
    ifeval = root / "ifeval"
    ifeval.mkdir()
    (ifeval / "ifeval_input_data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in IFEVAL))
    return {"math_500": {"local_path": str(math)}, "ifeval": {"local_path": str(ifeval)}}


def _run_eval(api_url: str, model: str, nltk_data: Path | None, tmp: Path) -> tuple[dict[str, Any], Path]:
    args = [
        "eval",
        "--api-url",
        api_url,
        "--model",
        model,
        "--datasets",
        "math_500",
        "ifeval",
        "--dataset-args",
        json.dumps(_write_sets(tmp)),
        "--generation-config",
        json.dumps({"max_tokens": 32, "temperature": 0.0}),
        "--batch-size",
        "4",
        "--out",
        str(tmp / "out"),
    ]
    if nltk_data is not None:
        args += ["--nltk-data", str(nltk_data)]
    proc = run_worker("evalscope", args)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result: dict[str, Any] = json.loads((tmp / "out" / "result.json").read_text())
    assert result["missingDatasets"] == []
    log = (tmp / "out" / "logs" / "eval.log").read_text()
    # nothing fetched: every data set from local_path, the NLTK data from --nltk-data
    for word in ("not found, downloading", "Downloading", "Error calculating ifeval metrics"):
        assert word not in log, word
    return result, tmp / "out" / "evalscope"


def _scores(result: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for s in result["scores"]:
        assert isinstance(s["score"], float) and 0.0 <= s["score"] <= 1.0, s
        key = (s["dataset"], s["metric"], s["subset"])
        assert key not in rows, key
        rows[key] = s
    return rows


def _check_shape(rows: dict[tuple[str, str, str], dict[str, Any]]) -> None:
    """The data sets, metrics, subsets and every row's sample count."""
    levels = {f"Level {r['level']}": 0 for r in MATH_500}
    for r in MATH_500:
        levels[f"Level {r['level']}"] += 1
    [math_metric] = {m for d, m, _ in rows if d == "math_500"}
    assert "acc" in math_metric
    math_rows = {sub: s["num"] for (d, _, sub), s in rows.items() if d == "math_500"}
    assert math_rows == {**levels, "OVERALL": len(MATH_500)}
    if_rows = {(m, sub): s["num"] for (d, m, sub), s in rows.items() if d == "ifeval"}
    assert if_rows == {(m, "default"): n for m, n in IFEVAL_METRICS.items()}
    assert {d for d, _, _ in rows} == {"math_500", "ifeval"}


def _per_sample(work: Path, kind: str) -> dict[str, list[dict[str, Any]]]:
    """evalscope's per-sample records (`predictions` or `reviews`), by data set."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(work.rglob(f"{kind}/*/*.jsonl")):
        dataset = "math_500" if path.name.startswith("math_500") else path.name.split("_")[0]
        out.setdefault(dataset, []).extend(json.loads(line) for line in path.read_text().splitlines())
    return out


@pytest.fixture(scope="module")
def punkt_data(evalscope_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nltk_data")
    info = make_punkt_tab(root)
    # nltk finds the trained model where evalscope will look for it, and it splits sentences
    assert info["found"] == str(root / "tokenizers" / "punkt_tab" / "english")
    assert {"e.g", "i.e", "etc"} <= set(info["abbrevTypes"])  # type: ignore[call-overload]
    assert info["sentences"] == ["The list is sorted, e.g. by key.", "It stays sorted!", "Does it?", "Yes."]
    assert info["words"] == ["It", "IS", "sorted", ".", "Yes", "."]
    return root


@pytest.fixture(scope="module")
def served(tiny_model: Path, server_factory: type[LlamaServer]) -> LlamaServer:
    server = server_factory(ensure_tiny_gguf(), "tiny-f16")  # type: ignore[call-arg, arg-type]
    server.wait_ready()
    return server


def test_eval_math500_ifeval_llama_server(
    served: LlamaServer, punkt_data: Path, evalscope_env: Path, tmp_path: Path
) -> None:
    result, work = _run_eval(served.base + "/v1", served.alias, punkt_data, tmp_path)
    rows = _scores(result)
    _check_shape(rows)
    # every sample went to the server and came back with text, which was scored
    counts = {"math_500": len(MATH_500), "ifeval": len(IFEVAL)}
    preds = _per_sample(work, "predictions")
    assert {k: len(v) for k, v in preds.items()} == counts
    for p in preds["math_500"] + preds["ifeval"]:
        assert p["model_output"]["choices"][0]["message"]["content"].strip(), p
    reviews = _per_sample(work, "reviews")
    assert {k: len(v) for k, v in reviews.items()} == counts
    for r in reviews["ifeval"]:  # a sample whose checks raised is scored {} (and only logged)
        assert set(r["sample_score"]["score"]["value"]) == {m.split("mean_")[1] for m in IFEVAL_METRICS}


class _ScriptedHandler(http.server.BaseHTTPRequestHandler):
    """An OpenAI chat server that answers each prompt with SCRIPT's reply for it."""

    prompts: list[str] = []

    def do_GET(self) -> None:
        body = json.dumps({"object": "list", "data": [{"id": "scripted", "object": "model"}]})
        self._send(200 if self.path == "/v1/models" else 404, body)

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        if self.path != "/v1/chat/completions" or request.get("stream"):
            self._send(400, json.dumps({"error": {"message": f"not scripted: {self.path}"}}))
            return
        prompt = request["messages"][-1]["content"]
        if isinstance(prompt, list):
            prompt = "".join(part.get("text", "") for part in prompt)
        self.prompts.append(prompt)
        replies = [reply for key, reply in SCRIPT.items() if key in prompt]
        content = replies[0] if len(replies) == 1 else f"UNSCRIPTED ({len(replies)} matches)"
        body = {
            "id": f"chatcmpl-{len(self.prompts)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "scripted"),
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
        }
        self._send(200, json.dumps(body))

    def _send(self, status: int, body: str) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def scripted_server() -> Iterator[tuple[str, list[str]]]:
    prompts: list[str] = []
    handler = type("_Handler", (_ScriptedHandler,), {"prompts": prompts})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", prompts
    httpd.shutdown()
    httpd.server_close()


def test_eval_math500_ifeval_known_scores(
    scripted_server: tuple[str, list[str]], punkt_data: Path, evalscope_env: Path, tmp_path: Path
) -> None:
    url, prompts = scripted_server
    result, _work = _run_eval(url + "/v1", "scripted", punkt_data, tmp_path)
    assert len(prompts) == len(MATH_500) + len(IFEVAL)
    rows = _scores(result)
    _check_shape(rows)
    math = {sub: s["score"] for (d, _, sub), s in rows.items() if d == "math_500"}
    assert math == pytest.approx(
        {"Level 1": 1.0, "Level 2": 0.0, "Level 3": 1.0, "Level 4": 0.0, "Level 5": 1.0, "OVERALL": 4 / 6},
        abs=1e-4,  # the reports round to 4 places
    )
    ifeval = {m: s["score"] for (d, m, _), s in rows.items() if d == "ifeval"}
    assert ifeval == pytest.approx(
        {
            "mean_prompt_level_strict": 3 / 4,
            "mean_prompt_level_loose": 1.0,
            # over the 7 instructions, not the mean of the prompts' fractions (0.9167)
            "weighted_mean_inst_level_strict": 6 / 7,
            "weighted_mean_inst_level_loose": 1.0,
        },
        abs=1e-4,  # the reports round to 4 places
    )


def test_eval_ifeval_without_punkt_tab_fails_before_evalscope(evalscope_env: Path, tmp_path: Path) -> None:
    probe = subprocess.run(
        [
            str(envs.env_python("evalscope")),
            "-c",
            "import nltk; nltk.data.find('tokenizers/punkt_tab/english/')",
        ],
        env=envs.worker_environ(),
        capture_output=True,
        check=False,
    )
    if probe.returncode == 0:
        pytest.skip("punkt_tab is installed on this machine's NLTK path")
    proc = run_worker(
        "evalscope",
        [
            "eval",
            "--api-url",
            f"http://127.0.0.1:{free_port()}/v1",
            "--model",
            "none",
            "--datasets",
            "ifeval",
            "--dataset-args",
            json.dumps({"ifeval": {"local_path": str(tmp_path)}}),
            "--out",
            str(tmp_path / "out"),
        ],
        timeout=120,
    )
    assert proc.returncode != 0
    assert "tokenizers/punkt_tab/english/" in proc.stderr and "--nltk-data" in proc.stderr, proc.stderr
    assert not (tmp_path / "out" / "logs" / "eval.log").exists()  # evalscope never ran, so never downloaded
