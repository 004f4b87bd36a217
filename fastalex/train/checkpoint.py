"""Training checkpoints: plain data only, written atomically, checked against the model they are loaded
into, and the RNG states they carry.

A checkpoint is data, never code. Everything `fastalex train` writes is tensors, dicts, lists, tuples,
numbers, strings and None (the RNG states are tensors, the config a plain dict), and load() reads it
with ``torch.load(weights_only=True)``, whose unpickler builds nothing else: a file that would need
any other object (a pickle that names a function to call, as a malicious one does) is refused with a
CheckpointError, before anything in it runs.
"""
from __future__ import annotations

import os
import pickle
import re
import tempfile
from pathlib import Path

import torch

FORMAT = "fastalex-checkpoint-1"
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save writes a zip archive (the pickle inside names the tensors' files)
_PLAIN = "a fastalex checkpoint holds only tensors, dicts, lists, tuples, numbers, strings and None"
# what load() needs, with its type; a plain-data file with other contents is refused, not a KeyError
_REQUIRED = {"model": dict, "model_args": dict, "classes": list, "config": dict, "data": dict, "epoch": int,
             "step": int}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here: unreadable, not fastalex's, not plain data, or for another
    model or data."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, an I/O error); the file at that path, if there was
    one, is the previous checkpoint, intact. errno is the failed call's."""


class _Writer:
    """The file object torch.save writes to, remembering the OSError of a failed write: torch's zip
    writer reports it as a RuntimeError ("unexpected pos ...") that no longer says the disk is full."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def save_atomic(state: dict, path: str | os.PathLike) -> Path:
    """torch.save `state` to `path` so that an interrupted or failed write never leaves a corrupt file there.

    The bytes go to a temporary file in the same directory (same file system), are flushed to disk,
    then os.replace()d over `path` in one step: a reader sees the old checkpoint or the new one. On
    any failure (a full disk, Ctrl-C) the temporary file is removed and the exception raised: an
    OSError for a failed write, even where torch.save would report it as a RuntimeError. A write
    killed outright (SIGKILL, power loss) leaves its temporary file, which the next successful write
    of the same path removes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            writer = _Writer(f)
            try:
                torch.save(state, writer)
            except RuntimeError as e:
                if writer.error is None:
                    raise
                raise writer.error from e
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C mid-write included: drop the partial file, keep the old checkpoint
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _sync_directory(path.parent)  # the rename itself survives a power cut
    _remove_stale_temporaries(path)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sync_directory(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot sync a directory: the data itself is synced already
        pass
    finally:
        os.close(fd)


def _remove_stale_temporaries(path: Path) -> None:
    """Remove what killed writes of `path` left (".NAME.*.tmp" older than `path`, just written)."""
    try:
        written = path.stat().st_mtime
        with os.scandir(path.parent) as entries:
            stale = [e.path for e in entries if e.name.startswith(f".{path.name}.") and e.name.endswith(".tmp")
                     and e.is_file(follow_symlinks=False) and e.stat(follow_symlinks=False).st_mtime < written]
        for name in stale:
            os.unlink(name)
    except OSError:  # only tidying: never fail a checkpoint that was written
        pass


def write_error(path: str | os.PathLike, error: OSError, previous: bool) -> CheckpointWriteError:
    """The one-line error for a checkpoint that could not be written to `path`."""
    why = error.strerror or str(error) or type(error).__name__
    kept = "the previous checkpoint there is intact" if previous else "no checkpoint was written there"
    e = CheckpointWriteError(f"could not write checkpoint {os.fspath(path)}: {why}; {kept}")
    e.errno = error.errno
    return e


def load(path: str | os.PathLike, *, variant: str | None = None, num_classes: int | None = None) -> dict:
    """Read a checkpoint written by `fastalex train`, on the CPU, as plain data, and check it fits.

    Only torch.save's zip archives are read, with ``torch.load(weights_only=True)``; a file holding
    anything but plain data (see the module's docstring) raises CheckpointError naming it, and no
    code in it runs. variant / num_classes: what the caller will load it into; a mismatch raises
    CheckpointError naming both, instead of a size-mismatch error from deep inside load_state_dict.
    """
    path = Path(path)
    name = repr(str(path))
    if not path.is_file():
        raise CheckpointError(f"checkpoint {name} does not exist" if not path.exists()
                              else f"checkpoint {name} is not a file")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_ZIP_MAGIC))
    except OSError as e:
        raise CheckpointError(f"checkpoint {name} is unreadable ({e.strerror or e})") from e
    if head != _ZIP_MAGIC:
        if head[:1] == b"\x80":  # a pickle's PROTO opcode: a bare pickle, which is never unpickled here
            raise CheckpointError(f"{name} is not a plain-data fastalex checkpoint: it is a bare pickle, not "
                                  f"torch.save's zip archive; refused without unpickling it ({_PLAIN})")
        raise CheckpointError(f"checkpoint {name} is unreadable or corrupt ("
                              f"{'an empty file' if not head else 'not a torch.save zip archive'})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message advises weights_only=False, which is exactly what must not happen: keep the reason only
        needs = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        why = f"it needs {needs.group(1)} to load" if needs else "it holds something other than plain data"
        raise CheckpointError(f"{name} is not a plain-data fastalex checkpoint: {why}; refused without "
                              f"running it ({_PLAIN})") from None
    except Exception as e:  # noqa: BLE001 - a damaged archive: the same thing to the user
        raise CheckpointError(f"checkpoint {name} is unreadable or corrupt ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{name} is not a fastalex training checkpoint (expected format {FORMAT!r}; "
                              f"a bare state_dict loads with model.load_state_dict)")
    bad = [k for k, kind in _REQUIRED.items() if not isinstance(state.get(k), kind)]
    if bad:
        raise CheckpointError(f"checkpoint {name} is damaged: {', '.join(map(repr, bad))} missing or of the "
                              f"wrong type")
    model_args = state["model_args"]
    if variant is not None and model_args.get("variant") != variant:
        raise CheckpointError(f"checkpoint {name} is from the {model_args.get('variant')!r} variant of AlexNet, "
                              f"not {variant!r}")
    if num_classes is not None and model_args.get("num_classes") != num_classes:
        raise CheckpointError(f"checkpoint {name} has {model_args.get('num_classes')} classes, the data has "
                              f"{num_classes}")
    return state


def rng_state(device: torch.device) -> dict:
    """This process's RNG states (CPU, and the device's on a GPU) as uint8 tensors, for a checkpoint."""
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
