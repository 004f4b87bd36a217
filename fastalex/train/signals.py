"""Ctrl-C and SIGTERM during training: finish the step, checkpoint, stop; a second Ctrl-C aborts."""
from __future__ import annotations

import os
import signal
import sys


class Aborted(KeyboardInterrupt):
    """A second Ctrl-C (or SIGTERM): training stopped at once. Its message is the one line the command
    prints; a checkpoint being written at that moment is dropped (fastalex.train.checkpoint.save_atomic
    writes to a temporary file), so the one already on disk is the last good one."""


class StopRequest:
    """SIGINT/SIGTERM set a flag the loop reads between steps (a half-applied optimizer step would
    make a useless checkpoint); a second one stops at once by raising Aborted.

    checkpoint: the file the run writes, named in Aborted's message. Whatever exception leaves the
    `with` block after an abort (torch.save's zip writer, interrupted mid-file, raises its own
    RuntimeError on the way out) is replaced by Aborted, so that the command prints one line."""

    def __init__(self, checkpoint: str | os.PathLike | None = None):
        self.requested = False
        self.aborted = False
        self.checkpoint = checkpoint
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            self.aborted = True
            raise Aborted(self._abort_message())
        self.requested = True
        print("\nfastalex train: stopping after this step and saving a checkpoint (Ctrl-C again to abort)",
              file=sys.stderr)

    def _abort_message(self) -> str:
        if self.checkpoint is not None and os.path.isfile(self.checkpoint):
            return f"aborted; the previous checkpoint is intact ({os.fspath(self.checkpoint)})"
        return "aborted; no checkpoint was written"

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, exc_type, exc, tb):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self.aborted and exc is not None and not isinstance(exc, Aborted):
            raise Aborted(self._abort_message()) from None
        return False
