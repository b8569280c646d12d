"""``artrain fit --minutes N``: the whole schedule (warm-up, cosine decay, evaluations with their checkpoints)
fitted to a time budget, planned from the measured rate of the first steps.

The budget runs from the start of ``artrain fit`` (data loading included) to the last checkpoint: the run's
final validation pass and checkpoint are written before it ends; the test evaluation that follows them is
extra (it is what `artrain eval` prints). The plan:

  1. train MEASURE_STEPS steps on the options' own warm-up, timing them;
  2. total steps = the steps that fit in what is left, after the validation passes (estimated from the
     validation size and the training rate until one is timed) and a SAFETY share of the budget; there are
     EVALUATIONS passes, or as many as fit in EVALUATION_SHARE of the budget (at least the last one);
     warm-up = min(--warmup, total / 10); the passes still planned split the steps left evenly;
  3. re-plan when the rate of recent steps (5 % of the plan at least) drifts by more than DRIFT from the
     planned one, and after every evaluation (its real cost); stop at once when one more step would eat into
     the final checkpoint's time.
"""
from __future__ import annotations

import math
from dataclasses import replace

from .options import FitOptions

MEASURE_STEPS = 5      # steps timed before the first plan
EVALUATIONS = 4        # validation passes, each followed by a checkpoint; the last one ends the run
EVALUATION_SHARE = 0.2  # of the budget the validation passes may take; fewer of them when they cost more
DRIFT = 0.15           # a relative change of the step rate that re-plans
SAFETY = 0.03          # of the budget, kept free besides the final evaluation and checkpoint
FORWARD_SHARE = 0.5    # a validation element's cost over a training element's, before one is timed (forward
                       # alone is ~1/3 of forward + backward; overlapping windows and batching add to it)
UNPLANNED = 1 << 40    # steps and evaluation period while the first steps are timed


class Budget:
    """The schedule of one budgeted run. ``opts`` holds the current plan (``steps``, ``warmup``, ``eval_every``);
    the loop calls ``step_done`` after every step and ``evaluation_done`` after every evaluation + checkpoint."""

    def __init__(self, opts: FitOptions, *, started: float, step: int, val_elements: int, batch_elements: int):
        self.requested = opts
        self.seconds = opts.minutes * 60
        self.deadline = started + self.seconds
        self.val_elements, self.batch_elements = val_elements, batch_elements
        self.opts = replace(opts, steps=UNPLANNED, eval_every=UNPLANNED)
        self.first_step = step
        self.evaluation_seconds: float | None = None  # measured, once one has run
        self.evaluations = 0   # middle ones done
        self.middle = 0        # middle ones still planned
        self.last_evaluation = step
        self.window: tuple[float, int] | None = None  # (time, step) where the rate is measured from
        self.window_pause = 0.0                        # evaluation time inside the window (not stepping)
        self.rate = 0.0                                # planned steps per second
        self.planned = False

    def start(self, now: float) -> None:
        """The first step is about to run."""
        self.window = (now, self.first_step)

    def step_done(self, step: int, now: float) -> FitOptions:
        """Account for the step that just ended at ``now`` -> the options with the current plan."""
        since, from_step = self.window
        rate = (step - from_step) / max(now - since - self.window_pause, 1e-9)
        if not self.planned:
            if step - from_step >= MEASURE_STEPS or now + 1 / rate + self._reserve(rate) > self.deadline:
                self._plan(step, now, rate)
        # the rate over 5 % of the plan at least: a shared machine's rate swings from one step to the next
        elif (abs(rate - self.rate) > DRIFT * self.rate
              and step - from_step >= max(MEASURE_STEPS, self.opts.steps // 20)):
            self._plan(step, now, rate)
        if step < self.opts.steps and now + 1 / max(rate, 1e-9) + self._reserve(rate) > self.deadline:
            self.opts = replace(self.opts, steps=step)  # one more step would cost the last checkpoint
        return self.opts

    def evaluation_due(self, step: int) -> bool:
        """Whether the step that just ended is followed by a validation pass and a checkpoint."""
        if not self.planned:
            return False
        if step >= self.opts.steps:
            return True
        period = (self.opts.steps - self.last_evaluation) / (self.middle + 1)  # the passes left split the steps
        return self.middle > 0 and step - self.last_evaluation >= period

    def evaluation_done(self, step: int, seconds: float, now: float) -> FitOptions:
        """An evaluation and its checkpoint took ``seconds`` (not counted in the step rate): re-plan with its
        real cost."""
        self.window_pause += seconds
        self.evaluation_seconds = seconds if self.evaluation_seconds is None else max(seconds, self.evaluation_seconds)
        self.evaluations, self.last_evaluation = self.evaluations + 1, step
        if self.planned and step < self.opts.steps:
            self._plan(step, now, self.rate)
        return self.opts

    def _evaluation_cost(self, rate: float) -> float:
        """Seconds of one validation pass and checkpoint: measured, or estimated from the training rate."""
        if self.evaluation_seconds is not None:
            return self.evaluation_seconds
        return self.val_elements / self.batch_elements / max(rate, 1e-9) * FORWARD_SHARE + 1.0

    def _reserve(self, rate: float) -> float:
        """Seconds kept for the final evaluation and checkpoint, and the safety share."""
        return self._evaluation_cost(rate) + SAFETY * self.seconds

    def _plan(self, step: int, now: float, rate: float) -> None:
        cost = self._evaluation_cost(rate)
        affordable = int(EVALUATION_SHARE * self.seconds / cost)  # passes in all, the last one included
        middle = max(0, min(EVALUATIONS, affordable) - 1 - self.evaluations)  # still due before the last
        free = self.deadline - now - self._reserve(rate) - middle * cost
        self.middle = middle
        total = step + max(0, int(rate * free))
        self.rate, self.planned = rate, True
        self.window, self.window_pause = (now, step), 0.0
        self.opts = replace(self.opts, steps=total, warmup=min(self.requested.warmup, max(1, total // 10)),
                            eval_every=max(1, math.ceil(total / EVALUATIONS)))
