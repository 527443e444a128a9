"""Write a live configuration file the way its users do: a kubelet's ConfigMap volume, or an editor's save."""

from __future__ import annotations

import os
import time
from pathlib import Path


class ConfigMapVolume:
    """A directory laid out and updated as the kubelet does a ConfigMap volume (atomic_writer.go).

    `<dir>/<key>` is a symlink to `..data/<key>`; `..data` is a symlink to a timestamped directory holding the
    real files. An update writes a new timestamped directory, points `..data_tmp` at it and renames that over
    `..data` (one atomic rename), then removes the old directory.
    """

    def __init__(self, directory: Path, key: str = "live.yaml") -> None:
        self.directory = directory
        self.key = key
        directory.mkdir(parents=True, exist_ok=True)
        self._serial = 0

    @property
    def path(self) -> Path:
        return self.directory / self.key

    def write(self, text: str) -> None:
        self._serial += 1
        stamp = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{os.getpid()}{self._serial:04d}"
        (self.directory / stamp).mkdir()
        (self.directory / stamp / self.key).write_text(text)
        data = self.directory / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        tmp = self.directory / "..data_tmp"
        tmp.symlink_to(stamp)
        tmp.replace(data)
        if not self.path.is_symlink():
            self.path.symlink_to(Path("..data") / self.key)
        if old is not None:
            for leftover in (self.directory / old).iterdir():
                leftover.unlink()
            (self.directory / old).rmdir()
