"""Western Electric run rules for a Shewhart chart, over the z-scores of the recent points.

===== =========================================================== =============== =========
rule  fires when (same side of the centre for 2–4)                statistic       threshold
===== =========================================================== =============== =========
we1   one point beyond k·σ                                        abs(z)          k
we2   2 of the last 3 points beyond 2σ                            2nd-largest z   2
we3   4 of the last 5 points beyond 1σ                            4th-largest z   1
we4   8 points in a row on one side of the centre                 run length      8
===== =========================================================== =============== =========

Each rule's statistic over its threshold is a ratio that reaches 1 exactly when the rule
fires, so the chart's score (from the largest ratio) is at least 0.5 on every alarm and grows
with the evidence. The history is the last four z-scores (a four-slot ring) and the current
run length; it restarts after every alarm, so one excursion is counted once.

>>> rules = RunRules(["we1", "we2"], k=3.0)
>>> rules.evaluate(2.5), rules.fired
(0.8333333333333334, 0)
>>> rules.evaluate(2.2), rules.fired
(1.1, 2)
>>> rules.evaluate(2.2), rules.fired  # the history restarted after the alarm
(0.7333333333333334, 0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

RULES = ("we1", "we2", "we3", "we4")
"""Rule names, in the order of their number in ``details["rule"]``."""

_HISTORY = 4  # we3 looks at the current point and the four before it
_Z_CAP = 1e9  # z is ±inf when σ is 0; the history keeps it finite for JSON


def check_rules(rules: object) -> tuple[str, ...] | None:
    """``rules`` as a tuple in rule order, or None for ``we1`` alone; ``ValueError`` if bad."""
    if rules is None:
        return None
    if isinstance(rules, str) or not isinstance(rules, Sequence) or not rules:
        raise ValueError(f"rules must be a non-empty list of {', '.join(RULES)}, got {rules!r}")
    for rule in rules:
        if rule not in RULES:
            raise ValueError(f"rules must be a list of {', '.join(RULES)}, got {rule!r} in it")
    if len(set(rules)) != len(rules):
        raise ValueError(f"rules must not repeat a rule, got {list(rules)!r}")
    chosen = tuple(rule for rule in RULES if rule in rules)
    return None if chosen == ("we1",) else chosen


class RunRules:
    """The zone bookkeeping of the chosen rules: evaluate each point's z, in order."""

    __slots__ = ("_recent", "_run", "fired", "k", "rules", "we1", "we2", "we3", "we4")

    def __init__(self, rules: Sequence[str], k: float) -> None:
        chosen = check_rules(rules) or ("we1",)
        self.rules = chosen
        self.k = k
        self.we1, self.we2, self.we3, self.we4 = (rule in chosen for rule in RULES)
        self._recent: list[float] = []  # z of the previous points, oldest first, at most 4
        self._run = 0  # signed length of the current run on one side of the centre
        self.fired = 0
        """Number (1–4) of the first rule that fired at the last evaluated point, else 0."""

    def evaluate(self, z: float) -> float:
        """Add the point's ``z``; return the largest statistic/threshold ratio of the rules."""
        recent = self._recent
        count = len(recent)
        ratio = 0.0
        fired = 0
        if self.we1:
            ratio = abs(z) / self.k
            if ratio > 1.0:
                fired = 1
        if self.we2 and count >= 1:
            # 2 of the last 3 beyond 2σ ⇔ the 2nd-largest z (2nd-smallest below) is beyond 2σ.
            b = recent[-1]
            high, low = (z, b) if z >= b else (b, z)  # high ≥ low
            if count >= 2:
                c = recent[-2]
                second_high = high if c >= high else (c if c >= low else low)
                second_low = low if c <= low else (c if c <= high else high)
            else:
                second_high, second_low = low, high
            we2 = max(second_high, -second_low) / 2.0
            if we2 > ratio:
                ratio = we2
            if we2 > 1.0 and not fired:
                fired = 2
        if self.we3 and count >= 3:
            # 4 of the last 5 beyond 1σ ⇔ the 4th-largest z (4th-smallest below) is beyond 1σ:
            # the smallest (largest) of 4 points, the 2nd-smallest (2nd-largest) of 5.
            min1 = max1 = z
            min2, max2 = math.inf, -math.inf
            for v in recent:
                if v < min1:
                    min1, min2 = v, min1
                elif v < min2:
                    min2 = v
                if v > max1:
                    max1, max2 = v, max1
                elif v > max2:
                    max2 = v
            fourth_high, fourth_low = (min1, max1) if count == 3 else (min2, max2)
            we3 = max(fourth_high, -fourth_low)
            if we3 > ratio:
                ratio = we3
            if we3 > 1.0 and not fired:
                fired = 3
        run = self._run
        if z > 0.0:
            run = run + 1 if run > 0 else 1
        elif z < 0.0:
            run = run - 1 if run < 0 else -1
        else:
            run = 0
        if self.we4:
            we4 = abs(run) / 8.0
            if we4 > ratio:
                ratio = we4
            if we4 >= 1.0 and not fired:
                fired = 4
        self.fired = fired
        if fired:
            recent.clear()
            self._run = 0
        else:
            recent.append(_Z_CAP if z > _Z_CAP else -_Z_CAP if z < -_Z_CAP else z)
            if count >= _HISTORY:
                del recent[0]
            self._run = run
        return ratio

    def state_dict(self) -> dict[str, Any]:
        """The recent z-scores and the run length (the rules are the chart's parameters)."""
        return {"recent": list(self._recent), "run": self._run}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from a ``state_dict``."""
        recent = [float(v) for v in state["recent"]]
        if len(recent) > _HISTORY:
            raise ValueError(f"bad run-rule state: more than {_HISTORY} recent points")
        self._recent = recent
        self._run = int(state["run"])
