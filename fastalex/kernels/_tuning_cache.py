"""The tuner's choices on disk, so that tuning happens once per machine, not once per process.

One JSON file per (GPU, torch, triton, fastalex) under the cache root ($FASTALEX_TUNING_CACHE, else
$FASTALEX_BUILD_DIR, else ~/.cache/fastalex; FASTALEX_TUNING_CACHE=0 turns it off): a new GPU or a
new version tunes afresh. Each entry maps a launcher's key (its repr: kernel, shapes, strides,
dtype) to the chosen config's fields; a config that is no longer among the launcher's candidates
is ignored. Writes go to a temporary file renamed over the old one, merged with what another
process wrote meanwhile; a corrupt or foreign file is ignored with one warning, and rewritten.
"""
from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Hashable, Sequence

FORMAT = "fastalex-tuning-1"


def cache_dir() -> Path | None:
    """Where the tuning files live, or None when FASTALEX_TUNING_CACHE=0."""
    explicit = os.environ.get("FASTALEX_TUNING_CACHE")
    if explicit == "0":
        return None
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("FASTALEX_BUILD_DIR", Path.home() / ".cache" / "fastalex"))


def versions() -> dict:
    """What a cached choice depends on: the GPU and the software that compiled the kernels."""
    from importlib import metadata

    import torch
    import triton

    try:
        ours = metadata.version("fastalex")
    except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
        ours = "source"
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return {"gpu": gpu, "torch": torch.__version__, "triton": triton.__version__, "fastalex": ours}


def _file_name(v: dict) -> str:
    import hashlib

    digest = hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()[:12]
    return f"tuning-{digest}.json"


class TuningCache:
    """Read once, then kept in memory; every new choice is written through."""

    def __init__(self, directory: Path | None):
        self.directory = directory
        self.versions = versions() if directory is not None else {}
        self.path = directory / _file_name(self.versions) if directory is not None else None
        self.entries: dict[str, dict] = self._read() if self.path is not None else {}

    def _read(self) -> dict[str, dict]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return {}
        except OSError as e:
            warnings.warn(f"fastalex: cannot read the tuning cache {self.path} ({e}); tuning afresh", RuntimeWarning)
            return {}
        try:
            data = json.loads(text)
            ok = (isinstance(data, dict) and data.get("format") == FORMAT and data.get("versions") == self.versions
                  and isinstance(data.get("entries"), dict))
        except ValueError:
            ok = False
        if not ok:
            warnings.warn(f"fastalex: ignoring the tuning cache {self.path}: it is corrupt or written for another "
                          "GPU or version; tuning afresh", RuntimeWarning)
            return {}
        return {k: v for k, v in data["entries"].items() if isinstance(v, dict)}

    def get(self, key: Hashable, candidates: Sequence):
        """The cached choice for `key` if it is still one of `candidates`, else None."""
        fields = self.entries.get(repr(key))
        if fields is None:
            return None
        return next((c for c in candidates if dataclasses.is_dataclass(c) and dataclasses.asdict(c) == fields), None)

    def put(self, key: Hashable, config) -> None:
        if not dataclasses.is_dataclass(config):
            return
        self.entries[repr(key)] = dataclasses.asdict(config)
        if self.path is None:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            on_disk = self._read_quietly()
            on_disk.update(self.entries)  # keep what other processes chose meanwhile
            self.entries = on_disk
            payload = json.dumps({"format": FORMAT, "versions": self.versions, "entries": on_disk}, indent=1,
                                 sort_keys=True)
            fd, tmp = tempfile.mkstemp(prefix=".tuning-", suffix=".tmp", dir=self.directory)
            try:
                with os.fdopen(fd, "w") as f:
                    f.write(payload)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as e:  # a read-only or full disk costs a re-tune next time, nothing else
            warnings.warn(f"fastalex: cannot write the tuning cache {self.path} ({e})", RuntimeWarning)

    def _read_quietly(self) -> dict[str, dict]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self._read()


_cache: TuningCache | None = None


def cache() -> TuningCache:
    """This process's view of the tuning cache (read on first use)."""
    global _cache
    if _cache is None or _cache.directory != cache_dir():
        _cache = TuningCache(cache_dir())
    return _cache
