"""The HTML report as a person sees it: real runs (tests/report_fixtures.py) rendered by `servelab report
--format html`, opened in headless Chromium (Debian's chromium package, installed by hack/prepare.sh) with no
network: the rendered text of the tables, every plot laid out with a size and drawn marks, and a screenshot
(kept in the test's tmp dir; SERVELAB_REFRESH_DOCS=1 also copies it to docs/images/report.png)."""

from __future__ import annotations

import html
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import report_fixtures as rf
from servelab.cli import main
from servelab.paths import repo_path

pytestmark = pytest.mark.e2e
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--mute-audio"]  # fmt: skip
# added to a copy of the page: what the browser laid out, written into the DOM that --dump-dom returns
MEASURE = """<script>
(function () {
  const figures = [...document.querySelectorAll("figure[data-plot]")].map(f => {
    const svg = f.querySelector("svg"), box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    return {name: f.dataset.plot, width: box.width, height: box.height,
            marks: svg ? svg.querySelectorAll("path, use").length : 0, text: svg ? svg.textContent : ""};
  });
  const tables = [...document.querySelectorAll("table")].map(t => t.getBoundingClientRect().width);
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify({figures, tables, text: document.body.innerText});
  document.body.appendChild(out);
})();
</script>"""


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.fail("chromium not found: hack/prepare.sh installs it (apt-get install -y chromium)")
    return exe


def browse(page: Path, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    profile = work / f"profile-{len(list(work.glob('profile-*')))}"  # a fresh profile each time
    return subprocess.run([chromium(), *FLAGS, f"--user-data-dir={profile}", "--window-size=1280,1800", *args,
                           page.as_uri()], capture_output=True, text=True, timeout=180)  # fmt: skip


def test_html_report_in_a_browser(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the page names the runs directory as given: servelab-runs/qwen3-quants
    runs = rf.write_runs_dir(Path("servelab-runs", "qwen3-quants"), rf.real_runs())
    page = tmp_path / "report.html"
    assert (
        main(
            [
                "report",
                "--runs-dir",
                str(runs),
                "--format",
                "html",
                "-o",
                str(page),
                "--title",
                "Qwen3-0.6B: bf16 vs GPTQ vs GGUF",
            ]
        )
        == 0
    )
    capsys.readouterr()

    measured = tmp_path / "measured.html"
    measured.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    dom = browse(measured, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    start = dom.stdout.index('<pre id="measured">') + len('<pre id="measured">')
    seen = json.loads(html.unescape(dom.stdout[start : dom.stdout.index("</pre>", start)]))
    text = seen["text"]
    # the tables, as rendered text
    for expected in ("Qwen3-0.6B: bf16 vs GPTQ vs GGUF", "7 resource(s) from servelab-runs/qwen3-quants",
                     "Workload group 1: evalscope chat random in=1024 out=256 ignoreEos",
                     "Shown apart from group 1: it measured another workload (maxTokens: 256 vs 128",
                     "Output tokens/s", "131.00 +42.4%", "48.00 -47.8%", "server-capped", "failed: SLONotMet",
                     "AcceptanceNotMet", "QuantJob qwen-gguf: size and quality against F16", "15.6200 ± 0.1200 +6.9%",
                     "pp512 @ d4096", "math_500 mean_acc 0.535"):  # fmt: skip
        assert expected in text, expected
    assert len(seen["tables"]) >= 20 and all(w > 100 for w in seen["tables"])
    # every plot laid out with a size, with marks and its axes' words drawn
    figures = {f["name"]: f for f in seen["figures"]}
    assert set(figures) == {
        "group-1-sweep",
        "group-1-pareto",
        "group-2-sweep",
        "group-2-pareto",
        "depth-pp512-tg32",
        "quality",
    }
    for f in figures.values():
        assert f["width"] > 600 and f["height"] > 150 and f["marks"] > 20, f["name"]
    assert (
        "output tokens/s per GPU" in figures["group-1-pareto"]["text"]
        and "point: server-capped" in figures["group-1-pareto"]["text"]
    )
    assert (
        "Perplexity against size" in figures["quality"]["text"]
        and "IQ4_XS+imatrix" in figures["quality"]["text"]
    )

    # what it looks like: a screenshot of the page as shipped (no instrumentation)
    shot = tmp_path / "report.png"
    done = browse(page, tmp_path, f"--screenshot={shot}")
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    import matplotlib.image

    pixels = matplotlib.image.imread(str(shot))
    assert pixels.shape[:2] == (1800, 1280)
    ink = (pixels[:, :, :3].mean(axis=2) < 0.85).mean()  # share of non-white pixels: text, plots, table rules
    assert 0.03 < ink < 0.6 and pixels[:, :, :3].std() > 0.05, ink
    if os.environ.get("SERVELAB_REFRESH_DOCS") == "1":
        shutil.copy(shot, repo_path("docs", "images", "report.png"))
    print(f"\nscreenshot: {shot}")
