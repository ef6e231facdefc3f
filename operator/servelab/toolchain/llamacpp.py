"""llama.cpp's command-line tools, built from the source that the llama-cpp-python sdist ships.

Layout under `cache_root()/llamacpp/<LLAMA_CPP_PYTHON_VERSION>/`:

- `llama_cpp_python-<v>.tar.gz`: the sdist, fetched once with `pip download` (or given by
  `$SERVELAB_LLAMACPP_SDIST`, e.g. in an image build).
- `src/`: the sdist's `vendor/llama.cpp`, extracted (holds `convert_hf_to_gguf.py` and `gguf-py/`).
- `bin/`: the built tools, kept whole, plus `BUILD_INFO.json` (flags, duration). It appears by an
  atomic rename, so its presence means a finished build.

CPU flavour: `GGML_NATIVE=OFF` with AVX, AVX2, FMA, F16C and BMI2 switched on (x86-64-v3). A native
build on a developer machine with AVX-512 would crash with SIGILL on an AVX2-only CI machine that reuses
the cache; the x86-64-v3 build runs on both. Libraries are linked statically
(`BUILD_SHARED_LIBS=OFF`) so each executable is self-contained and `bin/` can be copied anywhere.

`python -m servelab.toolchain.llamacpp build` builds (or reuses) the tools and prints the bin dir;
`python -m servelab.toolchain.llamacpp convert [--pre-tokenizer-fallback qwen2] -- <convert args>`
runs `convert_hf_to_gguf.py` with a fallback for unknown BPE pre-tokenizers (see `_run_convert`).
The `convert` form needs the `llamacpp` environment (torch, transformers, ...); `build` needs only
cmake, ninja and a C++ compiler.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from servelab.paths import cache_root
from servelab.toolchain.envs import _locked

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
TOOLS = ("llama-server", "llama-quantize", "llama-imatrix", "llama-perplexity", "llama-bench")
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
)
REQUIRED_CPU_FLAGS = ("avx2", "fma", "f16c", "bmi2")


class ToolchainError(RuntimeError):
    """A toolchain could not be built or found."""


def home() -> Path:
    return cache_root() / "llamacpp" / LLAMA_CPP_PYTHON_VERSION


def bin_dir() -> Path:
    return home() / "bin"


def source_dir() -> Path:
    return home() / "src"


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def check_cpu() -> None:
    """Refuse to build or run x86-64-v3 binaries on a CPU that lacks the instructions."""
    if platform.machine() not in ("x86_64", "AMD64"):
        raise ToolchainError(f"the llama.cpp build here targets x86-64-v3, not {platform.machine()}")
    flags = _cpu_flags()
    missing = [f for f in REQUIRED_CPU_FLAGS if flags and f not in flags]
    if missing:
        raise ToolchainError(f"CPU lacks {', '.join(missing)}; the x86-64-v3 llama.cpp build would not run")


def sdist_path() -> Path:
    """The llama-cpp-python sdist: $SERVELAB_LLAMACPP_SDIST, else downloaded once into the cache."""
    given = os.environ.get("SERVELAB_LLAMACPP_SDIST")
    if given:
        path = Path(given)
        if not path.is_file():
            raise ToolchainError(f"SERVELAB_LLAMACPP_SDIST={given} is not a file")
        return path
    target = home() / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz"
    if target.is_file():
        return target
    with _locked(home() / ".download.lock"):
        if target.is_file():
            return target
        with tempfile.TemporaryDirectory(dir=home()) as tmp:
            # --no-binary for this package only: its build dependencies may come as wheels
            # (pip still prepares metadata, which builds nothing native for scikit-build-core).
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                "llama-cpp-python",
                f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}",
                "-d",
                tmp,
            ]
            subprocess.run(cmd, check=True, stdout=sys.stderr)
            found = list(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
            if len(found) != 1:
                raise ToolchainError(f"pip download left {found} instead of one sdist")
            os.replace(found[0], target)
    return target


def ensure_source() -> Path:
    """Extract `vendor/llama.cpp` from the sdist into `src/` (once, atomically); return it."""
    src = source_dir()
    if (src / "CMakeLists.txt").is_file():
        return src
    sdist = sdist_path()
    with _locked(home() / ".source.lock"):
        if (src / "CMakeLists.txt").is_file():
            return src
        prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}/vendor/llama.cpp/"
        tmp = Path(tempfile.mkdtemp(prefix="src.tmp-", dir=home()))
        try:
            with tarfile.open(sdist) as tar:
                members = []
                for member in tar.getmembers():
                    if member.name.startswith(prefix) and member.name != prefix:
                        member.name = member.name[len(prefix) :]
                        members.append(member)
                if not members:
                    raise ToolchainError(f"{sdist} has no {prefix}")
                tar.extractall(tmp, members=members, filter="data")
            os.replace(tmp, src)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return src


def ensure_llamacpp(*, jobs: int | None = None, log: Path | None = None) -> Path:
    """Build (once) and return the bin dir holding every tool in TOOLS.

    Configures with cmake/ninja in `<home>/build` (kept on failure so a retry resumes), copies the
    tools into a temporary dir and renames it to `bin/`; the build dir is removed afterwards.
    """
    out = bin_dir()
    if all((out / t).is_file() for t in TOOLS):
        return out
    check_cpu()
    src = ensure_source()
    with _locked(home() / ".build.lock"):
        if all((out / t).is_file() for t in TOOLS):
            return out
        for exe in ("cmake", "ninja", "c++"):
            if shutil.which(exe) is None:
                raise ToolchainError(f"{exe} is needed to build llama.cpp and is not on PATH")
        build = home() / "build"
        log = log or home() / "build.log"
        n = str(jobs or int(os.environ.get("SERVELAB_BUILD_JOBS", "2")))
        started = time.monotonic()
        with log.open("a") as fh:
            configure = ["cmake", "-S", str(src), "-B", str(build), "-G", "Ninja", *CMAKE_FLAGS]
            fh.write("$ " + " ".join(configure) + "\n")
            fh.flush()
            rc = subprocess.run(configure, stdout=fh, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                raise ToolchainError(f"cmake configure failed (rc={rc}); see {log}")
            compile_ = ["cmake", "--build", str(build), "-j", n, "--target", *TOOLS]
            fh.write("$ " + " ".join(compile_) + "\n")
            fh.flush()
            rc = subprocess.run(compile_, stdout=fh, stderr=subprocess.STDOUT).returncode
            if rc != 0:
                raise ToolchainError(f"llama.cpp build failed (rc={rc}); see {log}")
        seconds = time.monotonic() - started
        tmp = Path(tempfile.mkdtemp(prefix="bin.tmp-", dir=home()))
        try:
            for item in (build / "bin").iterdir():
                if item.is_file():
                    shutil.copy2(item, tmp / item.name)
            info = {
                "llamaCppPythonVersion": LLAMA_CPP_PYTHON_VERSION,
                "cmakeFlags": list(CMAKE_FLAGS),
                "targets": list(TOOLS),
                "jobs": int(n),
                "buildSeconds": round(seconds, 1),
                "builtOn": platform.node(),
                "builtAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (tmp / "BUILD_INFO.json").write_text(json.dumps(info, indent=2) + "\n")
            if out.exists():  # an incomplete earlier bin/ (a tool was missing): replace it
                shutil.rmtree(out)
            os.replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(build, ignore_errors=True)
    missing = [t for t in TOOLS if not (out / t).is_file()]
    if missing:
        raise ToolchainError(f"build finished without {missing}; see {log}")
    return out


def tool(name: str) -> Path:
    """Path of one llama.cpp tool (building the tools if needed)."""
    if name not in TOOLS:
        raise ToolchainError(f"unknown llama.cpp tool {name!r}; known: {', '.join(TOOLS)}")
    return ensure_llamacpp() / name


def convert_script() -> Path:
    """`convert_hf_to_gguf.py` from the extracted sdist (it imports the `gguf-py` next to it)."""
    script = ensure_source() / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise ToolchainError(f"{script} is missing from the llama.cpp source")
    return script


def _run_convert(script: Path, argv: Sequence[str], pre_fallback: str | None) -> int:
    """Run convert_hf_to_gguf.py in this process, mapping an unknown BPE pre-tokenizer hash.

    The script identifies a BPE tokenizer's pre-tokenizer by hashing how it tokenizes a test string
    and raises NotImplementedError for unknown hashes. A tokenizer trained locally (byte-level BPE
    with the Qwen2-style pre-tokenizer regex) has no known hash; mapping it to `qwen2` makes GGUF and
    HF tokenization agree. The files in the cache stay untouched: the script is loaded as a module,
    `get_vocab_base_pre` is wrapped, and its `main()` is called.
    """
    import importlib
    import importlib.util

    # what running the script would do: its folder (the `conversion` package) and gguf-py importable
    sys.path[:0] = [str(script.parent), str(script.parent / "gguf-py")]
    spec = importlib.util.spec_from_file_location("convert_hf_to_gguf", script)
    if spec is None or spec.loader is None:
        raise ToolchainError(f"cannot load {script}")
    module = importlib.util.module_from_spec(spec)
    sys.modules["convert_hf_to_gguf"] = module
    spec.loader.exec_module(module)
    if pre_fallback:
        try:  # since 2026 the model classes live in the `conversion` package next to the script
            owner = importlib.import_module("conversion.base").TextModel
        except (ImportError, AttributeError):
            owner = getattr(module, "TextModel", None) or getattr(module, "Model", None)
        original = getattr(owner, "get_vocab_base_pre", None)
        if owner is None or original is None:
            raise ToolchainError("convert_hf_to_gguf.py has no get_vocab_base_pre to wrap")

        def get_vocab_base_pre(self: object, tokenizer: object) -> str:
            try:
                result: str = original(self, tokenizer)
            except NotImplementedError:
                print(
                    f"servelab: unknown BPE pre-tokenizer hash; using {pre_fallback!r}",
                    file=sys.stderr,
                )
                return pre_fallback
            return result

        owner.get_vocab_base_pre = get_vocab_base_pre
    sys.argv = [str(script), *argv]
    main = module.main
    main()
    return 0


def convert_command(
    hf_dir: Path,
    outfile: Path,
    *,
    outtype: str = "f16",
    pre_tokenizer_fallback: str | None = "qwen2",
    python: Path | None = None,
) -> list[str]:
    """The command that converts an HF directory to GGUF (run it with `servelab_env()` set)."""
    cmd = [str(python or sys.executable), "-m", "servelab.toolchain.llamacpp", "convert"]
    if pre_tokenizer_fallback:
        cmd += ["--pre-tokenizer-fallback", pre_tokenizer_fallback]
    return [*cmd, "--", str(hf_dir), "--outfile", str(outfile), "--outtype", outtype]


def convert_hf_to_gguf(
    hf_dir: Path,
    outfile: Path,
    *,
    outtype: str = "f16",
    pre_tokenizer_fallback: str | None = "qwen2",
    python: Path | None = None,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> float:
    """Convert an HF directory to one GGUF file; return the seconds it took.

    `python` must have the llamacpp environment's packages (torch, transformers, ...); by default the
    current interpreter, which is right inside a worker. `env` must put servelab on PYTHONPATH when
    `python` is another environment's (see `servelab.toolchain.envs.worker_environ`).
    """
    convert_script()  # extract the source first, in this process
    cmd = convert_command(
        hf_dir, outfile, outtype=outtype, pre_tokenizer_fallback=pre_tokenizer_fallback, python=python
    )
    started = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("$ " + " ".join(cmd) + "\n" + proc.stdout + proc.stderr)
    if proc.returncode != 0 or not outfile.is_file():
        raise ToolchainError(f"convert_hf_to_gguf failed (rc={proc.returncode}):\n{proc.stderr[-3000:]}")
    return time.monotonic() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m servelab.toolchain.llamacpp")
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build (or reuse) the tools and print the bin dir")
    b.add_argument("-j", "--jobs", type=int, default=None)
    sub.add_parser("source", help="extract (or reuse) the source and print its dir")
    c = sub.add_parser("convert", help="run convert_hf_to_gguf.py; args after --")
    c.add_argument("--pre-tokenizer-fallback", default=None, help="pre-tokenizer for unknown BPE hashes")
    c.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.cmd == "build":
        print(ensure_llamacpp(jobs=args.jobs))
        return 0
    if args.cmd == "source":
        print(ensure_source())
        return 0
    rest = list(args.rest)
    if rest[:1] == ["--"]:
        rest = rest[1:]
    return _run_convert(convert_script(), rest, args.pre_tokenizer_fallback)


if __name__ == "__main__":
    sys.exit(main())
