"""When each quantity computes: which training steps of an epoch it observes.

Cockpit's `utils/schedules.py` is the model: a schedule is asked, step by step, whether its
quantity observes this step. Here a schedule is told at the start of every epoch (also the
init "epoch" 0, whose one step is the init batch) how many steps the epoch will have, when
the caller knows, and the seed of the probes' own random numbers.

- `EveryNth(n)`: the first and every n-th step of each epoch (gradient magnitudes);
- `StratifiedSample(every)`: random steps spread over the whole epoch (activation rates,
  saturation): the epoch's N steps are cut into k = min(N, max(`min_batches`, ceil(N / every)))
  stretches of equal length (+-1), and one step is drawn uniformly at random from each. Each
  drawn step stands for its stretch: `weight(step)` is the stretch's length, so weighted sums
  over the drawn steps estimate sums over all N steps without bias (the stratified estimator).
  The draws come from a `random.Random` of the probes' own, seeded from the run id and the
  epoch: torch's generators are never touched (training is bit-identical with and without
  sampling) and a resumed run draws the same steps for the same full epoch. When N is not
  known (a caller that does not say), the epoch is cut into stretches of `every` steps as
  they come, with the length of the previous epoch when there was one;
- `InitOnly()`: only the init batch (gradient histograms at initialisation); `Never()`: no step.

`Clock` is where the step in progress stands; the probe set advances it, quantities read it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass
class Clock:
    """Where the probes stand: epoch (0 = the init batch), step within it (0-based, counted
    from this call's `epoch_start`), optimizer steps seen in all (the step in progress is
    `global_step + 1`, 1-based), and the seed of the probes' own random numbers."""

    epoch: int = 0
    step: int = 0
    global_step: int = 0
    seed: int = 0


@runtime_checkable
class StepSchedule(Protocol):
    """Which steps of an epoch a quantity observes."""

    def start(self, epoch: int, steps: int | None, seed: int) -> None:
        """Called at each epoch start: the epoch's number of steps (None: unknown) and the seed."""

    def __call__(self, step: int) -> bool:
        """Whether the quantity observes step `step` (0-based within the epoch)."""

    def weight(self, step: int) -> int:
        """How many of the epoch's steps an observed step stands for (1 unless sampled)."""


class EveryNth:
    """Steps 0, n, 2n, ... of each epoch (n = 1: every step)."""

    def __init__(self, n: int) -> None:
        self.n = max(1, int(n))

    def start(self, epoch: int, steps: int | None, seed: int) -> None:
        return None

    def __call__(self, step: int) -> bool:
        return step % self.n == 0

    def weight(self, step: int) -> int:
        return 1


class Never:
    """No step (a quantity that only reads the shared record or makes its own pass)."""

    def start(self, epoch: int, steps: int | None, seed: int) -> None:
        return None

    def __call__(self, step: int) -> bool:
        return False

    def weight(self, step: int) -> int:
        return 0


class InitOnly:
    """The init batch only (epoch 0)."""

    def __init__(self) -> None:
        self.epoch = 0

    def start(self, epoch: int, steps: int | None, seed: int) -> None:
        self.epoch = epoch

    def __call__(self, step: int) -> bool:
        return self.epoch == 0

    def weight(self, step: int) -> int:
        return 1


class StratifiedSample:
    """One random step from each of k equal stretches of the epoch (see the module doc)."""

    def __init__(self, every: int, *, min_batches: int = 4) -> None:
        self.every = max(1, int(every))
        self.min_batches = max(1, int(min_batches))
        self.picked: dict[int, int] = {}  # step -> length of the stretch it stands for
        self.known = False  # whether the epoch's length was known (else stretches as they come)
        self._last_steps: int | None = None
        self._rng = random.Random(0)
        self._block_start = 0

    @staticmethod
    def stretches(steps: int, every: int, min_batches: int) -> list[tuple[int, int]]:
        """The k stretches [start, stop) that N steps are cut into (lengths differ by at most one)."""
        k = min(steps, max(min_batches, math.ceil(steps / every)))
        bounds = [i * steps // k for i in range(k + 1)]
        return list(zip(bounds[:-1], bounds[1:]))

    def start(self, epoch: int, steps: int | None, seed: int) -> None:
        self._rng = random.Random(f"actlab-probes/{seed}/{epoch}")
        if steps is None:
            steps = self._last_steps
            self.known = False
        else:
            self._last_steps = steps
            self.known = True
        self.picked = {}
        self._block_start = 0
        if steps is not None and steps > 0:
            for lo, hi in self.stretches(steps, self.every, self.min_batches):
                self.picked[self._rng.randrange(lo, hi)] = hi - lo
            self._block_start = steps  # stretches beyond the known length: as they come

    def _extend(self, step: int) -> None:
        """Beyond the planned stretches (an epoch longer than said): blocks of `every` steps."""
        while self._block_start <= step:
            lo, hi = self._block_start, self._block_start + self.every
            self.picked[self._rng.randrange(lo, hi)] = hi - lo
            self._block_start = hi

    def __call__(self, step: int) -> bool:
        if step >= self._block_start:
            self._extend(step)
        return step in self.picked

    def weight(self, step: int) -> int:
        return self.picked.get(step, 0)
