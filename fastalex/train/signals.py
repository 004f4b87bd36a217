"""Ctrl-C and SIGTERM during training: finish the step, checkpoint, stop."""
from __future__ import annotations

import signal
import sys


class StopRequest:
    """SIGINT/SIGTERM set a flag the loop reads between steps (a half-applied optimizer step would
    make a useless checkpoint); a second Ctrl-C stops at once."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nfastalex train: stopping after this step and saving a checkpoint (Ctrl-C again to abort)",
              file=sys.stderr)

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
