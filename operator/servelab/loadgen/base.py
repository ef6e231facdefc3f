"""The load-generator interface: how one load point's client is rendered and how what it measured is read.

A generator renders the command of one point (a concurrency and a request count against a server) from a
`PointShape` (what every request looks like, independent of the tool), and parses what that command left
in its output directory into `PointFigures` (servelab's per-point figures, recomputed from per-request
records where the tool keeps them). Everything around a point — warm-up, the engine's /metrics before and
after, validity checks, the published `LoadPointResult` — is the perf worker's and the same for every
generator. One module per generator; `servelab.loadgen.get(name)` finds it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from servelab.workers.perfparse import PointFigures


@dataclass(frozen=True)
class PointShape:
    """What the requests of a sweep look like (the same for every generator)."""

    url: str  # the endpoint URL: chat completions (messages) or completions (prompt)
    model: str  # served model name, sent as `model`
    tokenizer: str  # local tokenizer directory (prompt lengths are counted in its tokens)
    prompt_tokens: int
    min_prompt_tokens: int
    prefix_length: int
    max_tokens: int
    min_tokens: int
    ignore_eos: bool
    rate: float | None = None
    temperature: float | None = None
    headers: list[str] = field(default_factory=list)  # K=V
    request_timeout: int = 600
    connect_timeout: int = 10
    api_key: str | None = field(default=None, repr=False)  # the server's, from its Secret (never logged)
    dataset: str = "random"  # random tokens, or a data set of the generator (spec.load.dataset)
    dataset_path: str | None = None  # its prompt file
    stream: bool = True  # streamed responses (TTFT); False: whole responses


class LoadGenerator(ABC):
    name: str
    image: str  # the worker image (images/<name>) whose environment has the tool
    version: str  # the pinned release the parser is written against

    def __init__(self, program: str | None = None) -> None:
        self.program = program  # an explicit executable (default: the image's)

    @abstractmethod
    def point_command(
        self, shape: PointShape, parallel: int, number: int, offset: int, out: Path
    ) -> list[str]:
        """The client command of one point: `number` requests at concurrency `parallel`, prompts drawn from
        `offset` on (so no point reuses another's prompts from the server's prefix cache), outputs under out."""

    @abstractmethod
    def parse_point(
        self, out: Path, parallel: int, number: int
    ) -> tuple[PointFigures | None, Path | None, list[str]]:
        """What the point measured (None when it left nothing to read), where its raw output is, warnings."""

    def environment(self, shape: PointShape) -> dict[str, str]:
        """Environment variables the point's command needs besides the worker's (e.g. an API key the
        tool reads only from its environment)."""
        return {}

    def ceiling(self, concurrency: int) -> float | None:
        """Calibrated output tok/s of one client process at this concurrency (`headroom.ceiling`)."""
        from servelab.loadgen.headroom import ceiling

        return ceiling(self.name, concurrency)

    def prepare(self, out: Path, parallel: int, number: int) -> None:  # noqa: B027 - optional hook
        """Clean what a retried point left behind, where the tool refuses to overwrite it."""

    def session_command(self, tokenizer: str | None = None) -> list[str] | None:
        """The command of one client process that runs every point of a sweep (`loadgen.session`; it loads
        `tokenizer` before the first point), or None where the generator runs a process per point (no
        in-process API, or an explicit program)."""
        return None

    def warm_session(self, tokenizer: str | None = None) -> None:  # noqa: B027 - optional hook
        """In a session's process, before its first point: import and load what every point needs."""

    def run_in_process(self, argv: list[str]) -> int:
        """In a session's process: run one point's `point_command` argv, return its exit code."""
        raise NotImplementedError(f"{self.name} has no in-process runner")


__all__ = ["LoadGenerator", "PointFigures", "PointShape"]
