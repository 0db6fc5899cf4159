"""The ``keel`` command, for CI scripts and terminals (``python -m keel`` is the same).

    keel --workspace demo.keel runs list --experiment churn --filter "metrics.auc > 0.8"
    keel models list
    keel models show churn@champion --json
    keel models promote churn 3 --alias champion --stage Production --archive-existing
    keel models delete-alias churn challenger
    keel lineage upstream model:churn/3 --depth 2
    keel lineage upstream model:churn@champion --as-of 2026-11-01
    keel plan defs/                        # exit 1 when applying defs/ would change the workspace
    keel apply defs/ --prune
    keel serve churn --port 8080
    keel admin migrate --dry-run           # exit 1 when the workspace's schema needs migrating
    keel admin copy ./demo.keel postgresql://keel@db/keel --dst-artifacts s3://bucket/keel
    keel admin gc --older-than 1h --dry-run   # objects no row names (a crashed upload's)

The workspace comes from ``--workspace`` or ``$KEEL_WORKSPACE``. Exit code 0 on success; on failure
``error: <Kind>: <message>`` on stderr and the kind's exit code (NotFound 2, AlreadyExists 3,
InvalidArgument 4, Conflict 5, Corrupt 6, PermissionDenied 7, PluginError 8, Internal 9, Unavailable 10) so scripts
can branch on it.

``--json`` is one contract for every command: stdout holds one JSON document; a missing value is
null (never "None" or ""); every time is ISO 8601 in UTC with its offset and milliseconds
(``2026-11-01T12:00:00.000+00:00``); a run is always named by ``run_id``; and a failure prints
``{"error": "<Kind>", "message": "..."}`` on stderr with the same exit code. ``keel serve --json``
announces itself as one JSON line (url, port, endpoints, a generated token) and then serves.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import sys
import threading
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from keel import errors
from keel._time import to_epoch_ms


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is an InvalidArgument (exit 4) like any other bad input."""

    def error(self, message: str):  # noqa: D401 - argparse's signature
        raise errors.InvalidArgument(f"{message} (see '{self.prog} --help')")


# ------------------------------------------------------------------------------------------ output

