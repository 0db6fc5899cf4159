"""Collecting definitions: from Python files and folders (``keel plan defs/``) or given objects.

Every ``*.py`` file under a folder is imported (sorted, files and folders starting with ``_`` or
``.`` skipped), with its folder on ``sys.path`` so that definition files may import each other
(``from entities import player``). Every module-level :class:`~keel.defs.objects.Definition` is
collected; the same object imported by several files counts once, and two different objects of one
kind and name are an error naming both lines.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from keel.defs.objects import Definition, Endpoint, Entity, FeatureView, TrainingSpec
from keel.errors import InvalidArgument, NotFound

# Applied in this order: what a definition refers to exists before it.
KINDS = (Entity, FeatureView, TrainingSpec, Endpoint)


@dataclass
class Definitions:
    """Declared objects by kind, each kind by name."""

    by_kind: dict[str, dict[str, Definition]] = field(default_factory=lambda: {k.kind: {} for k in KINDS})
    sources: list[str] = field(default_factory=list)  # the files read

    def add(self, d: Definition) -> None:
        known = self.by_kind[d.kind]
        other = known.get(d.name)
        if other is not None and other is not d:
            raise InvalidArgument(f"{d.kind.replace('_', ' ')} '{d.name}' is declared twice: at {other.source} "
                                  f"and at {d.source}; keep one")
        known[d.name] = d

    def of(self, kind: type[Definition]) -> list:
        return list(self.by_kind[kind.kind].values())

    def get(self, kind: str, name: str) -> Definition | None:
        return self.by_kind[kind].get(name)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_kind.values())


def _python_files(path: Path) -> list[Path]:
    if path.is_file():
        if path.suffix != ".py":
            raise InvalidArgument(f"'{path}' is not a Python file: give .py files or folders of them")
        return [path]
    if not path.is_dir():
        raise NotFound(f"definitions '{path}' do not exist: give a folder of .py files or a .py file")
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(("_", ".")))
        files += [Path(root) / n for n in sorted(names) if n.endswith(".py") and not n.startswith(("_", "."))]
    return files


def _import(file: Path, index: int) -> ModuleType:
    resolved = str(file.resolve())
    for module in list(sys.modules.values()):
        # Already imported by a sibling (`from entities import player`): the same objects, not a copy.
        loaded_from = getattr(module, "__file__", None)
        if loaded_from and str(Path(loaded_from).resolve()) == resolved:
            return module
    # Under its own name when free, so a sibling's `from players import activity` finds this module
    # instead of running the file a second time (which would declare every object twice).
    name = file.stem if file.stem not in sys.modules else f"keel_defs_{index}_{file.stem}"
    spec = importlib.util.spec_from_file_location(name, file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        # The user's file failed: show where in it, not where in Keel.
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(file)]
        line = f":{frames[-1].lineno}" if frames else ""
        raise InvalidArgument(f"{file}{line}: {type(exc).__name__}: {exc}") from exc
    return module


def _collect(value, into: Definitions) -> None:
    if isinstance(value, Definition):
        into.add(value)
    elif isinstance(value, ModuleType):
        for v in vars(value).values():
            if isinstance(v, Definition):
                into.add(v)
    elif isinstance(value, (str, os.PathLike)):
        for file in _python_files(Path(value)):
            into.sources.append(str(file))
            _collect(_import(file, len(into.sources)), into)
    elif isinstance(value, Iterable):
        for v in value:
            _collect(v, into)
    else:
        raise InvalidArgument(f"{value!r} is not a definition: give folders or .py files, keel.defs objects "
                              "or modules holding them")


def load(*sources) -> Definitions:
    """Definitions from folders or .py files, modules, keel.defs objects or lists of them."""
    if len(sources) == 1 and isinstance(sources[0], Definitions):
        return sources[0]
    out = Definitions()
    folders = [str((p if p.is_dir() else p.parent).resolve()) for p in map(Path, _paths(sources)) if p.exists()]
    modules_before = set(sys.modules)
    path_before = list(sys.path)
    sys.path[:0] = [f for f in dict.fromkeys(folders) if f not in sys.path]  # files import their siblings
    try:
        for s in sources:
            _collect(s, out)
    finally:
        sys.path[:] = path_before
        # Forget the definition files' modules, so that the next load reads files edited meanwhile.
        for name in set(sys.modules) - modules_before:
            file = getattr(sys.modules[name], "__file__", None)
            if file and any(str(Path(file).resolve()).startswith(f + os.sep) for f in folders):
                del sys.modules[name]
    return out


def _paths(sources) -> list:
    out: list = []
    for s in sources:
        if isinstance(s, (str, os.PathLike)):
            out.append(s)
        elif isinstance(s, (list, tuple)):
            out += _paths(s)
    return out
