"""The product apart from its test bench: the root distribution (`servelab`, the operator's package and
image) carries neither the test bench's modules nor its dependencies, and never imports them; the
test bench (`servelab-dev`, devtools/) contributes its commands to the `servelab` CLI."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from servelab import cli
from servelab.paths import repo_path

pytestmark = pytest.mark.unit

ROOT = repo_path()
PRODUCT = ROOT / "operator" / "servelab"
#: module names of the test bench, old (before devtools/) and new
BENCH_MODULES = ("servelab_dev", "servelab.localcluster", "servelab.localexec", "servelab.tinymodel",
                 "servelab.local.demo", "servelab.toolchain.argcheck", "servelab.toolchain.vllm_args",
                 "servelab.toolchain.sglang_args")  # fmt: skip
BENCH_ONLY_DEPENDENCIES = ("cryptography",)


def _name(requirement: str) -> str:
    for sep in "<>=!~;[ ":
        requirement = requirement.split(sep, 1)[0]
    return requirement.strip().lower()


def _imports(path: Path) -> set[str]:
    """Every module `path` imports (absolute names; `from a import b` gives a and a.b)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            names.update(
                a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
            )
    return names


def test_root_distribution_has_no_test_bench_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    assert not runtime & set(BENCH_ONLY_DEPENDENCIES), runtime
    dev = tomllib.loads((ROOT / "devtools" / "pyproject.toml").read_text())["project"]
    assert dev["name"] == "servelab-dev"
    assert set(BENCH_ONLY_DEPENDENCIES) <= {_name(r) for r in dev["dependencies"]}


def test_product_imports_nothing_of_the_test_bench() -> None:
    offenders = []
    for path in sorted(PRODUCT.rglob("*.py")):
        for name in _imports(path):
            if any(name == m or name.startswith(m + ".") for m in BENCH_MODULES):
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders, offenders
    for old in ("localcluster.py", "localexec.py", "tinymodel.py", "local/demo.py", "toolchain/argcheck.py",
                "toolchain/vllm_args.py", "toolchain/sglang_args.py"):  # fmt: skip
        assert not (PRODUCT / old).exists(), old


def test_package_discovery_is_the_product_only() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert tool["packages"]["find"]["where"] == ["operator"]
    assert not (ROOT / "operator" / "servelab_dev").exists()
    dockerfile = (ROOT / "images" / "operator" / "Dockerfile").read_text()
    copied = [
        src for line in dockerfile.splitlines() if line.startswith("COPY ") for src in line.split()[1:-1]
    ]
    assert "devtools" not in copied and "." not in copied, copied


def test_root_wheel_contains_no_test_bench(tmp_path: Path) -> None:
    """Build the root wheel from a copy of what the image copies (pip, isolated build: a few seconds)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(
        ROOT / "operator", src / "operator", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__")
    )
    cmd = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(src), "-w", str(tmp_path / "dist")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:  # pip could not get setuptools for the isolated build (offline, no cache)
        pytest.skip(f"cannot build a wheel here: {proc.stderr.strip().splitlines()[-1:]}")
    (wheel,) = (tmp_path / "dist").glob("servelab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "servelab/cli.py" in names
    bench = [n for n in names if n.startswith("servelab_dev") or n.split("/")[-1] in (
        "localcluster.py", "localexec.py", "tinymodel.py", "demo.py", "argcheck.py", "vllm_args.py", "sglang_args.py")]  # fmt: skip
    assert not bench, bench
    metadata = (
        zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    )
    assert "Requires-Dist: cryptography" not in metadata


def test_cli_offers_the_dev_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert set(cli.DEV_COMMANDS) == {"cluster", "pods", "demo"}
    assert not set(cli.DEV_COMMANDS) & set(cli.COMMANDS)
    assert cli.main(["--help"]) == 0
    usage = capsys.readouterr().out
    assert all(f"  {name} " in usage for name in cli.DEV_COMMANDS)
    modules = {name: cli.dev_command(name) for name in cli.DEV_COMMANDS}
    # `make setup` installs servelab-dev: its entry points name the test bench's modules
    assert {n: m.__name__ for n, m in modules.items() if m} == {
        "cluster": "servelab_dev.controlplane",
        "pods": "servelab_dev.kubelet",
        "demo": "servelab_dev.demo",
    }


def test_cli_without_the_dev_package(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "entry_points", lambda **_: [])
    for name in cli.DEV_COMMANDS:
        assert cli.main([name, "--help"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "dev package" in err[0] and "make setup" in err[0], err
