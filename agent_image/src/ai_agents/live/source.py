"""Reading the live file, and noticing that it changed.

Changes are found by re-reading the file every `poll_seconds` and comparing its bytes, not by inotify
(watchfiles and the like). Kubernetes updates a ConfigMap volume by writing a new timestamped directory and
renaming the `..data` symlink over the old one; the file's own path is a symlink through `..data`, so an
inotify watch on the file stays on the old, deleted inode and never fires, and a watch on the directory must
know about that layout. Reading a few hundred bytes through the path's current symlinks every couple of seconds
sees that swap, an editor's rename-on-save and an in-place write alike, with no thread and no native
dependency, and the kubelet's own sync delay (up to a minute) dwarfs the poll interval. SIGHUP asks for a
read at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The file's content at one read, or why it could not be read."""

    digest: str
    text: str | None
    error: str | None = None


def read_snapshot(path: Path) -> Snapshot:
    """Open the path (following `..data` and every other symlink as it is now) and read it whole."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        # A missing or unreadable file is a state of its own: the same error is seen (and logged) once.
        reason = f"cannot read {path}: {exc.strerror or exc}"
        return Snapshot(digest="error:" + reason, text=None, error=reason)
    digest = hashlib.sha256(data).hexdigest()
    try:
        return Snapshot(digest=digest, text=data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return Snapshot(digest=digest, text=None, error=f"{path} is not UTF-8: {exc}")
