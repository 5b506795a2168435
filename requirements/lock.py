"""Make, check and try upgrades of the project's locked installs.

Every install a fresh clone makes comes from a lock in this folder, pinned with hashes:

    dev.lock      the project with its test and bench extras, plus the venv's own pip, setuptools
                  and wheel (``make test``, ``make demo``, ``make bench``)
    runtime.lock  the project's runtime dependencies alone (a production image)
    infra.lock    checkov, in a venv of its own (its pins clash with apache-beam's)
    tools.lock    uv, which resolves the locks

Each lock's first line records a SHA-256 of its inputs (the dependency tables of pyproject.toml and
the ``.in`` files here), so a lock that was not remade after an input changed is caught offline.

    python requirements/lock.py check              every lock matches its inputs (stdlib only)
    python requirements/lock.py installed LOCK     this interpreter has exactly LOCK's packages
    python requirements/lock.py compile [--upgrade] [--out DIR]
                                                   remake the locks with uv (``make lock``)

``compile`` keeps existing pins wherever the inputs allow; ``--upgrade`` re-resolves everything to
the newest allowed releases (``make upgrade-check`` tries them in a scratch folder).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYPROJECT = ROOT / "pyproject.toml"
HEADER = "# inputs-sha256: "
PYTHON_VERSION = "3.11"


@dataclass(frozen=True)
class Lock:
    name: str
    extras: tuple[str, ...] = ()
    project: bool = False  # resolves pyproject.toml's dependencies
    inputs: tuple[str, ...] = ()  # .in files beside this script

    @property
    def path(self) -> Path:
        return HERE / f"{self.name}.lock"


LOCKS = (
    Lock("dev", extras=("test", "bench"), project=True, inputs=("build.in",)),
    Lock("runtime", project=True),
    Lock("infra", inputs=("infra.in",)),
    Lock("tools", inputs=("tools.in",)),
)


class LockError(Exception):
    """A lock that does not match its inputs or the installed packages."""


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def inputs_digest(lock: Lock) -> str:
    """SHA-256 over exactly what the lock was resolved from."""
    material: dict[str, object] = {"python": PYTHON_VERSION}
    if lock.project:
        project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
        optional = project["project"].get("optional-dependencies", {})
        material["dependencies"] = project["project"].get("dependencies", [])
        material["extras"] = {extra: optional.get(extra, []) for extra in lock.extras}
        material["requires-python"] = project["project"].get("requires-python")
    for name in lock.inputs:
        material[name] = (HERE / name).read_text(encoding="utf-8")
    canonical = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def recorded_digest(lock: Lock) -> str:
    if not lock.path.exists():
        raise LockError(f"{shown(lock.path)} is missing: run `make lock`")
    first = lock.path.read_text(encoding="utf-8").partition("\n")[0]
    if not first.startswith(HEADER):
        raise LockError(f"{shown(lock.path)} has no '{HEADER.strip()}' line")
    return first.removeprefix(HEADER).strip()


def check() -> None:
    stale = [lock for lock in LOCKS if recorded_digest(lock) != inputs_digest(lock)]
    if stale:
        names = ", ".join(shown(lock.path) for lock in stale)
        raise LockError(
            f"{names} out of date with pyproject.toml or requirements/*.in: run `make lock` "
            "and commit the result"
        )


# --------------------------------------------------------------------------------------------------
# What is installed


_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock_path: Path) -> dict[str, str]:
    """Package → version for every pin in the lock that applies to this interpreter."""
    from packaging.markers import Marker  # installed from the lock itself

    wanted: dict[str, str] = {}
    for line in lock_path.read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line)
        if match is None:
            continue
        name, version, marker = match.groups()
        if marker and not Marker(marker).evaluate():
            continue
        wanted[normalise(name)] = version
    return wanted


def installed(lock_path: Path, *, project: str = "coexarchive") -> None:
    from importlib import metadata

    have = {normalise(dist.metadata["Name"]): dist.version for dist in metadata.distributions()}
    have.pop(project, None)
    wanted = pins(lock_path)
    missing = sorted(f"{n}=={v}" for n, v in wanted.items() if n not in have)
    extra = sorted(f"{n}=={v}" for n, v in have.items() if n not in wanted)
    differ = sorted(
        f"{n}: {have[n]} installed, {v} locked"
        for n, v in wanted.items()
        if n in have and have[n] != v
    )
    problems = [f"missing {m}" for m in missing] + [f"not in the lock {e}" for e in extra] + differ
    if problems:
        detail = "\n  ".join(problems)
        raise LockError(f"{sys.prefix} does not match {lock_path}:\n  {detail}")
    print(f"{sys.prefix}: {len(wanted)} packages, exactly as {lock_path.name} pins them")


# --------------------------------------------------------------------------------------------------
# Resolving


def compile_locks(*, upgrade: bool, out: Path) -> None:
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    out.mkdir(parents=True, exist_ok=True)
    for lock in LOCKS:
        target = out / lock.path.name
        if upgrade:
            target.unlink(missing_ok=True)
        elif lock.path.exists() and target != lock.path:
            shutil.copyfile(lock.path, target)  # uv keeps the pins it finds in the output file
        sources = [str(PYPROJECT)] if lock.project else []
        sources += [str(HERE / name) for name in lock.inputs]
        command = [uv, "pip", "compile", *sources, "--quiet", "--generate-hashes", "--universal"]
        command += ["--python-version", PYTHON_VERSION, "--no-header", "--output-file", str(target)]
        command += [arg for extra in lock.extras for arg in ("--extra", extra)]
        command += ["--upgrade"] if upgrade else []
        # Resolve against the public index only, whatever this machine's pip is pointed at.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
        subprocess.run(command, check=True, cwd=ROOT, env=env)
        body = target.read_text(encoding="utf-8")
        sources_line = " ".join(Path(s).relative_to(ROOT).as_posix() for s in sources)
        extras_line = "".join(f" [{e}]" for e in lock.extras)
        header = (
            f"{HEADER}{inputs_digest(lock)}\n"
            f"# Locked from {sources_line}{extras_line} "
            f"for Python {PYTHON_VERSION}, every platform.\n"
            "# Remake with `make lock`; never edit by hand.\n"
        )
        target.write_text(header + body, encoding="utf-8")
        print(f"wrote {target}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="requirements/lock.py", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="fail if a lock is out of date with its inputs")
    inst = sub.add_parser("installed", help="fail unless this interpreter has exactly LOCK")
    inst.add_argument("lock", type=Path)
    comp = sub.add_parser("compile", help="remake the locks with uv")
    comp.add_argument("--upgrade", action="store_true", help="newest allowed releases")
    comp.add_argument("--out", type=Path, default=HERE, help="folder to write (default: here)")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            check()
            print(f"locks match their inputs: {', '.join(lock.path.name for lock in LOCKS)}")
        elif args.command == "installed":
            installed(args.lock)
        else:
            compile_locks(upgrade=args.upgrade, out=args.out.resolve())
    except LockError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
