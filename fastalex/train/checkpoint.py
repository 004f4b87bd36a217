"""Training checkpoints: written atomically, checked against the model they are loaded into, and the
RNG states they carry."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

FORMAT = "fastalex-checkpoint-1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used here: unreadable, not fastalex's, or for another model or data."""


def save_atomic(state: dict, path: str | os.PathLike) -> Path:
    """torch.save `state` to `path` so that an interrupted write never leaves a corrupt file there.

    The bytes go to a temporary file in the same directory (same file system), are flushed to disk,
    then os.replace()d over `path` in one step: a reader sees the old checkpoint or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:  # Ctrl-C mid-write included: drop the partial file, keep the old checkpoint
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def load(path: str | os.PathLike, *, variant: str | None = None, num_classes: int | None = None) -> dict:
    """Read a checkpoint written by `fastalex train`, on the CPU, and check it fits.

    variant / num_classes: what the caller will load it into; a mismatch raises CheckpointError
    naming both, instead of a size-mismatch error from deep inside load_state_dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist" if not path.exists()
                              else f"checkpoint {str(path)!r} is not a file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise CheckpointError(f"checkpoint {str(path)!r} is unreadable or corrupt ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a fastalex training checkpoint (expected format {FORMAT!r}; "
                              f"a bare state_dict loads with model.load_state_dict)")
    model_args = state["model_args"]
    if variant is not None and model_args["variant"] != variant:
        raise CheckpointError(f"checkpoint {str(path)!r} is from the {model_args['variant']!r} variant of AlexNet, "
                              f"not {variant!r}")
    if num_classes is not None and model_args["num_classes"] != num_classes:
        raise CheckpointError(f"checkpoint {str(path)!r} has {model_args['num_classes']} classes, the data has "
                              f"{num_classes}")
    return state


def rng_state(device: torch.device) -> dict:
    """This process's RNG states (CPU, and the device's on a GPU), for a checkpoint."""
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
