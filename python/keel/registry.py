"""The model registry: named models, numbered versions, aliases, stages and an audit trail.

``ws.models`` is the entry point. A version is an artifact (verified on every read) with where it came
from: the run that produced it, its flavour and its input signature. Refs name versions everywhere —
in Python, the CLI and the serving core: ``"churn/3"`` (version 3), ``"churn@champion"`` (the version
the alias points at) and plain ``"churn"`` (the latest version).

    mv = run.log_model(model, name="churn", input_example=X[:5])
    ws.models.set_alias("churn", "champion", version=mv.version)
    model = ws.models.load("churn@champion")
"""

from __future__ import annotations

import functools
import json
import pickle
import re
from collections.abc import Mapping, Sequence
from typing import Any

from keel import _core
from keel.display import format_ms, html_table
from keel.errors import InvalidArgument

#: Flavour of a model stored as a pickled Python object.
PYTHON_FLAVOUR = "python"
#: Flavour of a model converted to Keel's native inference format.
NATIVE_FLAVOUR = "keel-native"

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


def _str_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    return {str(k): str(v) for k, v in (tags or {}).items()}


def _frame(rows: list[dict], columns: Sequence[str], time_columns: tuple[str, ...] = ("created_at",)):
    import pandas as pd
    frame = pd.DataFrame(rows, columns=columns)
    for col in time_columns:
        if col in frame:
            frame[col] = pd.to_datetime(frame[col], unit="ms", utc=True)
    return frame


class ModelVersion(_core.ModelVersionRecord):
    """One immutable version of a registered model (``ws.models.get("churn/3")``).

    Its fields (name, version, run_id, digest, flavour, description, tags, created_at in ms since
    the epoch, created_by, stage, aliases, ref, lineage_ref) are the core's record, read-only."""

    def __init__(self, models: Models | None, record: _core.ModelVersionRecord):
        super().__init__(record)
        self._models = models

    @functools.cached_property
    def signature(self) -> dict | None:
        """The input signature (``{"inputs": [{"name": ..., "dtype": ...}, ...]}``), None when unknown."""
        return json.loads(self.signature_json) if self.signature_json else None

    @property
    def feature_names(self) -> list[str] | None:
        """Input column names from the signature, when known."""
        if not self.signature or not self.signature.get("inputs"):
            return None
        return [col["name"] for col in self.signature["inputs"]]

    @property
    def run(self):
        """The tracking run that produced this version (None when registered without one)."""
        if self.run_id is None or self._models is None:
            return None
        return self._models.workspace.runs.get(self.run_id)

    def load(self):
        """The model itself (see :meth:`Models.load`)."""
        if self._models is None:
            raise InvalidArgument(f"model version '{self.ref}' is detached from a workspace: use ws.models.load")
        return self._models.load(self.ref)

    def to_dict(self) -> dict:
        """Plain JSON-friendly metadata (times as ISO strings)."""
        return {"name": self.name, "version": self.version, "ref": self.ref, "stage": self.stage,
                "aliases": list(self.aliases), "run_id": self.run_id, "flavour": self.flavour, "digest": self.digest,
                "signature": self.signature, "description": self.description, "tags": dict(self.tags),
                "created_at": format_ms(self.created_at), "created_by": self.created_by}

    def display_row(self) -> dict:
        """One row of a listing table (the CLI's and the notebook's)."""
        return {"name": self.name, "version": self.version, "stage": self.stage, "aliases": ", ".join(self.aliases),
                "run_id": self.run_id, "flavour": self.flavour, "digest": self.digest[:12],
                "description": self.description, "created_at": format_ms(self.created_at),
                "created_by": self.created_by}

    def __eq__(self, other) -> bool:
        return isinstance(other, ModelVersion) and (self.name, self.version) == (other.name, other.version)

    def __hash__(self) -> int:
        return hash((self.name, self.version))

    def __repr__(self) -> str:
        aliases = f" @{',@'.join(self.aliases)}" if self.aliases else ""
        return f"<ModelVersion {self.ref}{aliases} stage={self.stage} flavour={self.flavour} run={self.run_id}>"

    def _repr_html_(self) -> str:
        rows = [{"field": k, "value": v} for k, v in dict(self.display_row(), digest=self.digest).items()]
        if self.feature_names:
            rows.append({"field": "inputs", "value": ", ".join(self.feature_names)})
        rows.extend({"field": f"tags.{k}", "value": v} for k, v in self.tags.items())
        return html_table(rows, title=f"Model version {self.ref}")


