"""Keel: the native core of an ML platform.

``keel.open(path)`` gives a workspace holding experiment tracking, a model registry, a feature store,
a lineage graph, native inference and Lua-routed endpoints, in one process.
"""

from keel.errors import (AlreadyExists, Conflict, Corrupt, Internal, InvalidArgument, KeelError,
                         NotFound, PermissionDenied, PluginError, Unavailable)
from keel.workspace import Workspace, open  # noqa: A004
from keel.inference import convert  # native inference: keel.convert(model)
from keel.autolog import autolog, autolog_flush  # keel.autolog(): a plain fit records a run
from keel.server import Server, serve  # keel.serve(ws): the native HTTP server in its own process
from keel import admin  # noqa: F401 - keel.admin.migrate(url), keel.admin.copy(src, dst)
from keel import defs  # definitions as code: keel.defs.plan(ws, "defs/"), keel.defs.apply(...)

# Feature store type markers: schema={"email": keel.String(pii=True), "emb": keel.Vector(64)}
from keel.features import Bool, Float32, Float64, Int32, Int64, String, Timestamp, Vector

__version__ = "0.1.0"

__all__ = ["open", "Workspace", "KeelError", "NotFound", "AlreadyExists", "InvalidArgument", "Conflict",
           "Corrupt", "PermissionDenied", "PluginError", "Internal", "Unavailable",
           "Bool", "Int32", "Int64", "Float32", "Float64", "String", "Timestamp", "Vector",
           "convert", "autolog", "autolog_flush", "serve", "Server", "defs"]
