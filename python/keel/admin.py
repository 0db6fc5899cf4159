"""Workspace administration: schema migrations, copying a whole workspace between backends, and
sweeping orphaned objects.

    keel.admin.migrate("postgresql://keel@db/keel", dry_run=True)   # what a deploy would apply
    keel.admin.copy("./demo.keel", "postgresql://keel@db/keel?schema=team", dst_artifacts="s3://b/keel")
    keel.admin.gc(ws, older_than="1h", dry_run=True)                # objects no row names

The same as ``keel admin migrate``, ``keel admin copy SRC DST`` and ``keel admin gc`` on the command line.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from keel import _core
from keel._time import duration_ms

Progress = Callable[[str, str, int, int], None]


def migrate(workspace: str, *, dry_run: bool = False) -> list[dict[str, Any]]:
    """Each module's tables: ``module``, ``version`` (the workspace's), ``known`` (this Keel's) and
    ``pending`` (the SQL steps a migrate applies). Without ``dry_run`` the pending steps are applied,
    one transaction per module (safe while other processes use the workspace) and the list says what
    was pending before. Only the metadata is opened: a dry run changes nothing. A workspace newer
    than this Keel raises ``keel.Corrupt`` naming both versions."""
    return [dict(row, state=_state(row)) for row in _core.admin_migrate(str(workspace), dry_run)]


def _state(row: dict[str, Any]) -> str:
    if row["known"] == 0:
        return "unknown (a newer Keel's)"
    if row["version"] > row["known"]:
        return "newer"
    if row["pending"]:
        return "new" if row["version"] == 0 else "behind"
    return "current"


def copy(src: str, dst: str, *, src_artifacts: str | None = None, dst_artifacts: str | None = None,
         progress: Progress | bool | None = None) -> dict[str, Any]:
    """Copies the workspace at ``src`` into a new one at ``dst`` (directory or ``postgresql://`` URL;
    ``dst_artifacts`` ``s3://bucket/prefix`` or a directory), every row with its id and every object,
    then verifies both by digest. Returns the digest: ``tables`` (table, rows, sha256), ``objects``
    (key, size, sha256), ``object_bytes``, ``objects_sha256``.

    ``progress``: a callable ``(phase, item, done, total)``, or True for a progress bar on stderr
    (the default when stderr is a terminal). Raises AlreadyExists when ``dst`` holds anything, and
    Corrupt naming the table or object that differs."""
    if progress is None:
        progress = sys.stderr.isatty()
    fn: Progress | None = _Bar() if progress is True else (progress or None)
    try:
        return _core.admin_copy(str(src), str(dst), src_artifacts, dst_artifacts, fn)
    finally:
        if isinstance(fn, _Bar):
            fn.close()


def digest(workspace: Any) -> dict[str, Any]:
    """The digest `copy` verifies with, of an open workspace (``keel.open(...)``) or its path."""
    native = getattr(workspace, "native", workspace)
    if isinstance(native, str):
        import keel
        native = keel.open(native).native
    return _core.admin_digest(native)


def gc(workspace: Any, *, older_than: str | float | timedelta = "1h", dry_run: bool = False) -> dict[str, Any]:
    """Deletes the workspace's orphans: objects (artifacts, feature segments, online snapshots) that
    no row names, as a crash between an upload and the row naming it leaves. Only those last written
    more than ``older_than`` ago go ("1h", "30m", "2d", seconds, or a timedelta), so an upload whose
    row is still being written is never swept; unfinished S3 multipart uploads that old are aborted.
    ``dry_run`` reports without deleting. Returns ``objects``/``bytes`` (listed), ``named`` (kept:
    some row names them), ``swept`` and ``young`` (orphans deleted, or kept inside the grace period:
    key, size, modified_ms), ``swept_bytes``, ``young_bytes``, ``aborted_uploads`` (S3) and ``staged``
    (files a writer staged and never committed, in a local directory: deleted too)."""
    native = getattr(workspace, "native", workspace)
    if isinstance(native, (str, os.PathLike)):
        import keel
        native = keel.open(native).native
    return _core.admin_gc(native, duration_ms(older_than, "older_than"), dry_run)


class _Bar:
    """A one-line progress bar on stderr (tqdm-like, without the dependency)."""

    def __init__(self) -> None:
        self._last = 0.0
        self._phase = ""

    def __call__(self, phase: str, item: str, done: int, total: int) -> None:
        now = time.monotonic()
        if phase == self._phase and now - self._last < 0.1 and done < total:
            return
        if phase != self._phase and self._phase:
            sys.stderr.write("\n")
        self._phase, self._last = phase, now
        width = 30
        filled = width if total <= 0 else int(width * done / total)
        pct = 100 if total <= 0 else 100 * done // total
        unit = "B" if phase in ("objects", "verify") else "rows"
        label = {"rows": "tables ", "objects": "objects", "verify": "verify "}.get(phase, phase)
        sys.stderr.write(f"\r{label} |{'#' * filled}{'.' * (width - filled)}| {pct:3d}% "
                         f"{_human(done, unit)}/{_human(total, unit)} {item[-40:]:<40}")
        sys.stderr.flush()

    def close(self) -> None:
        if self._phase:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _human(n: int, unit: str) -> str:
    if unit != "B":
        return f"{n:,}"
    size = float(n)
    for suffix in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f}{suffix}" if suffix == "B" else f"{size:.1f}{suffix}"
        size /= 1024
    return f"{size:.1f}GiB"