class ModelVersionList(list):
    """Model versions, oldest first; ``.to_pandas()`` gives one row a version."""

    _columns = ("name", "version", "stage", "aliases", "run_id", "flavour", "digest", "description", "created_at",
                "created_by")

    def to_pandas(self):
        rows = [dict(v.display_row(), digest=v.digest, created_at=v.created_at) for v in self]
        return _frame(rows, self._columns)

    def _repr_html_(self) -> str:
        return html_table([v.display_row() for v in self], title=f"{len(self)} model versions")


class RegisteredModel(_core.RegisteredModelRecord):
    """A registered model: the name its versions are filed under (``ws.models.model("churn")``).

    Its fields (name, description, owner, tags, created_at in ms since the epoch, created_by,
    latest_version, aliases: alias -> version) are the core's record, read-only."""

    def __init__(self, models: Models, record: _core.RegisteredModelRecord):
        super().__init__(record)
        self._models = models

    def versions(self) -> ModelVersionList:
        return self._models.versions(self.name)

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "owner": self.owner, "tags": dict(self.tags),
                "latest_version": self.latest_version, "aliases": dict(self.aliases),
                "created_at": format_ms(self.created_at), "created_by": self.created_by}

    def display_row(self) -> dict:
        """One row of a listing table (the CLI's and the notebook's)."""
        return {"name": self.name, "latest_version": self.latest_version,
                "aliases": ", ".join(f"{a}={v}" for a, v in sorted(self.aliases.items())), "owner": self.owner,
                "description": self.description, "created_at": format_ms(self.created_at)}

    def __repr__(self) -> str:
        return f"<RegisteredModel {self.name!r} latest={self.latest_version} aliases={self.aliases}>"

    def _repr_html_(self) -> str:
        return html_table([self.display_row()], title=f"Registered model {self.name}")


class ModelList(list):
    """Registered models by name; ``.to_pandas()`` gives one row a model."""

    def to_pandas(self):
        rows = [dict(m.display_row(), created_at=m.created_at) for m in self]
        return _frame(rows, ["name", "latest_version", "aliases", "owner", "description", "created_at"])

    def _repr_html_(self) -> str:
        return html_table([m.display_row() for m in self], title=f"{len(self)} registered models")


# ------------------------------------------------------------------------------------- signatures

def _dtype_name(dtype) -> str:
    return str(dtype)


def infer_signature(model=None, input_example=None) -> dict | None:
    """An input signature ``{"inputs": [{"name", "dtype"}...]}`` from a pandas/numpy example, else the
    model's ``feature_names_in_`` / ``n_features_in_`` (scikit-learn); classes when the model has them.
    None when nothing is known."""
    inputs: list[dict[str, str | None]] | None = None
    if input_example is not None:
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover - pandas is a dependency
            pd = None
        if pd is not None and isinstance(input_example, pd.DataFrame):
            inputs = [{"name": str(c), "dtype": _dtype_name(t)} for c, t in input_example.dtypes.items()]
        elif pd is not None and isinstance(input_example, pd.Series):
            inputs = [{"name": str(input_example.name or "x"), "dtype": _dtype_name(input_example.dtype)}]
        else:
            import numpy as np
            arr = np.asarray(input_example)
            if arr.ndim == 1:
                arr = arr.reshape(1, -1)
            if arr.ndim != 2:
                raise InvalidArgument(f"input_example has shape {arr.shape}: pass a DataFrame or a 2-D array")
            names = getattr(model, "feature_names_in_", None)
            names = [str(n) for n in names] if names is not None and len(names) == arr.shape[1] else \
                [f"x{i}" for i in range(arr.shape[1])]
            inputs = [{"name": n, "dtype": _dtype_name(arr.dtype)} for n in names]
    elif getattr(model, "feature_names_in_", None) is not None:
        inputs = [{"name": str(n), "dtype": None} for n in model.feature_names_in_]
    elif getattr(model, "n_features_in_", None) is not None:
        inputs = [{"name": f"x{i}", "dtype": None} for i in range(int(model.n_features_in_))]
    if inputs is None:
        return None
    signature: dict[str, Any] = {"inputs": inputs}
    classes = getattr(model, "classes_", None)
    if classes is not None:
        try:
            signature["classes"] = [c.item() if hasattr(c, "item") else c for c in classes]
            json.dumps(signature["classes"])
        except (TypeError, ValueError):
            signature.pop("classes", None)
    return signature