def _plain(value: Any) -> Any:
    """JSON-friendly: non-finite floats become null, times ISO strings, numpy scalars Python ones."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):  # pandas Timestamps too
        return None if str(value) == "NaT" else value.isoformat(timespec="milliseconds")
    if isinstance(value, date):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalar
        return _plain(value.item())
    if value is not None and not isinstance(value, (str, int, bool)):
        try:
            import pandas as pd
            if pd.isna(value):
                return None
        except (TypeError, ValueError, ImportError):
            pass
        return str(value)
    return value


# Keys holding times (ms since the epoch in the core, ISO strings in some to_dict()s); keys holding
# the user's own values, passed through as logged (an empty param is a value, not a missing one).
_TIME_KEYS = frozenset({"start_time", "end_time", "created_at", "at", "heartbeat_at", "updated_at", "modified_at",
                        "started_at"})
_USER_VALUES = frozenset({"params", "tags"})


def _iso_ms(ms: int) -> str:
    from datetime import timezone
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds")


def _contract(value: Any, key: str | None = None) -> Any:
    """The --json contract on top of _plain: times ISO 8601 UTC with milliseconds; a missing value
    ("" for no run / no git checkout / no description, the stage "None") is null."""
    if isinstance(value, dict):
        if key in _USER_VALUES:
            return value
        return {k: _contract(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_contract(v) for v in value]
    if key in _TIME_KEYS:
        if isinstance(value, int) and not isinstance(value, bool):
            return _iso_ms(value)
        if isinstance(value, str) and value:
            try:
                ms = to_epoch_ms(value, key)
            except errors.InvalidArgument:
                return value  # not a zoned time after all: pass it through rather than fail the command
            return value if ms is None else _iso_ms(ms)
    if value == "" or (key in ("stage", "from", "to") and value == "None"):  # "None": no stage
        return None
    return value


def _cell(value: Any) -> str:
    value = _plain(value)
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value) if value else "-"
    return str(value)


def _table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    if columns is None:
        columns = []
        for row in rows:
            columns += [c for c in row if c not in columns]
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def _fields(record: dict) -> str:
    width = max((len(k) for k in record), default=0)
    lines = []
    for key, value in record.items():
        if isinstance(value, dict) and value:
            lines.append(f"{key}:")
            lines += [f"  {k}: {_cell(v)}" for k, v in value.items()]
        else:
            lines.append(f"{key.ljust(width)}  {_cell(value)}")
    return "\n".join(lines)


class _Out:
    def __init__(self, as_json: bool):
        self.as_json = as_json

    def emit(self, data: Any, text: str) -> None:
        if self.as_json:
            print(json.dumps(_contract(_plain(data)), indent=2, allow_nan=False))
        else:
            print(text)


# -------------------------------------------------------------------------------------- workspace

def _open_workspace(args):
    import keel
    path = args.workspace or os.environ.get("KEEL_WORKSPACE")
    if not path:
        raise errors.InvalidArgument("no workspace given: pass --workspace PATH or set KEEL_WORKSPACE")
    from keel.workspace import is_database_url
    if is_database_url(path):  # a team workspace: its artifacts recorded, or --artifacts / $KEEL_ARTIFACTS when new
        return keel.open(path, artifacts=getattr(args, "artifacts", None))
    if not os.path.exists(path):
        raise errors.NotFound(f"workspace '{path}' does not exist: check --workspace / KEEL_WORKSPACE "
                              "(create one with keel.open in Python)")
    if not os.path.isdir(path) or not os.path.exists(os.path.join(path, "keel.db")):
        what = "a folder" if os.path.isdir(path) else "a file"
        raise errors.NotFound(f"workspace '{path}' exists but is not a Keel workspace (no keel.db; it is {what}): "
                              "point --workspace / KEEL_WORKSPACE at the folder that holds keel.db")
    return keel.open(path, artifacts=getattr(args, "artifacts", None))


# ------------------------------------------------------------------------------------------- runs

_RUN_FIELDS = ("id", "name", "experiment", "status", "start_time", "end_time", "user", "parent_id", "source",
               "git_commit", "git_dirty", "error", "params", "metrics", "tags")


def _run_dict(run) -> dict:
    """A run as data; times stay ms (the JSON contract and _readable format them)."""
    out = dict(run.to_dict()) if hasattr(run, "to_dict") else _run_attrs(run)
    out = {"run_id": out.pop("id"), **out}  # a run is named by run_id in every command's output
    process = getattr(run, "process", None)
    out["process"] = dict(process) if process else None
    return out


def _readable(record: dict) -> dict:
    """For text output: ms times as ISO strings, at any depth."""
    return _contract(record)


def _run_attrs(run) -> dict:
    out = {}
    for field in _RUN_FIELDS:
        value = getattr(run, field, None)
        if callable(value):
            continue
        if value is not None:
            out[field] = dict(value) if isinstance(value, dict) else value
    return out


def _frame_rows(frame) -> list[dict]:
    return [{str(k): v for k, v in row.items()} for row in frame.to_dict(orient="records")]


def cmd_runs_list(args, out: _Out) -> None:
    ws = _open_workspace(args)
    kwargs: dict[str, Any] = {}
    if args.experiment:
        kwargs["experiment"] = args.experiment
    if args.filter:
        kwargs["filter"] = args.filter
    if args.order_by:
        kwargs["order_by"] = args.order_by
    if args.max_results is not None:
        kwargs["max_results"] = args.max_results
    rows = _frame_rows(ws.runs.search(**kwargs).to_pandas())
    text = _table(rows) if rows else "no runs"
    out.emit(rows, text)


def cmd_runs_show(args, out: _Out) -> None:
    ws = _open_workspace(args)
    record = _run_dict(ws.runs.get(args.run_id))
    out.emit(record, _fields(_readable(record)))


def _artifact_rows(entries: Iterable[dict]) -> list[dict]:
    return [{"path": e["path"], "size": e["size"], "sha256": e["digest"]} for e in entries]


def cmd_runs_artifacts(args, out: _Out) -> None:
    ws = _open_workspace(args)
    run = ws.runs.get(args.run_id)
    rows = _artifact_rows(run.artifacts())
    if args.path:
        prefix = args.path.strip("/")
        rows = [r for r in rows if r["path"] == prefix or r["path"].startswith(prefix + "/")]
    if args.download is None:
        text = _table(rows, ["path", "size", "sha256"]) if rows else f"run {run.id} has no artifacts" + (
            f" under '{args.path}'" if args.path else "")
        out.emit(rows, text)
        return
    if not rows:
        raise errors.NotFound(f"run {run.id} has no artifacts" + (f" under '{args.path}'" if args.path else "") +
                              ": nothing to download ('keel runs artifacts RUN_ID' lists them)")
    run.download_artifacts(dest=args.download, path=args.path)  # each file verified against its sha256
    dest = args.download
    for row in rows:
        row["file"] = os.path.join(os.path.abspath(dest), *row["path"].split("/"))
    total = sum(r["size"] for r in rows)
    out.emit({"run_id": run.id, "dest": os.path.abspath(dest), "files": rows},
             f"downloaded {len(rows)} file(s), {total:,} bytes, to {os.path.abspath(dest)} (sha256 verified)")


_STALE_COLUMNS = ["run_id", "name", "experiment", "start_time", "host", "pid", "heartbeat_at", "reason"]


def _stale_rows(stale: Iterable[dict]) -> list[dict]:
    return [{"run_id": r["id"], "name": r["name"], "experiment": r["experiment"], "status": r["status"],
             "start_time": _iso_ms(r["start_time"]),
             "end_time": None if r["end_time"] is None else _iso_ms(r["end_time"]),
             "host": r["process"]["host"], "pid": r["process"]["pid"],
             "heartbeat_at": _iso_ms(r["process"]["heartbeat_at"]), "reason": r["reason"]} for r in stale]


def cmd_runs_stale(args, out: _Out) -> None:
    ws = _open_workspace(args)
    rows = _stale_rows(ws.runs.stale(heartbeat_timeout=args.heartbeat_timeout))
    out.emit(rows, _table(rows, _STALE_COLUMNS) if rows else "no stale runs: every RUNNING run's process is alive")


def cmd_runs_close_stale(args, out: _Out) -> None:
    ws = _open_workspace(args)
    rows = _stale_rows(ws.runs.close_stale(heartbeat_timeout=args.heartbeat_timeout, dry_run=args.dry_run))
    verb = "would close" if args.dry_run else "closed"
    text = f"{verb} {len(rows)} stale run(s) as KILLED"
    if rows:
        text += "\n\n" + _table(rows, _STALE_COLUMNS)
    out.emit({"dry_run": args.dry_run, "runs": rows}, text)


# ----------------------------------------------------------------------------------------- models

_VERSION_COLUMNS = ["version", "stage", "aliases", "run_id", "flavour", "created_at", "created_by", "description"]


def _version_json(v) -> dict:
    return dict(v.to_dict(), created_at=v.created_at)  # ms: the contract formats it with milliseconds


def _model_json(m) -> dict:
    return dict(m.to_dict(), created_at=m.created_at)


def _version_rows(versions: Iterable) -> list[dict]:
    rows = []
    for v in versions:
        d = v.to_dict()
        rows.append({c: (", ".join(d[c]) if c == "aliases" else d[c]) for c in _VERSION_COLUMNS})
    return rows


def cmd_models_list(args, out: _Out) -> None:
    ws = _open_workspace(args)
    models = ws.models.list()
    data = [_model_json(m) for m in models]
    text = _table([m.display_row() for m in models]) if models else "no registered models"
    out.emit(data, text)


def cmd_models_show(args, out: _Out) -> None:
    ws = _open_workspace(args)
    ref = args.ref.removeprefix("model:")
    if "/" in ref or "@" in ref:
        version = ws.models.get(ref)
        out.emit(_version_json(version), _fields(version.to_dict()))
        return
    model = ws.models.model(ref)
    versions = ws.models.versions(ref)
    data = dict(_model_json(model), versions=[_version_json(v) for v in versions])
    text = _fields(model.to_dict())
    if versions:
        text += "\n\n" + _table(_version_rows(versions), _VERSION_COLUMNS)
    out.emit(data, text)


def cmd_models_versions(args, out: _Out) -> None:
    ws = _open_workspace(args)
    versions = ws.models.versions(args.name)
    out.emit([_version_json(v) for v in versions],
             _table(_version_rows(versions), _VERSION_COLUMNS) if versions else f"model '{args.name}' has no versions")


def cmd_models_promote(args, out: _Out) -> None:
    if not args.alias and not args.stage:
        raise errors.InvalidArgument(f"promote {args.name} {args.version}: say what to do with --alias NAME "
                                     "and/or --stage {Staging,Production,Archived,None}")
    if args.archive_existing and not args.stage:
        raise errors.InvalidArgument("--archive-existing needs --stage (Staging or Production)")
    ws = _open_workspace(args)
    ws.models.get(f"{args.name}/{args.version}")  # NotFound before anything changes
    done = []
    if args.stage:
        ws.models.transition_stage(args.name, args.version, args.stage, archive_existing=args.archive_existing)
        done.append(f"stage {args.stage}")
    for alias in args.alias or []:
        ws.models.set_alias(args.name, alias, version=args.version)
        done.append(f"alias @{alias}")
    version = ws.models.get(f"{args.name}/{args.version}")
    out.emit(_version_json(version), f"promoted {version.ref}: {', '.join(done)}\n\n{_fields(version.to_dict())}")


def cmd_models_delete_alias(args, out: _Out) -> None:
    ws = _open_workspace(args)
    version = ws.models.get(f"{args.name}@{args.alias}")
    ws.models.delete_alias(args.name, args.alias)
    out.emit({"name": args.name, "alias": args.alias, "version": version.version},
             f"deleted alias {args.name}@{args.alias} (was version {version.version})")


def cmd_models_events(args, out: _Out) -> None:
    ws = _open_workspace(args)
    rows = _frame_rows(ws.models.events(args.name))
    out.emit(rows, _table(rows) if rows else "no events")


# ---------------------------------------------------------------------------------------- lineage

def _lineage(args, out: _Out, direction: str) -> None:
    ws = _open_workspace(args)
    view = getattr(ws.lineage, direction)(args.ref, depth=args.depth, as_of=args.as_of)
    data = {"ref": view.ref, "root": view.root, "direction": direction, "nodes": view.nodes, "edges": view.edges}
    lines = [f"{view.title}: {len(view.nodes)} nodes, {len(view.edges)} edges"]
    lines += [f"  {'  ' * (e['depth'] - 1)}{e['from']} -{e['kind']}-> {e['to']}" for e in view.edges]
    out.emit(data, "\n".join(lines))


def cmd_lineage_upstream(args, out: _Out) -> None:
    _lineage(args, out, "upstream")


def cmd_lineage_downstream(args, out: _Out) -> None:
    _lineage(args, out, "downstream")


# ------------------------------------------------------------------------------------------ admin

def _workspace_arg(args) -> str:
    path = args.workspace or os.environ.get("KEEL_WORKSPACE")
    if not path:
        raise errors.InvalidArgument("no workspace given: pass --workspace PATH or set KEEL_WORKSPACE")
    return path


def cmd_admin_migrate(args, out: _Out) -> int:
    from keel import admin
    rows = admin.migrate(_workspace_arg(args), dry_run=args.dry_run)
    pending = sum(len(r["pending"]) for r in rows)
    data = {"dry_run": args.dry_run, "pending_steps": pending if args.dry_run else 0,
            "applied_steps": 0 if args.dry_run else pending, "modules": rows}
    table = _table([{"module": r["module"], "workspace": r["version"], "keel": r["known"] or None,
                     "pending": len(r["pending"]), "state": r["state"]} for r in rows])
    if not pending:
        head = "schema up to date: nothing to migrate"
    elif args.dry_run:
        head = f"{pending} step(s) pending (run without --dry-run to apply them):"
        # The SQL of modules already there (a new module's steps only create its tables).
        behind = [r for r in rows if r["pending"] and r["version"]]
        table += "".join(f"\n\n-- {r['module']} {r['version']} -> {r['known']}\n" +
                         "\n".join(step.strip() for step in r["pending"]) for r in behind)
    else:
        head = f"applied {pending} step(s):"
    out.emit(data, f"{head}\n\n{table}")
    return 1 if args.dry_run and pending else 0


def cmd_admin_copy(args, out: _Out) -> None:
    from keel import admin
    progress = None if out.as_json else sys.stderr.isatty()
    digest = admin.copy(args.src, args.dst, src_artifacts=args.src_artifacts, dst_artifacts=args.dst_artifacts,
                        progress=progress)
    rows = sum(t["rows"] for t in digest["tables"])
    data = {"src": args.src, "dst": args.dst, "tables": digest["tables"], "rows": rows,
            "objects": len(digest["objects"]), "object_bytes": digest["object_bytes"],
            "objects_sha256": digest["objects_sha256"]}
    out.emit(data, f"copied {args.src} -> {args.dst}: {len(digest['tables'])} tables, {rows:,} rows, "
                   f"{len(digest['objects'])} objects ({digest['object_bytes']:,} bytes); verified by digest\n\n" +
             _table(digest["tables"], ["table", "rows", "sha256"]))


def cmd_admin_gc(args, out: _Out) -> None:
    from keel import admin
    report = admin.gc(_open_workspace(args), older_than=args.older_than, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    text = (f"{report['objects']:,} objects ({report['bytes']:,} bytes): {report['named']:,} named by a row, "
            f"{verb} {len(report['swept']):,} orphans ({report['swept_bytes']:,} bytes), kept "
            f"{len(report['young']):,} younger than {args.older_than} ({report['young_bytes']:,} bytes)")
    if report["aborted_uploads"]:
        text += f"; {'would abort' if args.dry_run else 'aborted'} {len(report['aborted_uploads'])} unfinished " \
                "uploads"
    if report["staged"]:
        text += f"; {verb} {len(report['staged'])} staged files never committed"
    if report["swept"]:
        text += "\n\n" + _table(report["swept"], ["key", "size"])
    # --json: times as ISO 8601 like every command's (modified_at, started_at)
    data = {**report, "older_than": args.older_than,
            "swept": [_timed(e, "modified") for e in report["swept"]],
            "young": [_timed(e, "modified") for e in report["young"]],
            "aborted_uploads": [_timed(u, "started") for u in report["aborted_uploads"]],
            "staged": [_timed(e, "modified") for e in report["staged"]]}
    out.emit(data, text)


def _timed(entry: dict, name: str) -> dict:
    out = {k: v for k, v in entry.items() if k != f"{name}_ms"}
    out[f"{name}_at"] = entry[f"{name}_ms"] or None
    return out


# ----------------------------------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    # --workspace and --json are accepted before or after the subcommand.
    common = _Parser(add_help=False)
    common.add_argument("--workspace", "-w", default=argparse.SUPPRESS,
                        help="workspace directory or postgresql:// URL (default: $KEEL_WORKSPACE)")
    common.add_argument("--artifacts", default=argparse.SUPPRESS, metavar="URL",
                        help="where its artifacts live: s3://bucket/prefix, or a shared directory for a "
                             "postgresql:// workspace (default: $KEEL_ARTIFACTS, else what the workspace recorded)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")

    parser = _Parser(prog="keel", description="Keel: tracking, registry and lineage from the command line.",
                     parents=[common])
    from keel import __version__
    parser.add_argument("--version", action="version", version=f"keel {__version__}")
    groups = parser.add_subparsers(dest="group", parser_class=_Parser,
                                   metavar="{runs,models,lineage,plan,apply,serve,admin}")
    groups.required = True

    def leaf(sub, name: str, fn, help: str):
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    runs = groups.add_parser("runs", help="experiment runs").add_subparsers(
        dest="command", metavar="{list,show,artifacts,stale,close-stale}")
    runs.required = True
    p = leaf(runs, "list", cmd_runs_list, "search runs (newest first unless --order-by)")
    p.add_argument("--experiment", "-e")
    p.add_argument("--filter", "-f", help="e.g. \"metrics.auc > 0.8 and params.lr = '0.1'\"")
    p.add_argument("--order-by", action="append", help="e.g. 'metrics.auc DESC' (repeatable)")
    p.add_argument("--max-results", "-n", type=int)
    p = leaf(runs, "show", cmd_runs_show, "one run: params, latest metrics, tags")
    p.add_argument("run_id")
    p = leaf(runs, "artifacts", cmd_runs_artifacts, "a run's artifact files (path, size, sha256), or download them")
    p.add_argument("run_id")
    p.add_argument("--download", metavar="DEST", help="copy them into DEST, each verified against its sha256")
    p.add_argument("--path", help="only the artifacts under this path inside the run")
    for name, fn, help in (
            ("stale", cmd_runs_stale, "RUNNING runs whose process is gone (exited, killed, silent host)"),
            ("close-stale", cmd_runs_close_stale, "end stale runs KILLED (end time: their last sign of life)")):
        p = leaf(runs, name, fn, help)
        p.add_argument("--heartbeat-timeout", type=float, default=300, metavar="SECONDS",
                       help="a run on another host is stale after this long without a heartbeat (default 300)")
        if name == "close-stale":
            p.add_argument("--dry-run", action="store_true", help="only list the runs that would be closed")

    models = groups.add_parser("models", help="model registry").add_subparsers(
        dest="command", metavar="{list,show,versions,promote,delete-alias,events}")
    models.required = True
    leaf(models, "list", cmd_models_list, "registered models")
    p = leaf(models, "show", cmd_models_show, "a model with its versions, or one version (churn/3, churn@champion)")
    p.add_argument("ref")
    p = leaf(models, "versions", cmd_models_versions, "every version of a model")
    p.add_argument("name")
    p = leaf(models, "promote", cmd_models_promote, "point aliases at a version and/or move it to a stage")
    p.add_argument("name")
    p.add_argument("version", type=int)
    p.add_argument("--alias", "-a", action="append", help="alias to set or move, e.g. champion (repeatable)")
    p.add_argument("--stage", "-s", help="None, Staging, Production or Archived")
    p.add_argument("--archive-existing", action="store_true",
                   help="archive the versions already in that stage")
    p = leaf(models, "delete-alias", cmd_models_delete_alias, "remove an alias (recorded as an audit event)")
    p.add_argument("name")
    p.add_argument("alias")
    p = leaf(models, "events", cmd_models_events, "audit trail of alias moves and stage changes")
    p.add_argument("name", nargs="?")

    lineage = groups.add_parser("lineage", help="lineage graph").add_subparsers(
        dest="command", metavar="{upstream,downstream}")
    lineage.required = True
    for name, fn, help in (("upstream", cmd_lineage_upstream, "everything REF was made from"),
                           ("downstream", cmd_lineage_downstream, "everything made from REF")):
        p = leaf(lineage, name, fn, help)
        p.add_argument("ref", help="e.g. model:churn/3, model:churn@champion, run:<id>, feature_view:player_activity")
        p.add_argument("--depth", "-d", type=int, help="hops to follow (default: all)")
        p.add_argument("--as-of", help="read the graph as it stood then: ISO 8601 with a zone "
                                       "(2026-11-01T12:00:00Z, ...+01:00) or ms since the epoch")

    from keel.cli_defs import add_commands
    add_commands(groups, leaf)

    admin = groups.add_parser("admin", help="workspace administration").add_subparsers(
        dest="command", metavar="{migrate,copy,gc}")
    admin.required = True
    p = leaf(admin, "migrate", cmd_admin_migrate,
             "apply the workspace's pending schema migrations (one transaction per module)")
    p.add_argument("--dry-run", action="store_true",
                   help="only show each module's version and the steps pending; exit 1 when there are any")
    p = leaf(admin, "copy", cmd_admin_copy,
             "copy a whole workspace into a new one (directory or postgresql:// URL), verified by digest")
    p.add_argument("src", help="the workspace to copy: a directory or postgresql:// URL")
    p.add_argument("dst", help="a new or empty directory, or a postgresql:// URL with no tables")
    p.add_argument("--src-artifacts", metavar="URL", help="where SRC's artifacts live (default: what it recorded)")
    p.add_argument("--dst-artifacts", metavar="URL",
                   help="where DST's artifacts go: s3://bucket/prefix, or a directory (default: DST's directory; "
                        "a postgresql:// DST needs one)")

    p = leaf(admin, "gc", cmd_admin_gc,
             "delete objects no row names (what a crash between an upload and its row leaves)")
    p.add_argument("--older-than", default="1h", metavar="AGE",
                   help="only orphans last written longer ago than this, e.g. 1h, 30m, 2d (default 1h): an "
                        "upload whose row is still being written is never swept")
    p.add_argument("--dry-run", action="store_true", help="only report what would be deleted")

    p = groups.add_parser("serve", parents=[common], help="host saved endpoints over HTTP (the C++ keel-server)",
                          description="host saved endpoints over HTTP: POST /v1/endpoints/<name>/predict, "
                                      "POST /v1/features/online, /metrics (see the README, 'Serving over HTTP')")
    p.set_defaults(fn=cmd_serve)
    p.add_argument("endpoint", nargs="*", help="endpoints to host (default: every saved one)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", "-p", type=int, default=8080)
    p.add_argument("--token-file", help="file holding the bearer token clients must send "
                                        "(default: $KEEL_SERVE_TOKEN, else a random token printed at start)")
    p.add_argument("--config", help="keel-serve.toml: JWT keys, TLS, limits (flags given here win)")
    p.add_argument("--threads", type=int, help="server threads (default: one per core)")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve HTTPS (reloaded on SIGHUP)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    return parser


def _as_of(value: str | None) -> int | None:
    """--as-of as ms since the epoch: digits are ms already; a time must carry its zone (keel._time)."""
    if value is None:
        return None
    return to_epoch_ms(int(value) if value.isdigit() else value, "--as-of")


def cmd_serve(args, out: _Out) -> None:
    """Runs keel-server (the C++ server) as a child: signals are passed on, its exit code is ours.

    Without --token-file, $KEEL_SERVE_TOKEN or --config, a random token is made and announced, so
    nothing is served unauthenticated by default.
    """
    import signal
    import subprocess

    from keel import server
    token = os.environ.get("KEEL_SERVE_TOKEN") or None
    token_file = args.token_file
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError as err:
            raise errors.InvalidArgument(f"cannot read --token-file '{token_file}': {err.strerror}") from None
    generated = token is None and not args.config
    token_dir = None
    if generated:
        token = secrets.token_urlsafe(32)
    if token is not None and not token_file:
        token_dir, token_file = server._write_token(token)
    ws = _open_workspace(args)
    cmd = server.server_args(ws.location, args.endpoint, host=args.host, port=args.port, token_file=token_file,
                             config=args.config, threads=args.threads, tls_cert=args.tls_cert,
                             tls_key=args.tls_key, artifacts=getattr(args, "artifacts", None)) + ["--json"]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=server._server_env(None))
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda number, _frame: child.send_signal(number))
    try:
        announced = server._read_announcement(child)
        if announced is None:  # it failed to start: its error is ours (kind, message, exit code)
            _, stderr_text = child.communicate(timeout=30)
            raise server.error_from_stderr(stderr_text or "", child.returncode)
        threading.Thread(target=_relay, args=(child.stderr, sys.stderr), daemon=True).start()
        announced["token"] = token if generated else None
        if out.as_json:
            print(json.dumps(announced), flush=True)
        else:
            names = ", ".join(announced.get("endpoints") or []) or "every saved endpoint"
            print(f"keel serve: {names} on {announced['url']} (pid {announced.get('pid', child.pid)})", flush=True)
            if generated:
                print(f"keel serve: token {token} (send 'Authorization: Bearer <token>'; set $KEEL_SERVE_TOKEN "
                      "or --token-file to choose it)", flush=True)
        code = child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if token_dir:
            shutil.rmtree(token_dir, ignore_errors=True)
    if code != 0:
        raise SystemExit(code)


def _relay(source, sink) -> None:
    for line in source:
        sink.write(line)
        sink.flush()


def _fail(kind: str, message: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"error": kind, "message": message}), file=sys.stderr)
    else:
        print(f"error: {kind}: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``keel`` console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    as_json = "--json" in argv  # known before parsing, so a usage error is JSON too
    try:
        args = build_parser().parse_args(argv)
        as_json = getattr(args, "json", False)
        args.workspace = getattr(args, "workspace", None)
        out = _Out(getattr(args, "json", False))
        if hasattr(args, "as_of"):
            args.as_of = _as_of(args.as_of)
        return args.fn(args, out) or 0  # a command may exit non-zero without an error (keel plan: 1)
    except errors.KeelError as exc:
        _fail(type(exc).__name__, str(exc), as_json)
        return exc.exit_code
    except BrokenPipeError:  # `keel runs list | head`
        return 0
    except KeyboardInterrupt:
        if as_json:
            _fail("Interrupted", "interrupted (Ctrl-C)", True)
        return 130
    except Exception as exc:  # a bug: say so with the kind scripts expect, and keep the traceback on demand
        if os.environ.get("KEEL_DEBUG"):
            raise
        _fail("Internal", f"{type(exc).__name__}: {exc} (set KEEL_DEBUG=1 for the traceback)", as_json)
        return errors.Internal.exit_code


if __name__ == "__main__":
    sys.exit(main())
