"""Stop a run cleanly on Ctrl-C or SIGTERM (cluster pre-emption, `kill`): finish the current optimiser step,
write a checkpoint, then stop. A second Ctrl-C quits at once, like an ordinary KeyboardInterrupt.

In a multi-process run every process must save at the same step, so the request is agreed on with a sum
all-reduce of one flag, at steps every process knows (the log cadence, where the loss is reduced anyway, so
no step pays an extra device sync): all processes stop together if any of them was signalled.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

import torch

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Raised by train() after a signal: a checkpoint at `step` was written to `checkpoint`."""

    def __init__(self, step: int, checkpoint, signum: int):
        self.step, self.checkpoint, self.signum = step, checkpoint, signum
        name = signal.Signals(signum).name
        super().__init__(f"{name} received: stopped after step {step}, checkpoint {checkpoint}")


class StopRequest:
    """A context manager holding SIGINT/SIGTERM handlers; ``requested(acc)`` is the flag, agreed by all ranks.

    Handlers can only be installed from the main thread; elsewhere (a notebook worker thread) nothing is
    installed and signals keep their usual effect.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: quit now
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name}: stopping after this step and writing a checkpoint "
            "(Ctrl-C again to quit at once)",
            file=sys.stderr,
            flush=True,
        )

    def requested(self, acc, agree: bool = True) -> bool:
        """True when this process, or any process of the run, has been signalled. With several processes the
        answer is only sought when `agree` (the same steps in every process); otherwise it is False."""
        if acc.num_processes == 1:
            return self.signum is not None
        if not agree:
            return False
        flag = torch.tensor([0.0 if self.signum is None else 1.0], device=acc.device)
        if float(acc.reduce(flag, "sum").item()) == 0:
            return False
        self.signum = self.signum or int(signal.SIGTERM)  # signalled elsewhere: stop like a SIGTERM
        return True