def _inference():
    """keel.inference when it is there (the native engine), else None."""
    import importlib
    try:  # through sys.modules, so tests can stand in for the engine even once keel.inference is imported
        inference = importlib.import_module("keel.inference")
    except ModuleNotFoundError as exc:
        if exc.name == "keel.inference":
            return None
        raise
    return inference


def _native_flavour(obj):
    """("keel-native", bytes, signature) from keel.inference when it can convert obj, else None."""
    convert = getattr(_inference(), "native_flavour", None)
    return convert(obj) if convert is not None else None


def _serialize(obj) -> tuple[str, bytes, dict | None]:
    native = _native_flavour(obj)
    if native is not None:
        flavour, data, signature = native
        return flavour, bytes(data), signature
    try:
        return PYTHON_FLAVOUR, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), None
    except Exception as exc:  # pickling failures come in many types
        raise InvalidArgument(f"model of type {type(obj).__name__} cannot be stored: it is not picklable ({exc})") \
            from exc


def _deserialize(version: ModelVersion, data: bytes):
    if version.flavour == PYTHON_FLAVOUR:
        return pickle.loads(data)
    load_predictor = getattr(_inference(), "load_predictor", None)
    if load_predictor is not None:
        return load_predictor(data)
    raise InvalidArgument(f"model version '{version.ref}' has flavour '{version.flavour}', which this Keel cannot "
                          "load: install a Keel with keel.inference")


# ------------------------------------------------------------------------------------------ Models

