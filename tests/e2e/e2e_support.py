"""Helpers for the e2e tests: run a worker in its environment, a real llama-server, local text."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from servelab.toolchain import envs


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run_worker(env_name: str, args: Sequence[str], timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`python -m servelab worker ...` inside a worker environment, as a pod would run it."""
    cmd = envs.worker_command(env_name, "worker", *map(str, args))
    return subprocess.run(cmd, env=envs.worker_environ(), capture_output=True, text=True, timeout=timeout)


class LlamaServer:
    """A real llama-server process on a free port, with --metrics."""

    def __init__(self, bin_dir: Path, model: Path, alias: str, log: Path, *, slots: int = 4) -> None:
        self.port = free_port()
        self.alias = alias
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [
            str(bin_dir / "llama-server"),
            "-m",
            str(model),
            "--alias",
            alias,
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "-c",
            str(1024 * slots),
            "-np",
            str(slots),
            "-t",
            "2",
            "--metrics",
        ]
        self.log = log
        self._fh = log.open("w")
        self.proc = subprocess.Popen(cmd, stdout=self._fh, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"llama-server exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(self.base + "/health", timeout=2) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.3)
        raise TimeoutError(f"llama-server not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()


def stdlib_text(names: Sequence[str]) -> str:
    """Local text to calibrate and evaluate on (Python standard-library sources; nothing downloaded)."""
    import sysconfig

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return "\n".join((stdlib / n).read_text(encoding="utf-8") for n in names)


# Runs in the evalscope environment (nltk is there, not in the test environment): argv[1] is the
# NLTK data root, which is also NLTK_DATA, so nltk's own saver (which writes only inside the data
# path, into private directories) and loader both accept it.
_PUNKT_TRAIN = r"""
import json, sys
from pathlib import Path

import nltk
import pydoc_data.topics
from nltk.tokenize.punkt import PunktTokenizer, PunktTrainer, save_punkt_params

root = Path(sys.argv[1])
text = "\n\n".join(pydoc_data.topics.topics.values())
trainer = PunktTrainer()
trainer.INCLUDE_ALL_COLLOCS = True
trainer.train(text, finalize=True)
params = trainer.get_params()
lang = root / "tokenizers" / "punkt_tab" / "english"
lang.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
save_punkt_params(params, dir=str(lang))
found = nltk.data.find("tokenizers/punkt_tab/english/")
sample = "The list is sorted, e.g. by key. It stays sorted! Does it? Yes."
print(json.dumps({
    "found": str(found),
    "chars": len(text),
    "abbrevTypes": sorted(params.abbrev_types),
    "sentences": PunktTokenizer("english").tokenize(sample),
    "words": nltk.word_tokenize("It IS sorted. Yes."),
}))
"""


def make_punkt_tab(root: Path) -> dict[str, object]:
    """Make `root` an NLTK data directory holding an English Punkt model in the punkt_tab layout.

    NLTK's own punkt_tab is a download (`python -m nltk.downloader punkt_tab`, what the evalscope
    image does); this one is trained here with nltk's PunktTrainer on local English prose (the
    Python reference documentation in the standard library's pydoc_data) and written with nltk's
    save_punkt_params: `tokenizers/punkt_tab/english/{collocations.tab,sent_starters.txt,
    abbrev_types.txt,ortho_context.tab}`. It knows fewer abbreviations than NLTK's model ("e.g.",
    "i.e.", "etc." but not "Mr."), so its sentence counts can differ on such text. Returns what the
    training reported: the model directory nltk found, the abbreviations, a sample's sentences.
    """
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    proc = subprocess.run(
        [str(envs.env_python("evalscope")), "-c", _PUNKT_TRAIN, str(root)],
        env=envs.worker_environ(NLTK_DATA=str(root)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"training the Punkt model failed:\n{proc.stdout}{proc.stderr}")
    info: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return info


def servelab_run(
    tmp_path: Path,
    docs: dict[str, Any] | list[dict[str, Any]],
    timeout: float,
    env: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`servelab run -f MANIFEST --runs-dir RUNS` of these resources (one or several documents), as a user
    runs it; asserts it exited 0 (its output's tails otherwise) and returns it with the runs directory."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump_all(docs if isinstance(docs, list) else [docs]))
    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "servelab", "run", "-f", str(manifest), "--runs-dir", str(runs)],
                          capture_output=True, text=True, timeout=timeout, env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-3000:]
    return proc, runs
