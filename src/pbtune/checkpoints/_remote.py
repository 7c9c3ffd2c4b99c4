"""Checkpoints in an object store or any fsspec file system (``s3://``, ``gs://``, ...).

A commit uploads every file of the local staging directory under the trial's own prefix,
then writes a manifest (names, sizes, sha256) last. Only then does tell record the URL in
the database: that row is the commit point, so a child, which only reads parents of
COMPLETE trials, never sees a partial upload. A worker killed mid-upload leaves an
unreferenced prefix that the end-of-run sweep deletes. A child downloads its parent into a
per-process cache and checks every file against the manifest before training starts.

fsspec is imported here only, so the core works without it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import posixpath
import shutil
import stat
import tempfile
import uuid
import weakref
from collections.abc import Iterator, Set
from pathlib import Path
from typing import Any

from pbtune._errors import CheckpointError, CheckpointGoneError, ConfigError
from pbtune.checkpoints import _local as checkpoints
from pbtune.checkpoints._location import Location
from pbtune.checkpoints._store import CheckpointExistsError, CheckpointStore

_log = logging.getLogger("pbtune.checkpoints")

MANIFEST = "_pbtune_manifest.json"
_PROBE = ".pbtune-probe-"
_CACHE_SIZE = 4  # parents kept downloaded per process; a worker runs one trial at a time
_INSTALL = "pip install 'pbtune[remote]'"


def normalize_url(url: str) -> str:
    """``url`` without a trailing "/"; ConfigError if it names no bucket or folder."""
    scheme, _, rest = url.partition("://")
    if not rest.strip("/"):
        raise ConfigError(
            f"checkpoint_root {url!r} names no bucket or folder; pass e.g. "
            f"'{scheme}://bucket/prefix'"
        )
    return f"{scheme}://{rest.rstrip('/')}"


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec file system of ``url`` and the path on it; ConfigError if unusable."""
    try:
        import fsspec
        import fsspec.core
    except ImportError:
        raise ConfigError(
            f"checkpoint_root {url!r} is a URL, and remote checkpoints need fsspec: {_INSTALL}"
        ) from None
    protocol = url.partition("://")[0]
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise ConfigError(
            f"checkpoint_root {url!r}: fsspec knows no protocol {protocol!r}; use a local "
            "path or a URL such as s3://bucket/prefix, gs://bucket/prefix, file:///abs/path"
        ) from None
    except ImportError as error:
        raise ConfigError(
            f"checkpoint_root {url!r}: the package for {protocol}:// is missing ({error}); "
            f"{_INSTALL} installs s3fs; other protocols need their fsspec package"
        ) from None
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except Exception as error:
        raise ConfigError(f"checkpoint_root {url!r} cannot be opened: {error}") from None
    return fs, str(path).rstrip("/")


def check_url(url: str) -> None:
    """Write and delete a small probe object under ``url``: CheckpointError if that fails."""
    fs, path = filesystem(url)
    probe = f"{path}/{_PROBE}{uuid.uuid4().hex}"
    try:
        _make_parent(fs, probe)
        fs.pipe_file(probe, b"pbtune checks that checkpoints can be written here\n")
        fs.rm_file(probe)
    except Exception as error:
        raise CheckpointError(
            f"checkpoint_root {url!r} cannot be written: {type(error).__name__}: {error}; "
            "check that the bucket exists and that the credentials (e.g. AWS_* environment "
            "variables) allow writing and deleting objects there"
        ) from None


