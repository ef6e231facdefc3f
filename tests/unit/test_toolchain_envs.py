"""Worker environments: hashing, atomic build, relocation of the venv's scripts, idempotence.

Builds a real virtual environment from a requirements file with no packages (pip runs, offline), in a
temporary cache and a temporary `images/` tree.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from servelab import paths
from servelab.toolchain import envs

pytestmark = pytest.mark.unit


@pytest.fixture
def fake_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    repo = tmp_path / "repo"
    (repo / "images" / "demo").mkdir(parents=True)
    monkeypatch.setattr(envs, "repo_path", lambda *parts: repo.joinpath(*parts))
    monkeypatch.setenv("SERVELAB_CACHE", str(tmp_path / "cache"))
    return repo


def test_hash_covers_requirements_and_included_files(fake_repo: Path) -> None:
    req = fake_repo / "images" / "demo" / "requirements.txt"
    req.write_text("# nothing\n-c constraints.txt\n")
    (fake_repo / "images" / "demo" / "constraints.txt").write_text("six==1.16.0\n")
    first = envs.env_hash("demo")
    assert len(first) == 12
    (fake_repo / "images" / "demo" / "constraints.txt").write_text("six==1.17.0\n")
    second = envs.env_hash("demo")
    assert second != first
    req.write_text("# changed\n-c constraints.txt\n")
    assert envs.env_hash("demo") not in (first, second)
    assert envs.env_dir("demo").name == f"demo-{envs.env_hash('demo')}"


def test_missing_requirements_is_an_error(fake_repo: Path) -> None:
    with pytest.raises(envs.EnvError, match="no requirements"):
        envs.ensure_env("nope")


def test_ensure_env_builds_once_and_relocates(fake_repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    req = fake_repo / "images" / "demo" / "requirements.txt"
    req.write_text(
        "# no packages; servelab comes through PYTHONPATH\n# servelab: uninstall nothing-installed\n"
    )
    path = envs.ensure_env("demo")
    assert path == envs.env_dir("demo") and (path / envs.MARKER).is_file()
    # built in a temporary dir, then renamed: nothing left beside it, scripts point at the final place
    leftovers = [p.name for p in path.parent.iterdir() if p.name.startswith(".demo-")]
    assert leftovers == []
    pip_script = (path / "bin" / "pip").read_text().splitlines()[0]
    assert pip_script.startswith(f"#!{path}/bin/python")
    assert ".tmp-" not in (path / "pyvenv.cfg").read_text()
    # the interpreter runs servelab from the source tree through worker_environ()
    python = envs.env_python("demo")
    monkeypatch.setattr(envs, "repo_path", paths.repo_path)  # the real checkout's operator/ again
    out = subprocess.run(
        [str(python), "-c", "import servelab, sys; print(servelab.__file__, sys.prefix)"],
        env=envs.worker_environ(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out[0] == str(paths.repo_path("operator", "servelab", "__init__.py")) and out[1] == str(path)
    monkeypatch.setattr(envs, "repo_path", lambda *parts: fake_repo.joinpath(*parts))
    info = envs.env_info("demo")
    assert info["name"] == "demo" and int(str(info["sizeBytes"])) > 0
    stamp = (path / envs.MARKER).stat().st_mtime_ns
    assert envs.ensure_env("demo") == path
    assert (path / envs.MARKER).stat().st_mtime_ns == stamp


def test_directives_are_parsed(tmp_path: Path) -> None:
    req = tmp_path / "r.txt"
    req.write_text(
        "torch==2.11.0\n# servelab: uninstall triton\n  # servelab: uninstall torchvision torchaudio\n"
    )
    assert envs._directives(req) == {"uninstall": ["triton", "torchvision", "torchaudio"]}
