"""Zip files of bundles and RSMF messages: one deterministic writer, one bounded reader.

Every zip coexarchive writes (a bundle written as ``.zip``, the ``rsmf.zip`` inside each RSMF
message) comes from :func:`zip_bytes`, so they share one set of fixed choices: entries sorted by
path, dated 1980-01-01 00:00:00, mode 0644, deflate level 1.

A bundle comes from someone else, so reading one must not let its bytes decide how much the reader
allocates or where a path points. :func:`read_bundle_files` (a directory or a zip) and
:func:`read_zip` (the ``rsmf.zip`` inside an RSMF message: one level of nesting, never more) refuse,
naming the member: more members than ``max_members``, a member larger than ``max_member_bytes``,
more than ``max_total_bytes`` in all (nested archives included: one :class:`Budget` covers the
whole bundle), a name that appears twice, a path that is absolute or not normalised (``..``,
``.``, empty segments, backslashes, a leading ``/`` or drive letter, control characters), a
symbolic link, an encrypted member, and an archive inside a nested archive.
"""

from __future__ import annotations

import io
import os
import re
import stat
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from coexarchive.errors import BundleReadError, ConfigError

__all__ = [
    "DEFAULT_LIMITS",
    "ZIP_TIME",
    "Budget",
    "BundleReadError",
    "ReadLimits",
    "member_problem",
    "read_bundle_files",
    "read_zip",
    "zip_bytes",
]

ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_DRIVE = re.compile(r"[A-Za-z]:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ReadLimits:
    """What reading one bundle may allocate. The defaults fit bundles of millions of records.

    ``max_members`` files (per archive: the bundle, and each ``rsmf.zip``); ``max_member_bytes``
    uncompressed bytes per file; ``max_total_bytes`` uncompressed bytes for the whole bundle,
    the members of every ``rsmf.zip`` included.
    """

    max_members: int = 200_000
    max_member_bytes: int = 2 << 30  # 2 GiB
    max_total_bytes: int = 8 << 30  # 8 GiB

    def __post_init__(self) -> None:
        for name in ("max_members", "max_member_bytes", "max_total_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"bundle read limit {name} must be at least 1")


DEFAULT_LIMITS = ReadLimits()


class Budget:
    """The uncompressed bytes a bundle may still make its reader allocate."""

    __slots__ = ("left", "limits")

    def __init__(self, limits: ReadLimits = DEFAULT_LIMITS, *, used: int = 0) -> None:
        self.limits = limits
        self.left = limits.max_total_bytes - used

    def take(self, size: int, where: str, member: str) -> None:
        limits = self.limits
        if size > limits.max_member_bytes:
            raise BundleReadError(
                f"{where}: member {member!r} expands to {size} bytes, more than the limit of "
                f"{limits.max_member_bytes} per member; refused (raise --max-member-bytes only "
                "for a bundle from a sender you trust)"
            )
        if size > self.left:
            raise BundleReadError(
                f"{where}: member {member!r} takes the bundle past the limit of "
                f"{limits.max_total_bytes} bytes in all; refused (raise --max-bundle-bytes only "
                "for a bundle from a sender you trust)"
            )
        self.left -= size


def member_problem(name: str) -> str | None:
    """Why ``name`` is not a plain relative path inside a bundle, or None when it is."""
    if not name:
        return "has an empty name"
    if "\\" in name:
        return "has a backslash in its path (paths inside a bundle use '/')"
    if name.startswith("/") or _DRIVE.match(name):
        return "has an absolute path"
    if _CONTROL.search(name):
        return "has a control character in its path"
    parts = name.split("/")
    if ".." in parts:
        return "has a path that climbs out of the bundle ('..')"
    if "." in parts or "" in parts:
        return "has a path that is not normalised ('./' or '//')"
    return None


def _refuse(where: str, name: str, problem: str) -> BundleReadError:
    return BundleReadError(
        f"{where}: member {name!r} {problem}; refused (coexarchive never writes such a member: "
        "ask the sender for a fresh copy)"
    )


def zip_bytes(files: Mapping[str, bytes]) -> bytes:
    """A zip of ``files`` that depends on nothing but their names and bytes."""
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            archive.writestr(info, files[name], compresslevel=1)
    return sink.getvalue()


def read_zip(
    source: bytes | Path, budget: Budget, *, where: str, nested: bool = False
) -> dict[str, bytes]:
    """The members of a zip by name, within ``budget``; :class:`BundleReadError` if refused.

    ``nested`` for an archive inside the bundle (``rsmf.zip``): a member that is itself an
    archive is refused there, so nothing is ever unpacked more than one level deep.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as zf:
            infos = zf.infolist()
            if len(infos) > budget.limits.max_members:
                raise BundleReadError(
                    f"{where}: holds {len(infos)} members, more than the limit of "
                    f"{budget.limits.max_members}; refused (raise --max-members only for a "
                    "bundle from a sender you trust)"
                )
            seen: set[str] = set()
            wanted: list[zipfile.ZipInfo] = []
            for info in infos:
                name = info.filename
                problem = member_problem(name[:-1] if info.is_dir() else name)
                if problem is not None:
                    raise _refuse(where, name, problem)
                if name in seen:
                    raise _refuse(where, name, "appears twice (which copy is meant is ambiguous)")
                seen.add(name)
                if info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16):
                    raise _refuse(where, name, "is a symbolic link")
                if info.flag_bits & 0x1:
                    raise _refuse(where, name, "is encrypted")
                if not info.is_dir():
                    wanted.append(info)
            # Declared sizes first: nothing is inflated when the listing already exceeds a limit.
            check = Budget(budget.limits, used=budget.limits.max_total_bytes - budget.left)
            for info in wanted:
                check.take(info.file_size, where, info.filename)
            members: dict[str, bytes] = {}
            for info in wanted:
                with zf.open(info) as handle:
                    data = handle.read(info.file_size + 1)
                budget.take(len(data), where, info.filename)
                if nested and data.startswith(_ZIP_MAGIC):
                    raise _refuse(
                        where, info.filename, "is an archive inside a nested archive (too deep)"
                    )
                members[info.filename] = data
            return members
    except BundleReadError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, OSError) as exc:
        raise BundleReadError(f"{where}: not a readable zip ({exc})") from None
    except (RuntimeError, ValueError, EOFError) as exc:  # e.g. unsupported features, bad headers
        raise BundleReadError(f"{where}: not a readable zip ({exc})") from None


def read_bundle_files(path: Path, limits: ReadLimits = DEFAULT_LIMITS) -> dict[str, bytes]:
    """Every file of a bundle directory or zip, by its path inside the bundle, within ``limits``."""
    budget = Budget(limits)
    if path.is_dir():
        return _read_directory(path, budget)
    if not path.is_file():
        raise ConfigError(f"{path}: no such bundle directory or zip")
    return read_zip(path, budget, where=str(path))


def _unreadable(error: OSError) -> None:
    # A folder that cannot be listed is not skipped: its files would be silently missing.
    raise BundleReadError(f"{error.filename}: cannot list this part of the bundle ({error})")


def _read_directory(root: Path, budget: Budget) -> dict[str, bytes]:
    where = str(root)
    found: list[tuple[str, int]] = []
    for directory, subdirectories, names in os.walk(root, onerror=_unreadable, followlinks=False):
        base = Path(directory)
        for name in sorted([*subdirectories, *names]):
            item = base / name
            relative = item.relative_to(root).as_posix()
            status = item.lstat()
            mode = status.st_mode
            if stat.S_ISLNK(mode):
                raise _refuse(where, relative, "is a symbolic link")
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise _refuse(where, relative, "is not a regular file")
            problem = member_problem(relative)
            if problem is not None:
                raise _refuse(where, relative, problem)
            found.append((relative, status.st_size))
            if len(found) > budget.limits.max_members:
                raise BundleReadError(
                    f"{where}: holds more than {budget.limits.max_members} files; refused (raise "
                    "--max-members only for a bundle from a sender you trust)"
                )
    check = Budget(budget.limits)
    for relative, size in found:
        check.take(size, where, relative)
    files: dict[str, bytes] = {}
    for relative, size in sorted(found):
        with (root / relative).open("rb") as handle:
            data = handle.read(size + 1)  # a file that grew since it was listed shows as such
        budget.take(len(data), where, relative)
        files[relative] = data
    return files
