"""The workspace: the one handle a notebook, a CI script or a server holds."""

from __future__ import annotations

import functools
import os
import weakref

from keel import _core

_last_opened: weakref.ref | None = None  # the workspace keel.autolog logs to outside a run


def last_opened() -> Workspace | None:
    """The workspace most recently opened in this process, while it is still alive."""
    return _last_opened() if _last_opened is not None else None


class Workspace:
    """A Keel workspace directory: ``keel.db`` (metadata), ``artifacts/`` and ``features/`` (or, for
    a team, its artifacts and feature files on S3: ``ws.artifacts_url``).

    Open it with :func:`keel.open`. Several processes may hold the same workspace at once.
    Each capability hangs off it: ``ws.runs``, ``ws.models``, ``ws.lineage``, ``ws.features`` ...
    """

    def __init__(self, path: str | os.PathLike, *, user: str | None = None, role: str | None = None,
                 artifacts: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                 cache_max_bytes: int | None = None):
        self._native = _core.Workspace(os.fspath(path), os.fspath(artifacts) if artifacts is not None else None,
                                       os.fspath(cache_dir) if cache_dir is not None else None, cache_max_bytes)
        if user:
            self._native.user = user
        if role:
            self._native.role = role
        global _last_opened
        _last_opened = weakref.ref(self)

    @property
    def native(self) -> _core.Workspace:
        """The ``keel._core.Workspace`` handle the other modules (runs, models, features, serving)
        open their C++ stores on."""
        return self._native

    @property
    def path(self) -> str:
        """The directory of the workspace's files (the workspace itself when it is a directory)."""
        return self._native.path

    @property
    def artifacts_url(self) -> str:
        """Where artifacts and feature files live: ``s3://bucket/prefix/``, or the workspace directory."""
        return self._native.artifacts_url

    @property
    def location(self) -> str:
        """What ``keel.open`` takes to open this workspace again (another process, another role): its
        directory, or its PostgreSQL URL (with the password, if the URL had one); the artifacts'
        location is recorded in the workspace."""
        return self._native.location

    @property
    def metadata(self) -> str:
        """Where the metadata lives: keel.db's path, or the PostgreSQL URL without its password."""
        return self._native.metadata

    def reopen(self, **kwargs) -> Workspace:
        """Another handle on the same workspace (its own connection and caches)."""
        return Workspace(self.location, **kwargs)

    @property
    def user(self) -> str:
        """Who is writing (recorded on runs, versions and audit events)."""
        return self._native.user

    @property
    def role(self) -> str:
        """The caller's role for access grants (PII columns); '' when none."""
        return self._native.role

    @role.setter
    def role(self, value: str) -> None:
        self._native.role = value

    # Each capability lives in its own module and is created on first use.
    @functools.cached_property
    def runs(self):
        from keel.tracking import Runs
        return Runs(self)

    @functools.cached_property
    def models(self):
        from keel.registry import Models
        return Models(self)

    @functools.cached_property
    def lineage(self):
        from keel.lineage import Lineage
        return Lineage(self)

    @functools.cached_property
    def features(self):
        from keel.features import FeatureStore
        return FeatureStore(self)

    @functools.cached_property
    def predictions(self):
        from keel.predictions import Predictions
        return Predictions(self)

    @functools.cached_property
    def access(self):
        from keel.features import Access
        return Access(self)

    def start_run(self, experiment: str = "Default", name: str | None = None, **kwargs):
        """Start a run; use as ``with ws.start_run(experiment="churn") as run: ...``."""
        return self.runs.start(experiment=experiment, name=name, **kwargs)

    def endpoint(self, name: str, **definition):
        """Open a saved endpoint by name, or define (a new revision of) one: ``model=`` (one model) or
        ``routing=`` and ``variants=``, ``features=`` ("view:column" or "view"), ``inputs=`` (request
        fields), ``on_missing=`` ("error", "default" with ``defaults=``, "flag"), ``signature=`` (input
        names for models fitted without them). Models are fed by name; see ``keel.serving``."""
        from keel.serving import open_endpoint
        return open_endpoint(self, name, **definition)

    def remove_endpoint(self, name: str) -> None:
        """Removes a saved endpoint: its revisions and prediction log stay as history, hosts answer
        its requests with NotFound (404 from keel-server), its lineage edges end. Defining it again
        with ``ws.endpoint(name, ...)`` brings it back as the next revision."""
        _core.EndpointStore(self._native).remove(name)

    # Artifacts: content-addressed, verified on every read.
    def put_artifact(self, data: bytes) -> str:
        return self._native.put_artifact_bytes(data)

    def get_artifact(self, digest: str) -> bytes:
        return self._native.get_artifact_bytes(digest)

    def __repr__(self) -> str:
        return f"<keel.Workspace {self.metadata if self.location != self.path else self.path!r}>"

    def _repr_html_(self) -> str:
        from keel.display import html_table
        return html_table([{"path": self.path, "metadata": self.metadata, "artifacts": self.artifacts_url,
                            "user": self.user, "role": self.role or "-"}], title="Keel workspace")


def is_database_url(location: str | os.PathLike) -> bool:
    """True for the workspace locations that are PostgreSQL URLs (postgresql://, postgres://)."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))


def open(path: str | os.PathLike, *, user: str | None = None, role: str | None = None,  # noqa: A001
         artifacts: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
         cache_max_bytes: int | None = None) -> Workspace:
    """Open (or create) the workspace at ``path``: a directory, or a team workspace's PostgreSQL URL
    (``postgresql://user@host:port/db``, ``?schema=NAME`` to keep it in a schema of its own).

    ``user`` overrides who is recorded as the writer (default: $KEEL_USER, then $USER);
    ``role`` is the caller's role for access grants on PII columns.

    ``artifacts="s3://bucket/prefix"`` keeps artifacts and feature files on S3 (any S3-compatible
    store; endpoint and credentials from the AWS variables: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_REGION), default $KEEL_ARTIFACTS (or the URL's ``artifacts=``). A
    PostgreSQL workspace may also keep them in a directory every machine shares. The location is
    recorded when the workspace is created and used by every later open (so a team needs only the
    URL); a different one is refused. Downloads are verified and kept in a read cache: ``cache_dir``
    (default $KEEL_CACHE_DIR, else ``<path>/cache``, or ``~/.cache/keel/`` for PostgreSQL) holding
    at most ``cache_max_bytes`` (default $KEEL_CACHE_MAX_BYTES, else 10 GiB).
    """
    return Workspace(path, user=user, role=role, artifacts=artifacts, cache_dir=cache_dir,
                     cache_max_bytes=cache_max_bytes)
