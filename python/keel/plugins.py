"""Lua plugins: A/B routing (weights, sticky users, tenants, shadows) and data-quality rules.

Plugins are Lua 5.4 files run by Keel's C++ core in a sandbox (no ``io``, no ``os`` but time, no
loading of bytecode, ``require`` only under ``plugins/``) with an instruction budget per call (work
inside library functions is charged to it), a memory cap per state, a per-string limit and a time
limit per call (see :func:`limits`). A limit hit ends the call whatever the plugin's pcall/xpcall do;
no call holds the GIL. Built-ins live in ``plugins/routing/`` and ``plugins/quality/``.

>>> r = keel.plugins.Router("plugins/routing/sticky.lua", {"champion": 0.9, "challenger": 0.1},
...                         config={"key": "player_id"}, name="churn")
>>> r.route({"player_id": 42}).variant
'champion'
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from keel import _core


def _builtin_root() -> Path:
    """The folder holding Keel's built-in plugins/: inside the installed package (a wheel ships them
    under keel/builtin/), else the source checkout this package sits in."""
    here = Path(__file__).resolve().parent
    installed = here / "builtin"
    return installed if (installed / "plugins").is_dir() else here.parents[1]


#: Searched after the cwd, so ``plugins/routing/sticky.lua`` always finds the built-in.
BUILTIN_ROOT = _builtin_root()


_search_path_lock = threading.Lock()
_search_path_set = False  # whether the core's search path holds the built-ins (or the user's roots)


def ensure_search_path() -> None:
    """Puts the built-in plugins' folder on the core's plugin search path, once, before the first
    plugin ref is resolved (not on import: importing keel changes no process-wide state). Every
    function here that reaches a plugin calls it; so does the rest of Keel before the core runs a
    plugin by ref. A search path set with :func:`set_search_path` is kept."""
    global _search_path_set
    if _search_path_set:
        return
    with _search_path_lock:
        if not _search_path_set:
            _core.plugins_set_search_path([str(BUILTIN_ROOT)] if (BUILTIN_ROOT / "plugins").is_dir() else [])
            _search_path_set = True


def set_search_path(roots: Iterable[str | os.PathLike]) -> None:
    """Folders where plugin refs like ``plugins/routing/sticky.lua`` are looked up (after the cwd).

    Keel's own checkout stays last so the built-ins are always found.
    """
    global _search_path_set
    paths = [os.fspath(r) for r in roots]
    if (BUILTIN_ROOT / "plugins").is_dir():
        paths.append(str(BUILTIN_ROOT))
    with _search_path_lock:
        _core.plugins_set_search_path(paths)
        _search_path_set = True


def search_path() -> list[str]:
    ensure_search_path()
    return [str(p) for p in _core.plugins_search_path()]


def resolve(plugin: str | os.PathLike) -> str:
    """The file a plugin ref names (NotFound says where it looked)."""
    ensure_search_path()
    return str(_core.plugins_resolve(os.fspath(plugin)))


def bucket(key: Any, salt: str = "") -> float:
    """Stable hash of ``key`` (int or str; 42 and "42" agree) with ``salt`` into [0, 1).

    The same function ``ctx.bucket`` gives Lua plugins: equal in every process and on every platform.
    """
    return _core.plugins_bucket(key, salt)


def limits() -> dict:
    """This thread's plugin host limits: instruction budgets per call and per load, memory cap,
    per-string limit, time limit per call (ms), reload check interval."""
    return _core.plugins_limits()


def set_limits(**limits: int) -> None:
    """Change this thread's host limits: call_instructions, load_instructions, memory_bytes,
    string_bytes, call_ms, reload_check_ms (all positive integers; reload_check_ms may be 0). The
    core refuses a name it has no limit of, listing the known ones."""
    from keel.errors import InvalidArgument
    for name, value in limits.items():
        least = 0 if name == "reload_check_ms" else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise InvalidArgument(f"plugin limit {name}={value!r}: expected an integer >= {least}")
    _core.plugins_set_limits(limits)


def call(plugin: str | os.PathLike, entry: str, *args: Any) -> Any:
    """Call ``entry(*args)`` of a plugin in the sandbox; results come back as Python data."""
    ensure_search_path()
    return _core.plugins_call(os.fspath(plugin), entry, list(args))


def eval_file(path: str | os.PathLike) -> Any:
    """Run a Lua file in the sandbox and return what it returns, as data (test tables, configs)."""
    ensure_search_path()
    return _core.plugins_eval_file(os.fspath(path))


def status(plugin: str | os.PathLike) -> dict:
    """Version of a loaded plugin in this thread's host, and why its last reload was refused."""
    ensure_search_path()
    return _core.plugins_status(os.fspath(plugin))


def schema(plugin: str | os.PathLike, entry: str) -> dict | None:
    """The plugin's declared arguments: ``schema = {column = {type = "column", required = true,
    doc = "..."}, ...}`` at the top of the Lua file (None when it declares none). Fields: type
    (string, number, integer, boolean, list, map, any; for quality rules column, columns, pattern),
    required, doc, min and max (numbers), choices (a list of allowed values)."""
    ensure_search_path()
    s = _core.plugins_schema(os.fspath(plugin), entry)
    return s or None