class Models:
    """``ws.models``: register, find, load and promote model versions."""

    def __init__(self, workspace):
        self._ws = workspace
        self._reg = _core.Registry(workspace.native)

    @property
    def workspace(self):
        """The workspace these models live in."""
        return self._ws

    @property
    def native(self) -> _core.Registry:
        """The ``keel._core.Registry`` behind ``ws.models`` (lineage resolves model aliases with it)."""
        return self._reg

    # registered models
    def create(self, name: str, description: str | None = None, owner: str | None = None,
               tags: Mapping[str, Any] | None = None) -> RegisteredModel:
        """A new registered model (AlreadyExists when the name is taken). Versions create it implicitly."""
        return RegisteredModel(self, self._reg.create_model(name, description, owner, _str_tags(tags)))

    def update(self, name: str, description: str | None = None, owner: str | None = None,
               tags: Mapping[str, Any] | None = None) -> RegisteredModel:
        """Change a model's description or owner, or add tags."""
        return RegisteredModel(self, self._reg.update_model(name, description, owner, _str_tags(tags)))

    def model(self, name: str) -> RegisteredModel:
        """The registered model ``name`` (NotFound when missing)."""
        return RegisteredModel(self, self._reg.model(name))

    def list(self) -> ModelList:
        """Every registered model, by name."""
        return ModelList(RegisteredModel(self, m) for m in self._reg.models())

    def __contains__(self, name: str) -> bool:
        return any(m.name == name for m in self._reg.models())

    # versions
    def versions(self, name: str) -> ModelVersionList:
        """Every version of ``name``, oldest first."""
        return ModelVersionList(ModelVersion(self, v) for v in self._reg.versions(name))

    def get(self, ref: str) -> ModelVersion:
        """The version ``ref`` names: ``churn/3``, ``churn@champion`` or ``churn`` (latest)."""
        return ModelVersion(self, self._reg.resolve(str(ref)))

    def load(self, ref: str):
        """The model of the version ``ref`` names, from its verified artifact (Corrupt when tampered with):
        the original object for flavour ``python``, a native predictor for ``keel-native``."""
        version = self.get(ref)
        return _deserialize(version, self._ws.get_artifact(version.digest))

    def register(self, name: str, artifact: bytes | str, run_id: str | None = None, *, flavour: str = PYTHON_FLAVOUR,
                 signature: Mapping | None = None, description: str | None = None,
                 tags: Mapping[str, Any] | None = None) -> ModelVersion:
        """Low level: file a new version of ``name`` for an artifact (bytes to store, or the digest of a
        stored one). Most code calls ``run.log_model`` instead."""
        if isinstance(artifact, (bytes, bytearray, memoryview)):
            digest = self._ws.put_artifact(bytes(artifact))
        elif isinstance(artifact, str) and _DIGEST.match(artifact):
            digest = artifact
        else:
            raise InvalidArgument(f"artifact for model '{name}' must be bytes or a 64-hex sha256 digest, "
                                  f"not {type(artifact).__name__} {str(artifact)[:40]!r}")
        sig = json.dumps(dict(signature), sort_keys=True) if signature else ""
        return ModelVersion(self, self._reg.register_version(name, digest, run_id or "", flavour, sig,
                                                             description or "", _str_tags(tags)))

    def log_model(self, run, obj, name: str, signature: Mapping | None = None, description: str | None = None,
                  tags: Mapping[str, Any] | None = None, input_example=None) -> ModelVersion:
        """Store ``obj`` as an artifact (a native flavour when keel.inference can convert it, else pickled)
        and register it as a new version of ``name`` with ``run`` (or None) as its source."""
        flavour, data, native_signature = _serialize(obj)
        if signature is None:
            # the engine's view (task, kind, dtypes) refined by what the example or the model says
            signature = {**(native_signature or {}), **(infer_signature(obj, input_example) or {})} or None
        run_id = _run_id(run)
        return self.register(name, data, run_id=run_id, flavour=flavour, signature=signature,
                             description=description, tags=tags)

    # aliases and stages
    def set_alias(self, name: str, alias: str, version: int) -> ModelVersion:
        """Point ``alias`` at ``version`` (create or move it, atomically); the move is an audit event.
        Conflict when an endpoint serving ``name@alias`` could not feed that version's inputs."""
        # Through serving, which sits above the registry: it vets the move for the endpoints it serves.
        return ModelVersion(self, _core.move_alias(self._ws._native, self._reg, name, alias, int(version)))

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove an alias (NotFound when it does not exist); recorded as an audit event."""
        self._reg.delete_alias(name, alias)

    def transition_stage(self, name: str, version: int, stage: str, archive_existing: bool = False) -> ModelVersion:
        """Move a version to None, Staging, Production or Archived. ``archive_existing`` archives the
        versions already in that stage (Staging or Production). Each change is an audit event."""
        return ModelVersion(self, self._reg.transition_stage(name, int(version), str(stage), bool(archive_existing)))

    def events(self, name: str | None = None):
        """Audit trail of alias moves and stage changes (one model, or all), oldest first, as a DataFrame:
        at, model, action (alias|stage), subject (alias name or version), from, to, user."""
        rows = self._reg.events(name or "")
        return _frame(rows, ["at", "model", "action", "subject", "from", "to", "user"], time_columns=("at",))

    def __repr__(self) -> str:
        return f"<keel.Models in {self._ws.path!r}>"

    def _repr_html_(self) -> str:
        return self.list()._repr_html_()


def _run_id(run) -> str | None:
    if run is None or isinstance(run, str):
        return run
    run_id = getattr(run, "id", None)
    if not isinstance(run_id, str):
        raise InvalidArgument(f"run {run!r} has no string id: pass a run, a run id or None")
    return run_id


def _workspace_of(run):
    for attr in ("workspace", "ws"):  # keel.tracking.Run.workspace, or a run-like object's
        ws = getattr(run, attr, None)
        if ws is not None and hasattr(ws, "models"):
            return ws
    raise InvalidArgument(f"cannot tell which workspace run {getattr(run, 'id', run)!r} belongs to: "
                          "call ws.models.log_model(run, obj, name=...) instead")


def log_model(run, obj, name: str, *, workspace=None, **kwargs) -> ModelVersion:
    """What ``run.log_model(obj, name=...)`` calls: store and register ``obj`` with ``run`` as its source.
    Keyword arguments as for :meth:`Models.log_model` (signature, description, tags, input_example)."""
    ws = workspace if workspace is not None else _workspace_of(run)
    return ws.models.log_model(run, obj, name=name, **kwargs)


__all__ = ["Models", "ModelVersion", "ModelVersionList", "RegisteredModel", "ModelList", "log_model",
           "infer_signature", "PYTHON_FLAVOUR", "NATIVE_FLAVOUR"]
