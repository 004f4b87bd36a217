"""The one set of argument checks and shape formulas, shared by the library (functional, ops) and the
application (transforms, data, train). Messages name the caller and the argument: "{who}: {name} must ..."."""
from __future__ import annotations

import math
import numbers

import torch


def check_int(who: str, name: str, value, minimum: int | None = None, hint: str = "") -> int:
    """`value` as an int (numpy integers too, never a bool), at least `minimum`; TypeError / ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{who}: {name} must be an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{who}: {name} must be >= {minimum}, got {value}{hint}")
    return int(value)


def check_finite(who: str, name: str, value, minimum: float | None = None) -> float:
    """`value` as a finite float (never a bool), at least `minimum`; TypeError / ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{who}: {name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"{who}: {name} must be a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{who}: {name} must be >= {minimum}, got {value}")
    return float(value)


def check_pair(who: str, name: str, value, minimum: int) -> tuple[int, int]:
    """An int or a sequence of one or two ints (torch's pooling convention) as an (h, w) pair."""
    if isinstance(value, (tuple, list, torch.Size)):
        if len(value) not in (1, 2):
            raise ValueError(f"{who}: {name} must be an int or a pair of ints, got {tuple(value)}")
        value = tuple(value) * (2 // len(value))
        return check_int(who, f"{name}[0]", value[0], minimum), check_int(who, f"{name}[1]", value[1], minimum)
    value = check_int(who, name, value, minimum)
    return value, value


def check_tensor(who: str, name: str, t, min_dim: int = 0) -> None:
    """A floating point torch.Tensor of at least `min_dim` dimensions."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{who}: {name} must be a torch.Tensor, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{who}: {name} must have a floating point dtype, got {t.dtype}")
    if t.dim() < min_dim:
        raise ValueError(f"{who}: {name} must have at least {min_dim} dimensions (N, C, ...), "
                         f"got {t.dim()} with shape {tuple(t.shape)}")


def check_index(who: str, index, length: int) -> int:
    """A dataset index (an int or a one-element tensor; negative counts from the end) in range."""
    if isinstance(index, torch.Tensor) and index.numel() == 1:
        index = int(index)
    if isinstance(index, bool) or not isinstance(index, numbers.Integral):
        raise TypeError(f"{who}: index must be an int, got {type(index).__name__}")
    index = int(index)
    if not -length <= index < length:
        raise IndexError(f"{who}: index {index} out of range for {length} images")
    return index + length if index < 0 else index


def conv_output_size(size: int, kernel: int, stride: int, pad_before: int, pad_after: int) -> int:
    """A convolution's output length along one dimension (no dilation)."""
    return (size + pad_before + pad_after - kernel) // stride + 1


def pool_output_size(size: int, kernel: int, stride: int, pad: int, dilation: int = 1, ceil_mode: bool = False) -> int:
    """torch's pooling_output_shape: with ceil_mode the last window must start inside the input or the
    left padding."""
    out = (size + 2 * pad - dilation * (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


# Prefixes the library puts on its messages (a function's or class's name, or the command's own, which
# error_line adds once), and what the user typed instead.
_PREFIXES = {"fastalex train: ": "", "fastalex eval: ": "", "fastalex bench: ": "", "fastalex prepare: ": "",
             "image_folders: ": "--data: ", "ImageFolder: ": "--data: ", "prepare_image_folder: ": "",
             "SyntheticShapes: ": ""}


def error_line(command: str, error: BaseException) -> str:
    """One line for a failed command: "fastalex COMMAND: error: MESSAGE", with no doubled prefix and no
    internal function names (image_folders' "image_folders: DIR does not exist" reads "--data: DIR does
    not exist")."""
    message = " ".join(str(error).split()) or type(error).__name__
    stripped = True
    while stripped:
        stripped = False
        for prefix, replacement in _PREFIXES.items():
            if message.startswith(prefix):
                message, stripped = replacement + message[len(prefix):], True
                break
    return f"fastalex {command}: error: {message}"