def validate(plugin: str | os.PathLike, entry: str, args: Mapping[str, Any]) -> None:
    """Check arguments against the plugin's schema before any plugin code runs: unknown names,
    missing required ones, wrong types, values out of range or not among the choices are
    InvalidArgument naming the argument. The C++ host runs the same check itself (routers when
    built, quality rules when added or run); this is for checking a config ahead of time."""
    ensure_search_path()
    _core.plugins_check_arguments(os.fspath(plugin), entry, dict(args))


def needs(plugin: str | os.PathLike, entry: str) -> list[str]:
    """What the plugin declares it needs from its host (``needs = {"reference_profile"}``)."""
    ensure_search_path()
    return list(_core.plugins_needs(os.fspath(plugin), entry))


class Decision(NamedTuple):
    """A routing decision: the variant served, the shadow variants, and the fallback reason
    ('' when the plugin decided; 'error', 'unknown_variant', 'budget' or 'memory' otherwise)."""
    variant: str
    shadows: list
    fallback: str


def _variants(variants: Mapping[str, float] | Sequence) -> list[tuple[str, float]]:
    items: list[Sequence[Any]]
    if isinstance(variants, Mapping):
        items = list(variants.items())
    else:
        items = [v if isinstance(v, (tuple, list)) else (v, 1.0) for v in variants]
    out = []
    for name, weight in items:
        if isinstance(weight, (tuple, list)):  # endpoint style: name -> (model_ref, weight)
            weight = weight[1]
        out.append((str(name), float(weight)))
    return out


class Router:
    """Runs a routing plugin's ``route(req, ctx)`` in C++.

    ``variants`` maps names to weights (``{"champion": 0.9, "challenger": 0.1}``); ``default`` is the
    variant served when the plugin fails (the first listed unless named); ``config`` is ``ctx.config``
    (e.g. ``key``, ``salt``, ``tenants``, ``shadow``, ``avoid_data_issues``); ``name`` is
    ``ctx.endpoint`` and the default hashing salt.
    """

    def __init__(self, plugin: str | os.PathLike, variants, *, default: str | None = None,
                 config: Mapping | None = None, name: str = "", issues: Iterable[str] = ()):
        config = dict(config or {})  # checked against the plugin's schema by the C++ router
        self._key = str(config.get("key") or "user_id")
        ensure_search_path()
        self._native = _core.Router(os.fspath(plugin), _variants(variants), default or "", config,
                                    name, list(issues))

    @classmethod
    def wrap(cls, native: _core.Router) -> Router:
        """The Router over a ``keel._core.Router`` built elsewhere (an endpoint's: its counters and
        weights are the endpoint's)."""
        router = cls.__new__(cls)
        router._key = "user_id"
        router._native = native
        return router

    def route(self, request: Mapping) -> Decision:
        """Route one request dict (``{"player_id": 42, "tenant": "studio-a"}``)."""
        return Decision(*self._native.route(dict(request)))

    def route_many(self, requests) -> list[Decision]:
        """Route many requests (a list of dicts or a DataFrame) in one call."""
        if hasattr(requests, "to_dict") and hasattr(requests, "columns"):
            requests = requests.to_dict("records")
        return [Decision(*d) for d in self._native.route_many([dict(r) for r in requests])]

    def set_weights(self, weights: Mapping[str, float]) -> None:
        """Change the split live; unknown variants and negative weights are refused."""
        self._native.set_weights([(str(k), float(v)) for k, v in weights.items()])

    def set_issues(self, variants: Iterable[str]) -> None:
        """Variants fed by a feature view with an open data issue (``ctx.issues``)."""
        self._native.set_issues(list(variants))

    @property
    def native(self) -> _core.Router:
        """The ``keel._core.Router`` this wraps: what an endpoint's request path runs."""
        return self._native

    @property
    def variants(self) -> dict[str, float]:
        return dict(self._native.variants)

    @property
    def default(self) -> str:
        return self._native.default

    def stats(self) -> dict:
        """Decisions, fallbacks by reason, decisions served per variant, the last error, and the
        plugin's version in this thread's host with why its last reload was refused (if it was)."""
        s = self._native.stats()
        try:
            st = status(self._native.plugin)
            s.update(plugin_version=st["version"], reloads_refused=st["reloads_refused"], reload_error=st["last_error"])
        except Exception:  # noqa: BLE001 - not loaded in this thread yet
            s.update(plugin_version=0, reloads_refused=0, reload_error="")
        return s

    def __repr__(self) -> str:
        return f"<keel.plugins.Router {self._native.plugin!r} {self.variants}>"

    def _repr_html_(self) -> str:
        from keel.display import html_table
        s = self.stats()
        rows = [{"variant": name, "weight": w, "served": s["served"].get(name, 0),
                 "default": "yes" if name == self.default else ""} for name, w in self.variants.items()]
        return html_table(rows, title=f"Router {self._native.plugin} — {s['decisions']} decisions, "
                                      f"{s['fallbacks']} fallbacks")
