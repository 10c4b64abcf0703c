"""Multivariate detection over a model's feature vector: river's Half-Space Trees.

One detector per model scores each prediction event's features as a whole, so inputs that
drift together are seen even when each feature alone stays inside its own limits. Features
are min-max scaled online (the range seen *before* the point, so a value beyond it lands
outside [0, 1], in the trees' outermost cells) and fed to :class:`river.anomaly.HalfSpaceTrees`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from river import anomaly
from river.tree.padded import PaddedBranch, PaddedLeaf

from vigil.detectors.base import Explanation, PointResult, register, score_from_ratio
from vigil.detectors.stats import RunningStats

SCALAR_FEATURE = "value"
"""Feature name of a plain number given instead of a vector."""

# river's anomaly detectors and trees are untyped: hold them as Any.
_HALF_SPACE_TREES: Any = anomaly.HalfSpaceTrees
_BRANCH: Any = PaddedBranch
_LEAF: Any = PaddedLeaf


class MinMaxScaling:
    """Online per-feature min-max scaling to [0, 1]; a constant feature maps to 0.5.

    >>> s = MinMaxScaling()
    >>> s.learn({"a": 2.0}); s.learn({"a": 4.0})
    >>> s.transform({"a": 3.0, "b": 1.0}), s.transform({"a": 6.0})
    ({'a': 0.5, 'b': 0.5}, {'a': 2.0})
    """

    __slots__ = ("low", "high")

    def __init__(self) -> None:
        self.low: dict[str, float] = {}
        self.high: dict[str, float] = {}

    def transform(self, values: Mapping[str, float]) -> dict[str, float]:
        """Scale by the ranges learned so far; unseen or constant features map to 0.5 if equal,
        else to 0.5 ± 1 (outside the unit range, on the side the value lies)."""
        scaled = {}
        for name, value in values.items():
            low, high = self.low.get(name, value), self.high.get(name, value)
            span = high - low
            if span > 0.0:
                scaled[name] = (value - low) / span
            else:
                scaled[name] = 0.5 if value == low else 1.5 if value > low else -0.5
        return scaled

    def learn(self, values: Mapping[str, float]) -> None:
        """Widen each feature's range to include its value."""
        low, high = self.low, self.high
        for name, value in values.items():
            if value < low.get(name, math.inf):
                low[name] = value
            if value > high.get(name, -math.inf):
                high[name] = value

    def state_dict(self) -> dict[str, Any]:
        """Ranges per feature, JSON-serialisable."""
        return {"low": dict(self.low), "high": dict(self.high)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> MinMaxScaling:
        """Rebuild the scaling saved by ``state_dict``."""
        scaling = cls()
        scaling.low = {str(k): float(v) for k, v in state["low"].items()}
        scaling.high = {str(k): float(v) for k, v in state["high"].items()}
        return scaling


@register("hst")
class HalfSpaceTreesDetector:
    """Half-Space Trees over a feature vector, alarm when HST's score exceeds ``threshold``.

    HST's raw score is ``1 - mass`` in [0, 1], where ``mass`` is the normalised reference mass
    along the point's paths (small = isolated). ``score`` maps the ratio of the threshold's
    mass to the point's, ``(1 - threshold) / (1 - raw)``, so 0.5 is the threshold and the
    score keeps growing as the point's mass shrinks. The first ``window_size`` points only
    build the reference masses: no score and no alarm until then.

    With river's tree defaults (10 trees, height 8, window 250) the raw score of in-control
    Gaussian features sits mostly between 0.85 and 0.99; ``threshold=0.995`` passed about
    4 in 10,000 in-control points with 2 features and none of 50,000 with 3 to 8.
    ``centre``/``lower``/``upper`` describe the raw score: its running mean, 0 and
    ``threshold``. The trees are rebuilt exactly from
    ``state_dict`` (their splits and masses are stored, about 100 kB with the defaults).

    >>> import random
    >>> rng = random.Random(0)
    >>> det = HalfSpaceTreesDetector(seed=1)
    >>> first = [det.update({"a": rng.gauss(0, 1), "b": rng.gauss(5, 1)}, float(t))
    ...          for t in range(500)]
    >>> max(r.score for r in first[:250])  # the first window only fills the reference masses
    0.0
    >>> typical = det.update({"a": 0.0, "b": 5.0}, 500.0)
    >>> far = det.update({"a": 9.0, "b": -4.0}, 501.0)
    >>> typical.score < 0.1 < 0.3 < far.score
    True
    """

    name: str = "hst"
    input_kind: ClassVar[str] = "vector"

    def __init__(self, n_trees: int = 10, height: int = 8, window_size: int = 250,
                 threshold: float = 0.995, seed: int | None = 0) -> None:
        for label, value, minimum in (("n_trees", n_trees, 1), ("height", height, 1),
                                      ("window_size", window_size, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{label} must be an integer >= {minimum}, got {value!r}")
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not (
                0.0 < threshold < 1.0):
            raise ValueError(f"threshold must be a number in (0, 1) (HST score), "
                             f"got {threshold!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an integer or None, got {seed!r}")
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.threshold = float(threshold)
        self.seed = seed
        self._hst = _HALF_SPACE_TREES(n_trees=n_trees, height=height, window_size=window_size,
                                      seed=seed)
        self._scaling = MinMaxScaling()
        self._scores = RunningStats()  # raw scores once warm, for the centre line

    def update(self, values: Mapping[str, float] | float, timestamp: float) -> PointResult:
        """Score the feature vector against the trees' reference window, then learn it.

        A plain number is a vector of one feature, ``"value"`` (so ``vigil replay`` can run
        HST on each series alone)."""
        if not isinstance(values, Mapping):
            values = {SCALAR_FEATURE: values}
        if not values:
            raise ValueError("values must hold at least one feature")
        for name, value in values.items():
            if not math.isfinite(value):
                raise ValueError(f"feature {name!r} must be a finite number, got {value!r}")
        hst = self._hst
        x = self._scaling.transform(values)
        warm = not hst._first_window  # noqa: SLF001 - river's "reference window complete"
        raw = float(hst.score_one(x)) if warm else 0.0
        stats = self._scores
        n = stats.count
        if n >= 2:
            sigma = stats.std
            z = (raw - stats.mean) / sigma if sigma > 0.0 else 0.0
        else:
            z = 0.0
        centre = stats.mean if n else raw
        anomaly = warm and raw > self.threshold
        hst.learn_one(x)
        self._scaling.learn(values)
        if warm:
            stats.update(raw)
        mass = 1.0 - raw
        ratio = (1.0 - self.threshold) / mass if mass > 0.0 else math.inf
        return PointResult(score_from_ratio(ratio) if warm else 0.0, anomaly, centre, 0.0,
                           self.threshold, z, n, details={"hst_score": raw},
                           explanation=Explanation("hst", raw, self.threshold)
                           if anomaly else None)

    def _params(self) -> dict[str, Any]:
        return {"n_trees": self.n_trees, "height": self.height, "window_size": self.window_size,
                "threshold": self.threshold, "seed": self.seed}

    def state_dict(self) -> dict[str, Any]:
        """Parameters, scaling, the trees' splits and masses; ``from_state`` continues exactly."""
        hst = self._hst
        state: dict[str, Any] = {
            **self._params(),
            "scaling": self._scaling.state_dict(),
            "scores": self._scores.state_dict(),
            "counter": hst.counter,
            "first_window": bool(hst._first_window),  # noqa: SLF001
        }
        if hst.trees:
            features = sorted({node.feature for tree in hst.trees for node in tree.iter_dfs()
                               if isinstance(node, PaddedBranch)})
            index = {name: i for i, name in enumerate(features)}
            state["features"] = features
            state["trees"] = [_tree_state(tree, index) for tree in hst.trees]
        else:  # trees are built on the first point, from the generator
            version, internal, gauss_next = hst.rng.getstate()
            state["rng"] = [version, list(internal), gauss_next]
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Self:
        """Rebuild a detector whose future outputs equal those of the one that saved ``state``."""
        det = cls(**{k: state[k] for k in ("n_trees", "height", "window_size", "threshold",
                                            "seed")})
        hst = det._hst
        det._scaling = MinMaxScaling.from_state(state["scaling"])
        det._scores = RunningStats.from_state(state["scores"])
        hst.counter = int(state["counter"])
        hst._first_window = bool(state["first_window"])  # noqa: SLF001
        if "trees" in state:
            features = [str(f) for f in state["features"]]
            hst.trees = [_build_tree(tree, features, det.height) for tree in state["trees"]]
            if len(hst.trees) != det.n_trees:
                raise ValueError(f"HST state has {len(hst.trees)} trees, expected {det.n_trees}")
            hst._tree_nodes = [list(t.iter_dfs()) for t in hst.trees]  # noqa: SLF001
        else:
            version, internal, gauss_next = state["rng"]
            hst.rng.setstate((int(version), tuple(int(i) for i in internal), gauss_next))
        return det

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"HalfSpaceTreesDetector({args})"


def _tree_state(tree: Any, index: Mapping[str, int]) -> dict[str, list[Any]]:
    """A full tree in preorder: splits of the branches, masses of every node."""
    state: dict[str, list[Any]] = {"feature": [], "threshold": [], "l_mass": [], "r_mass": []}
    for node in tree.iter_dfs():
        if isinstance(node, PaddedBranch):
            state["feature"].append(index[node.feature])
            state["threshold"].append(float(node.threshold))
        state["l_mass"].append(int(node.l_mass))
        state["r_mass"].append(int(node.r_mass))
    return state


def _build_tree(state: Mapping[str, list[Any]], features: list[str], height: int) -> Any:
    """Inverse of :func:`_tree_state` for a full tree of ``height``."""
    nodes, branches_count = 2 ** (height + 1) - 1, 2**height - 1
    if not (len(state["l_mass"]) == len(state["r_mass"]) == nodes
            and len(state["feature"]) == len(state["threshold"]) == branches_count):
        raise ValueError(f"HST tree state does not describe a full tree of height {height}")
    if any(not 0 <= int(f) < len(features) for f in state["feature"]):
        raise ValueError("HST tree state splits on an unknown feature")
    branches = iter(zip(state["feature"], state["threshold"], strict=True))
    masses = iter(zip(state["l_mass"], state["r_mass"], strict=True))

    def build(depth: int) -> Any:
        l_mass, r_mass = next(masses)
        if depth == height:
            return _LEAF(l_mass=int(l_mass), r_mass=int(r_mass))
        feature, threshold = next(branches)
        left = build(depth + 1)
        right = build(depth + 1)
        return _BRANCH(left, right, features[feature], float(threshold), int(l_mass),
                       int(r_mass))

    tree = build(0)
    return tree
