"""A walk-forward run folder in object storage (``--out s3://...``), worked on through a local copy.

The training writes its run folder on a local disk (torch, Parquet and matplotlib want files); when
the run's home is an ``s3://`` URI, :class:`RemoteRunFolder` mirrors it there:

* :meth:`~RemoteRunFolder.pull` before the run downloads what an earlier attempt left, so a retried
  task (a fresh container) resumes at the first unfinished fold, exactly as on a local folder;
* :meth:`~RemoteRunFolder.push_fold` after each finished fold uploads ``run.json`` and the fold's
  files with ``done.json`` last: an attempt killed during the upload leaves a fold without its
  ``done.json``, which the next attempt trains again instead of trusting half of it;
* :meth:`~RemoteRunFolder.push_run` at the end uploads the rest with ``summary.json`` last (the
  summary's paths rewritten to the remote URIs first), so a reader that finds ``summary.json``
  finds everything it names.

:func:`download_run` is the other direction, for whoever consumes a finished run (the MLflow
recording): the whole folder into a local directory.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gogooku3.config import S3Settings
from gogooku3.lake.storage import Storage
from gogooku3.redaction import library_logger

log = library_logger(__name__)

#: Written last in a fold folder and in the run folder: their presence means "complete".
FOLD_DONE = "done.json"
RUN_SUMMARY = "summary.json"
RUN_IDENTITY = "run.json"


def run_storage(uri: str, s3: S3Settings | None = None) -> tuple[Storage, str]:
    """``(storage, name)`` for the run folder ``uri``: the storage is rooted at the folder's parent
    and ``name`` is the folder's key prefix in it (a storage lists below a prefix, never its root)."""
    from gogooku3.lake import open_lake

    parent, _, name = uri.rstrip("/").rpartition("/")
    if not name or parent.lower() in ("s3:", "s3:/"):
        raise ValueError(f"run folder {uri!r}: expected s3://bucket/prefix/name, not a bucket's root")
    return open_lake(parent, s3).storage, name


@contextmanager
def working_folder(out: str, s3: S3Settings | None = None) -> Iterator[tuple[Path, RemoteRunFolder | None]]:
    """Where a run with home ``out`` writes: ``out`` itself for a local directory (no mirror); for
    an ``s3://`` URI a temporary directory, removed afterwards, and its :class:`RemoteRunFolder`."""
    from gogooku3.lake.uri import is_s3_uri

    if not is_s3_uri(out):
        yield Path(out), None
        return
    with tempfile.TemporaryDirectory(prefix="gogooku3-run-") as tmp:
        yield Path(tmp), RemoteRunFolder(out, Path(tmp), s3)


class RemoteRunFolder:
    """The run folder at ``uri`` (``s3://bucket/prefix``) mirrored from and to ``local``.

    Keys in :attr:`storage` are ``<name>/<path in the run folder>`` (see :func:`run_storage`).
    """

    def __init__(self, uri: str, local: Path, s3: S3Settings | None = None) -> None:
        self.uri = uri.rstrip("/")
        self.local = Path(local)
        self.storage, self.name = run_storage(self.uri, s3)

    def key(self, relative: str) -> str:
        """The storage key of ``relative`` (a ``/``-separated path in the run folder)."""
        return f"{self.name}/{relative}"

    def __repr__(self) -> str:
        return f"RemoteRunFolder({self.uri!r} <-> {str(self.local)!r})"

    def pull(self) -> list[str]:
        """Download every object of the run folder into ``local``; returns their keys. Nothing is
        downloaded for a new run."""
        relative = [k.removeprefix(f"{self.name}/") for k in self.storage.list(self.name)]
        for rel in relative:
            _write(self.local / rel, self.storage.get_bytes(self.key(rel)))
        if relative:
            log.info("run folder %s: %d file(s) of an earlier attempt downloaded", self.uri, len(relative))
        return relative

    def finished(self) -> bool:
        """Whether the run's ``summary.json`` (written last) is in the storage."""
        return self.storage.exists(self.key(RUN_SUMMARY))

    def _push(self, relative: list[str], last: str | None) -> None:
        ordered = [r for r in relative if r != last] + ([last] if last in relative else [])
        for rel in ordered:
            self.storage.put_bytes(self.key(rel), (self.local / rel).read_bytes())

    def push_fold(self, index: int) -> None:
        """Upload ``run.json`` and ``folds/fold_<index>/`` (its ``done.json`` last)."""
        folder = f"folds/fold_{index}"
        files = sorted(
            p.relative_to(self.local).as_posix() for p in (self.local / folder).rglob("*") if p.is_file()
        )
        if f"{folder}/{FOLD_DONE}" not in files:
            raise ValueError(f"{self.local / folder} has no {FOLD_DONE}: the fold is not finished")
        self._push([RUN_IDENTITY], None)
        self._push(files, f"{folder}/{FOLD_DONE}")
        log.info("run folder %s: fold %d uploaded (%d files)", self.uri, index, len(files))

    def push_run(self, summary: dict) -> dict:
        """Rewrite the summary's local paths to remote URIs, then upload every file outside
        ``folds/`` with ``summary.json`` last; returns the rewritten summary."""
        remote = relocate_summary(summary, self.local, self.uri)
        _write(self.local / RUN_SUMMARY, json.dumps(remote, indent=2, sort_keys=True).encode())
        files = sorted(
            p.relative_to(self.local).as_posix()
            for p in self.local.rglob("*")
            if p.is_file() and p.relative_to(self.local).parts[0] != "folds"
        )
        self._push(files, RUN_SUMMARY)
        log.info("run folder %s: %d file(s) uploaded, summary last", self.uri, len(files))
        return remote


def relocate_summary(summary: dict, local: Path, uri: str) -> dict:
    """``summary`` with the paths it names under ``local`` (``oos_predictions``, ``plots``) as URIs
    under ``uri``."""
    root = Path(local).resolve()

    def moved(path: str) -> str:
        p = Path(path).resolve()
        return f"{uri.rstrip('/')}/{p.relative_to(root).as_posix()}" if p.is_relative_to(root) else path

    out = dict(summary)
    out["oos_predictions"] = moved(summary["oos_predictions"])
    out["plots"] = [moved(p) for p in summary.get("plots", [])]
    return out


def download_run(uri: str, dest: Path, s3: S3Settings | None = None) -> Path:
    """Download the finished run folder at ``uri`` into ``dest``; refuses a run whose
    ``summary.json`` is not there (unfinished, or not a run folder), naming the URI."""
    remote = RemoteRunFolder(uri, dest, s3)
    if not remote.finished():
        raise FileNotFoundError(f"{remote.uri}/{RUN_SUMMARY} does not exist: the run is not finished")
    remote.pull()
    return Path(dest)


def _write(path: Path, data: bytes) -> None:
    from gogooku3.training.walkforward import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
