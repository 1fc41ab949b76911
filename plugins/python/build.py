#!/usr/bin/env python3
"""Builds a Python policy into a Larder plugin component, or runs its tests.

    python3 plugins/python/build.py POLICY_DIR OUTPUT.wasm
    python3 plugins/python/build.py --test POLICY_DIR [PYTEST_ARGS...]

POLICY_DIR holds the policy's module `app.py` (and any modules or packages it imports), which
binds the exported class to the name `Policy` (`Policy = larder_policy.export(MyPolicy)`).
`--test` runs `python -m pytest` in POLICY_DIR, in the same virtual environment (with the pinned
pytest of `requirements-test.txt`, installed on first use), with the policy's folder and the SDK
on the path: one command, from any directory, whatever Python packages the machine has.

Why a script: componentize-py is a pip package, so the build needs a virtual environment with
the pinned version (`requirements-build.txt`), created on first use under the checkout's
`target/python/venv`; it bundles every file of the folders it is given, so the script stages
only the policy's modules and the SDK (no tests, no caches, nothing from the machine's
site-packages); and a gateway watching its plugin directory must never load a half-written
file, so the component is written to a temporary file next to OUTPUT and renamed over it.

The component targets the world `policy-plugin` of `wit/policy.wit` (`larder:policy@0.2.0`),
the file alone: `wit/deps/` holds older versions of the same package.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
WIT = ROOT / "wit" / "policy.wit"
WORLD = "policy-plugin"
SDK = HERE / "larder-policy" / "src" / "larder_policy"
REQUIREMENTS = HERE / "requirements-build.txt"
TEST_REQUIREMENTS = HERE / "requirements-test.txt"
VENV = ROOT / "target" / "python" / "venv"
BIN = VENV / "bin"


def pinned_version(package: str, requirements: Path = REQUIREMENTS) -> str:
    """The version `requirements` (default: `requirements-build.txt`) pins `package` to."""
    for line in requirements.read_text().splitlines():
        name, _, version = line.partition("==")
        if name.strip() == package:
            return version.strip()
    raise SystemExit(f"{requirements} pins no version of {package}")


def ensure_installed(package: str, requirements: Path) -> Path:
    """The venv's Python, with the venv created and `requirements` installed into it unless
    `package` is there at the version they pin."""
    python = BIN / "python"
    if not python.exists():
        print(f"creating {VENV}", file=sys.stderr)
        venv.create(VENV, with_pip=True)
    wanted = pinned_version(package, requirements)
    installed = subprocess.run(
        [python, "-c", f"import importlib.metadata as m; print(m.version({package!r}))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    if installed != wanted:
        print(f"installing {package} {wanted} into {VENV}", file=sys.stderr)
        subprocess.run([python, "-m", "pip", "install", "-q", "-r", requirements], check=True)
    return python


def ensure_componentize_py() -> Path:
    """The venv's componentize-py, created and installed at the pinned version if needed."""
    ensure_installed("componentize-py", REQUIREMENTS)
    return BIN / "componentize-py"


def policy_files(folder: str, names: list[str]) -> set[str]:
    """What `copytree` leaves out of a policy: tests, caches, hidden and non-Python files."""
    skipped = set()
    for name in names:
        path = Path(folder, name)
        if path.is_dir():
            if name in ("tests", "__pycache__") or name.startswith("."):
                skipped.add(name)
        elif path.suffix != ".py" or name == "conftest.py":
            skipped.add(name)
    return skipped


def build(policy: Path, output: Path) -> None:
    if not (policy / "app.py").is_file():
        raise SystemExit(f"{policy} has no app.py")
    componentize_py = ensure_componentize_py()
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="larder-python-") as staging:
        # componentize-py adds `$VIRTUAL_ENV/lib/site-packages` to the app's path: the SDK goes
        # there, and nothing else does.
        site_packages = Path(staging, "lib", "site-packages")
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(SDK, site_packages / SDK.name, ignore=ignore)
        app = Path(staging, "app")
        shutil.copytree(policy, app, ignore=policy_files)
        partial = output.with_name(f".{output.name}.{os.getpid()}.tmp")
        command: list[str | Path] = [
            componentize_py,
            "-q",
            "-d", WIT,
            "-w", WORLD,
            "componentize", "app",
            "-p", app,
            "-o", partial,
        ]  # fmt: skip
        env = {**os.environ, "VIRTUAL_ENV": staging, "RUST_BACKTRACE": "0"}
        started = time.monotonic()
        try:
            if subprocess.run(command, env=env).returncode != 0:
                raise SystemExit(f"componentize-py could not build {policy}")
            os.replace(partial, output)
        finally:
            partial.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    size = output.stat().st_size
    print(f"{output}: {size / 1e6:.1f} MB in {seconds:.1f} s")


def test(policy: Path, pytest_args: list[str]) -> int:
    """Runs the policy's tests; returns pytest's exit status.

    The policy's folder and the SDK go on `PYTHONPATH` as well as in the policy's
    `pyproject.toml`, so a folder without one tests too. No bytecode and no `.pytest_cache` are
    written: testing leaves the policy's folder as it was."""
    if not (policy / "app.py").is_file():
        raise SystemExit(f"{policy} has no app.py")
    python = ensure_installed("pytest", TEST_REQUIREMENTS)
    path = [str(policy), str(SDK.parent)]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "PYTHONDONTWRITEBYTECODE": "1"}
    command = [python, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args]
    return subprocess.run(command, cwd=policy, env=env).returncode


def main() -> None:
    summary = __doc__.split("\n\n")[0]
    if sys.argv[1:2] == ["--test"]:
        parser = argparse.ArgumentParser(prog=f"{sys.argv[0]} --test", description=summary)
        parser.add_argument("policy", type=Path, help="the policy's folder, holding app.py")
        parser.add_argument(
            "pytest_args", nargs=argparse.REMAINDER, help="passed to pytest (`-k ttl`, `-x`)"
        )
        args = parser.parse_args(sys.argv[2:])
        sys.exit(test(args.policy.resolve(), args.pytest_args))
    parser = argparse.ArgumentParser(
        description=summary,
        epilog="`build.py --test POLICY_DIR [PYTEST_ARGS...]` runs the policy's tests instead.",
    )
    parser.add_argument("policy", type=Path, help="the policy's folder, holding app.py")
    parser.add_argument("output", type=Path, help="the component to write (.wasm)")
    args = parser.parse_args()
    build(args.policy.resolve(), args.output.resolve())


if __name__ == "__main__":
    main()