class RemoteStore(CheckpointStore):
    """Checkpoints under ``root/study_dir_name/trial-NNNNNN/`` on an fsspec file system."""

    location: str

    def __init__(self, root: str, study_dir_name: str) -> None:
        self.location = f"{root}/{study_dir_name}"
        self._fs_path: tuple[Any, str] | None = None  # made when first needed
        self._scratch: Path | None = None
        self._cached: list[Path] = []

    # -- writing -----------------------------------------------------------------------------
    def stage(self, number: int, claim: str) -> Path:
        return checkpoints.make_staging_dir(self._local("staging"), number, claim)

    def final(self, number: int) -> str:
        return f"{self.location}/{checkpoints.final_dir(Path(), number).name}"

    def commit(self, staging: Path, number: int) -> str:
        fs, _ = self._fs()
        final = self.final(number)
        prefix = self._path_of(final)
        if fs.exists(f"{prefix}/{MANIFEST}"):
            raise CheckpointExistsError(
                f"checkpoint {final!r} exists already; refusing to replace it"
            )
        entries = []
        for name, local in _files(staging):
            if name == MANIFEST:
                raise CheckpointError(f"a checkpoint may not hold a file named {MANIFEST!r}")
            size, digest = _digest(local)
            _make_parent(fs, f"{prefix}/{name}")
            fs.put_file(str(local), f"{prefix}/{name}")
            entries.append({"name": name, "size": size, "sha256": digest})
        # The manifest goes last: a prefix without one was never committed.
        manifest = {"format": 1, "files": entries}
        _make_parent(fs, f"{prefix}/{MANIFEST}")
        fs.pipe_file(f"{prefix}/{MANIFEST}", json.dumps(manifest, indent=1).encode())
        shutil.rmtree(staging, ignore_errors=True)
        return final

    # -- reading -----------------------------------------------------------------------------
    def open(self, reference: Location, trial_id: int) -> Path:
        url = str(reference)
        cache = self._local("cache")
        target = cache / hashlib.sha256(url.encode()).hexdigest()[:20]
        if target.is_dir():  # only a verified download is renamed into place
            return target
        partial = cache / f".{target.name}-{uuid.uuid4().hex[:8]}"
        try:
            self._download(url, trial_id, partial)
            os.rename(partial, target)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        self._cached.append(target)
        while len(self._cached) > _CACHE_SIZE:
            shutil.rmtree(self._cached.pop(0), ignore_errors=True)
        return target

    def _download(self, url: str, trial_id: int, into: Path) -> None:
        """Download and verify a committed checkpoint. A missing or unreadable manifest,
        a missing file or one that does not match it raise `CheckpointGoneError`: the
        checkpoint was deleted or changed after its commit, and is never trusted again.
        Any other error (a network hiccup) is raised as it is: the checkpoint may be
        whole, and the trial's retry tries it again."""
        fs, _ = self._fs()
        prefix = self._path_of(url)
        what = f"the checkpoint of trial {trial_id} ({url})"
        try:
            manifest = json.loads(fs.cat_file(f"{prefix}/{MANIFEST}"))
            entries = [(str(e["name"]), int(e["size"]), str(e["sha256"]))
                       for e in manifest["files"]]
        except FileNotFoundError:
            raise CheckpointGoneError(
                f"{what} has no manifest: it was deleted or never committed"
            ) from None
        except (ValueError, KeyError, TypeError) as error:
            raise CheckpointGoneError(f"{what} has an unreadable manifest: {error!r}") from None
        into.mkdir(parents=True)
        for name, size, digest in entries:
            parts = name.split("/")
            if name.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise CheckpointGoneError(f"{what}: its manifest names an unsafe path {name!r}")
            local = into.joinpath(*parts)
            local.parent.mkdir(parents=True, exist_ok=True)
            try:
                fs.get_file(f"{prefix}/{name}", str(local))
            except FileNotFoundError:
                raise CheckpointGoneError(
                    f"{what} does not match its manifest: {name!r} is missing"
                ) from None
            got_size, got_digest = _digest(local)
            if (got_size, got_digest) != (size, digest):
                raise CheckpointGoneError(
                    f"{what} does not match its manifest: {name!r} has {got_size} bytes, "
                    f"sha256 {got_digest[:12]}..., the manifest says {size} bytes, sha256 "
                    f"{digest[:12]}...; it was changed after it was committed, so this "
                    "trial does not warm-start from it"
                )
            local.chmod(local.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))

    # -- deleting ----------------------------------------------------------------------------
    def remove(self, reference: Location) -> None:
        url = str(reference)
        if not url.startswith(self.location + "/") or "/.." in url[len(self.location):]:
            raise CheckpointError(f"refusing to delete {url!r}: it is outside {self.location!r}")
        self._delete(self._path_of(url))

    def sweep(self, keep: Set[Location]) -> int:
        fs, _ = self._fs()
        study = self._path_of(self.location)
        fs.invalidate_cache()
        try:
            children = fs.ls(study, detail=False)
        except FileNotFoundError:
            return 0
        kept = {posixpath.basename(str(k).rstrip("/")) for k in keep}
        removed = 0
        for child in children:
            name = posixpath.basename(str(child).rstrip("/"))
            if name.startswith("trial-") and name not in kept:
                self._delete(f"{study}/{name}")
                removed += 1
        return removed

    def destroy(self) -> None:
        fs, _ = self._fs()
        study = self._path_of(self.location)
        with contextlib.suppress(FileNotFoundError):
            fs.rm(study, recursive=True)
        fs.invalidate_cache(study)

    def _delete(self, prefix: str) -> None:
        fs, _ = self._fs()
        # The manifest first: what is left of a half-deleted checkpoint is never trusted.
        # A failed delete is logged, not raised: the checkpoint is already forgotten (or
        # never recorded), and the end-of-run sweep tries again.
        for path, recursive in ((f"{prefix}/{MANIFEST}", False), (prefix, True)):
            try:
                fs.rm(path, recursive=recursive)
            except FileNotFoundError:
                pass
            except Exception as error:
                _log.warning("could not delete checkpoint %s: %s", path, error)
                return
        fs.invalidate_cache(prefix)

    # -- plumbing ----------------------------------------------------------------------------
    def close(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
            self._cached.clear()

    def _fs(self) -> tuple[Any, str]:
        if self._fs_path is None:
            self._fs_path = filesystem(self.location)
        return self._fs_path

    def _path_of(self, url: str) -> str:
        fs, _ = self._fs()
        return str(fs._strip_protocol(url)).rstrip("/")

    def _local(self, kind: str) -> Path:
        """This process's scratch folder (staging and the download cache), made lazily and
        removed by `close` or when the store is collected."""
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="pbtune-remote-"))
            weakref.finalize(self, shutil.rmtree, self._scratch, True)
        path = self._scratch / kind
        path.mkdir(exist_ok=True)
        return path


def _make_parent(fs: Any, path: str) -> None:
    """Create the folder of ``path`` on a file system that has folders (``file://``, whose
    writes do not create them); an object store has none to make."""
    if getattr(fs, "auto_mkdir", True) is False:
        fs.makedirs(posixpath.dirname(path), exist_ok=True)


def _files(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative POSIX name, path) of every file under ``root``, in a stable order."""
    for directory, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            path = Path(directory) / name
            yield path.relative_to(root).as_posix(), path


def _digest(path: Path) -> tuple[int, str]:
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
            size += len(block)
    return size, sha.hexdigest()
