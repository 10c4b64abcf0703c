"""Per-event stochastic gradient descent for linear models with named features.

One labelled event is one update, ``θ ← θ − η·∇J(θ)``, with the update rule of
scikit-learn's ``SGDRegressor``/``SGDClassifier.partial_fit``: the L2 penalty shrinks the
coefficients by ``1 − η·α·(1 − l1_ratio)`` (never below 0), then the loss gradient is
added; the intercept is not penalised; the gradient of the loss is clipped at ±1e12. With
``standardize=False`` and no L1 penalty a learner reproduces ``partial_fit`` on one sample
(the tests check it to 1e-10; with an L1 part, one epoch of ``fit``).

Learning rates (``t`` starts at 1.0 and counts updates, like scikit-learn's ``t_``):

- ``"constant"`` (the default): ``eta0``. A maintained model learns for months from a world
  that changes; a rate that decays with the updates would leave it unable to follow.
- ``"invscaling"``: ``eta0 / t ** power_t``.
- ``"optimal"``: ``1 / (alpha · (t0 + t − 1))`` with scikit-learn's ``t0`` (needs alpha > 0).
- ``"adagrad"``: ``eta0 / (sqrt(G) + 1e-8)`` per parameter, ``G`` the sum of its squared loss
  gradients; the penalty is then applied as decoupled weight decay at rate ``eta0``.

The last three decay for ever, which suits one pass over a fixed data set; ``restart_schedule``
puts a decaying rate back at its start (the guard calls it on a confirmed concept change).

The L1 part of the elastic net (``l1_ratio > 0``) is scikit-learn's truncated gradient with
a cumulative penalty (Tsuruoka, Tsujii and Ananiadou, 2009): after each step a weight is
pulled towards 0 — never across it — by the L1 penalty accumulated so far (``Σ η·α·l1_ratio``)
minus what it has already received, which leaves exact zeros despite the gradient noise.
With standardisation it acts on the standardised weights. This is what one epoch of
``SGDRegressor.fit`` does; ``partial_fit`` restarts the accumulation at every call, which on
one sample is a plain truncation, so with ``l1_ratio > 0`` the two differ.

``clip_norm`` rescales the loss gradient (coefficients and intercept together) to at most
that L2 norm; ``max_step`` rescales the resulting parameter change to at most that L2 norm.
Both act in the standardised space when ``standardize=True``.

Standardisation. With ``standardize=True`` each feature's mean and variance are kept by
Welford's update (population variance), and the gradient step is taken in standardised
coordinates ``z = (x − mean) / std`` — so one learning rate suits features of any scale. The
parameters themselves are kept in the *original* feature space, and when the running
statistics move the model's function does not: only gradient steps change predictions. So
the exported coefficients need no unfolding, and a warm-started model predicts exactly as
its source until it learns. Coefficients take gradient steps once ``MIN_COUNT`` (30) events
have given their statistics some footing — a standard deviation estimated from a handful of
points can be tiny, and a step divided by it huge — and only the intercept learns before;
a feature whose variance is still 0 (the same value every time) gets no gradient step. A
feature that is rare or near-constant for long and then moves gets a large standardised
value and so a large step: ``clip_norm`` bounds it.

Features are named: ``feature_names`` fixes their order. Unknown features are ignored. A
missing feature takes its running mean with ``standardize=True`` (so it adds nothing to the
gradient and leaves the mean unchanged; its variance estimate shrinks a little) and 0.0
otherwise. ``learn_one`` refuses a non-finite feature or label with ``ValueError`` before
changing anything; ``predict_one`` returns a non-finite value for one.

Two interchangeable backends give the same results up to rounding: plain Python float lists
(fastest for few features: numpy's per-call overhead dominates there) and numpy arrays,
chosen automatically above ``NUMPY_MIN_FEATURES`` features.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from operator import itemgetter, mul
from typing import Any, ClassVar, Self

import numpy as np
from numpy.typing import NDArray

from vigil.detectors.checks import check_positive
from vigil.updaters.base import (
    Label,
    LinearParams,
    check_feature_names,
    check_regression_label,
    register_learner,
)
from vigil.updaters.statecheck import StateReader, check_number

LEARNING_RATES = ("constant", "invscaling", "optimal", "adagrad")
REGRESSION_LOSSES = ("squared", "huber")
BACKENDS = ("auto", "python", "numpy")
MIN_COUNT = 30
"""With ``standardize=True``, coefficients take gradient steps from this many events on."""
NUMPY_MIN_FEATURES = 40
"""With ``backend="auto"``, numpy from this many features on (measured by bench/updaters.py)."""

MAX_DLOSS = 1e12  # scikit-learn's clip of the loss gradient
ADAGRAD_EPS = 1e-8
_CONSTANT, _INVSCALING, _OPTIMAL, _ADAGRAD = range(4)
_TINY = float(np.finfo(np.float64).tiny)

FloatArray = NDArray[np.float64]
Row = Sequence[float] | FloatArray
"""An event's features in ``feature_names`` order: a tuple, or an array with numpy."""


def _check_finite(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_optional_positive(name: str, value: object, meaning: str) -> float | None:
    return None if value is None else check_positive(name, value, meaning)


def sigmoid(z: float) -> float:
    """The logistic function, without overflow for large ``|z|``.

    >>> sigmoid(0.0), round(sigmoid(800.0), 3), sigmoid(-800.0)
    (0.5, 1.0, 0.0)
    """
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class _LinearSGD:
    """Parameters, running statistics and the update step shared by both learners."""

    name: str
    kind: ClassVar[str]
    default_estimator: ClassVar[str]
    estimators: ClassVar[tuple[str, ...]]
    """The scikit-learn classes the model exports as (``updaters.sklearn_io``)."""

    def __init__(
        self,
        feature_names: Sequence[str],
        *,
        alpha: float = 1e-4,
        l1_ratio: float = 0.0,
        learning_rate: str = "constant",
        eta0: float = 0.01,
        power_t: float = 0.25,
        clip_norm: float | None = None,
        max_step: float | None = None,
        standardize: bool = True,
        fit_intercept: bool = True,
        coef: Sequence[float] | None = None,
        intercept: float = 0.0,
        t: float = 1.0,
        backend: str = "auto",
        export_as: Mapping[str, Any] | None = None,
    ) -> None:
        self.feature_names = check_feature_names(feature_names)
        self._set_schedule(alpha, l1_ratio, learning_rate, eta0, power_t)
        self.clip_norm = _check_optional_positive("clip_norm", clip_norm, "largest gradient norm")
        self._max_step = _check_optional_positive("max_step", max_step, "largest parameter change")
        self._set_form(standardize, fit_intercept, backend)
        self.export_as = None if export_as is None else dict(export_as)
        self.t = check_positive("t", t, "learning-rate clock, 1.0 when new")
        if self.t < 1.0:
            raise ValueError(f"t must be >= 1.0 (the learning-rate clock), got {t!r}")
        self.n_updates = 0
        self._start_parameters(coef, intercept)
        self._step: Callable[[Any, float], None]
        self._select_step()

    def _set_schedule(self, alpha: float, l1_ratio: float, learning_rate: str, eta0: float,
                      power_t: float) -> None:
        """Check and keep the regularisation and the learning-rate schedule."""
        self.alpha = check_positive("alpha", alpha, "L2/elastic-net strength", zero=True)
        if isinstance(l1_ratio, bool) or not isinstance(l1_ratio, int | float) \
                or not 0.0 <= l1_ratio <= 1.0:
            raise ValueError(f"l1_ratio must be a number in [0, 1], got {l1_ratio!r}")
        self.l1_ratio = float(l1_ratio)
        if learning_rate not in LEARNING_RATES:
            choices = ", ".join(map(repr, LEARNING_RATES))
            raise ValueError(f"learning_rate must be one of {choices}, got {learning_rate!r}")
        self.learning_rate = learning_rate
        if learning_rate == "optimal" and self.alpha == 0.0:
            raise ValueError("learning_rate='optimal' needs alpha > 0 (its rate is 1/(alpha·t))")
        self.eta0 = check_positive("eta0", eta0, "initial learning rate")
        self.power_t = _check_finite("power_t", power_t)
        self._lr = LEARNING_RATES.index(learning_rate)
        self._optimal_init = 0.0
        if self._lr == _OPTIMAL:
            # scikit-learn's heuristic: the first step has size sqrt(1/sqrt(alpha)).
            self._optimal_init = 1.0 / (math.sqrt(1.0 / math.sqrt(self.alpha)) * self.alpha)

    def _set_form(self, standardize: bool, fit_intercept: bool, backend: str) -> None:
        """Check and keep the model's form (standardised inputs, intercept) and its backend."""
        if not isinstance(standardize, bool) or not isinstance(fit_intercept, bool):
            raise ValueError("standardize and fit_intercept must be booleans")
        if standardize and not fit_intercept:
            raise ValueError(
                "standardize=True centres the features and needs fit_intercept=True; "
                "set standardize=False to fit without an intercept"
            )
        self.standardize = standardize
        self.fit_intercept = fit_intercept
        if backend not in BACKENDS:
            choices = ", ".join(map(repr, BACKENDS))
            raise ValueError(f"backend must be one of {choices}, got {backend!r}")
        self.backend = backend
        d = len(self.feature_names)
        self._numpy = backend == "numpy" or (backend == "auto" and d >= NUMPY_MIN_FEATURES)

    def _start_parameters(self, coef: Sequence[float] | None, intercept: float) -> None:
        """The starting coefficients and intercept, and zeroed running statistics and sums."""
        d = len(self.feature_names)
        coef_list = [0.0] * d if coef is None else [_check_finite("coef", v) for v in coef]
        if len(coef_list) != d:
            raise ValueError(f"coef has {len(coef_list)} values for {d} features")
        self._b = _check_finite("intercept", intercept) if self.fit_intercept else 0.0
        if not self.fit_intercept and intercept != 0.0:
            raise ValueError("an intercept was given with fit_intercept=False")
        self._count = 0
        self._accum_b = 0.0
        self._l1_total = 0.0
        # Python lists (small d) or numpy arrays (large d) hold the same numbers.
        self._c: list[float] = coef_list
        self._mean: list[float] = [0.0] * d
        self._m2: list[float] = [0.0] * d
        self._accum: list[float] = [0.0] * d
        self._l1_applied: list[float] = [0.0] * d
        self._ac: FloatArray = np.array(coef_list, dtype=np.float64)
        self._amean: FloatArray = np.zeros(d)
        self._am2: FloatArray = np.zeros(d)
        self._aaccum: FloatArray = np.zeros(d)
        self._al1_applied: FloatArray = np.zeros(d)
        self._get: Callable[[Mapping[str, float]], Sequence[float]]
        if d == 1:  # itemgetter of one name returns the value, not a 1-tuple
            self._get = partial(_one_feature, self.feature_names[0])
        else:
            self._get = itemgetter(*self.feature_names)

    @property
    def max_step(self) -> float | None:
        """Largest L2 norm of one update's parameter change (``None``: no cap); settable."""
        return self._max_step

    @max_step.setter
    def max_step(self, value: float | None) -> None:
        self._max_step = _check_optional_positive("max_step", value, "largest parameter change")
        if hasattr(self, "_c"):  # set again after construction: pick the matching update
            self._select_step()

    def restart_schedule(self) -> None:
        """Put a decaying learning rate back at its start (``t`` = 1, AdaGrad's sums to 0),
        so that the model learns fast again after a concept change; ``constant`` is left as
        it is."""
        if self._lr == _INVSCALING or self._lr == _OPTIMAL:
            self.t = 1.0
        elif self._lr == _ADAGRAD:
            self._accum_b = 0.0
            self._accum = [0.0] * len(self._accum)
            self._aaccum = np.zeros(len(self._accum))

    def _select_step(self) -> None:
        general = (
            self._lr == _ADAGRAD
            or (self.l1_ratio > 0.0 and self.alpha > 0.0)
            or self.clip_norm is not None
            or self._max_step is not None
        )
        if self._numpy:
            self._step = (
                self._step_numpy
                if general
                else self._step_numpy_standardized
                if self.standardize
                else self._step_numpy_plain
            )
        elif general:
            self._step = self._step_general
        elif self.standardize:
            self._step = self._step_standardized
        else:
            self._step = self._step_plain

    # -- features --------------------------------------------------------------------------

    def _missing(self, x: Mapping[str, float]) -> list[float]:
        """The feature vector when some feature is absent: its running mean, or 0.0."""
        if not self.standardize:
            return [x.get(name, 0.0) for name in self.feature_names]
        means = self._amean.tolist() if self._numpy else self._mean
        return [x.get(name, m) for name, m in zip(self.feature_names, means, strict=True)]

    def _vector(self, x: Mapping[str, float]) -> FloatArray:
        try:
            values = self._get(x)
        except KeyError:
            values = self._missing(x)
        return np.fromiter(values, np.float64, len(self.feature_names))

    def _raw(self, x: Mapping[str, float]) -> float:
        """``intercept + coef · x`` in the original feature space."""
        if self._numpy:
            return self._b + float(self._ac.dot(self._vector(x)))
        try:
            xs = self._get(x)
        except KeyError:
            xs = self._missing(x)
        raw: float = self._b + sum(map(mul, self._c, xs))
        return raw

    def _features_and_raw(self, x: Mapping[str, float]) -> tuple[Sequence[float], float]:
        """The feature vector and the raw prediction; ValueError unless both are finite."""
        raw: float
        try:
            if self._numpy:
                arr = self._vector(x)
                raw = self._b + float(self._ac.dot(arr))
                values: Sequence[float] = arr  # type: ignore[assignment]
            else:
                try:
                    values = self._get(x)
                except KeyError:
                    values = self._missing(x)
                raw = self._b + sum(map(mul, self._c, values))
        except TypeError:
            raw = math.nan  # a value that is not a number
        if not math.isfinite(raw):
            bad = {k: x[k] for k in self.feature_names if k in x and not _finite_number(x[k])}
            raise ValueError(f"features must be finite numbers, got {bad or 'an overflow'!r}")
        return values, raw

    # -- rows: one feature vector per event, shared by predictions and the update ----------

    def row(self, x: Mapping[str, float]) -> Row | None:
        """``x``'s features in ``feature_names`` order, the vector :meth:`raw` and
        :meth:`learn_row` take; None when one is missing (the dict methods fill it in)."""
        try:
            values = self._get(x)
        except KeyError:
            return None
        if self._numpy:
            return np.fromiter(values, np.float64, len(self.feature_names))
        return values

    def raw(self, row: Row) -> float:
        """``intercept + coef · row``: what :meth:`predict_one` computes from ``x``."""
        if self._numpy:
            return self._b + float(self._ac.dot(row))
        raw: float = self._b + sum(map(mul, self._c, row))
        return raw

    def prediction(self, raw: float) -> float:
        """The prediction of the raw score ``intercept + coef · x``."""
        return raw

    def learn_row(self, row: Row, raw: float, target: float) -> None:
        """One SGD step on a row whose raw score is ``raw`` and encoded label ``target``,
        as :meth:`learn_one` takes it; ``raw`` must be finite."""
        self._step(row, self._gradient(raw, target))
        self.n_updates += 1

    def _gradient(self, raw: float, target: float) -> float:
        """The loss gradient with respect to the raw score."""
        raise NotImplementedError

    # -- the update ------------------------------------------------------------------------

    def _rate(self) -> float:
        """The learning rate of the update about to be made (not used by AdaGrad)."""
        lr = self._lr
        if lr == _CONSTANT or lr == _ADAGRAD:
            return self.eta0
        if lr == _INVSCALING:
            return self.eta0 / math.pow(self.t, self.power_t)
        return 1.0 / (self.alpha * (self._optimal_init + self.t - 1.0))

    def _step_plain(self, xs: Sequence[float], g: float) -> None:
        """Fast path: no standardisation, L2 only, no clipping, scalar learning rate."""
        eta = self.eta0 if self._lr == _CONSTANT else self._rate()
        step = -eta * g
        k = 1.0 - eta * self.alpha
        c = self._c
        if k == 1.0:
            for j in range(len(c)):
                c[j] += step * xs[j]
        else:
            if k < 0.0:
                k = 0.0
            for j in range(len(c)):
                c[j] = k * c[j] + step * xs[j]
        if self.fit_intercept:
            self._b += step
        self.t += 1.0

    def _step_standardized(self, xs: Sequence[float], g: float) -> None:
        """Fast path with standardisation: a step in z-space, mapped back to x-space."""
        eta = self.eta0 if self._lr == _CONSTANT else self._rate()
        step = -eta * g
        k = 1.0 - eta * self.alpha
        if k < 0.0:
            k = 0.0
        n = self._count + 1
        self._count = n
        r = 1.0 / n
        sn = step * n if n >= MIN_COUNT else 0.0  # z/std = (x − mean)·n/m2
        mean, m2, c = self._mean, self._m2, self._c
        shift = 0.0
        for j in range(len(c)):
            v = xs[j]
            m = mean[j]
            dl = v - m
            m += dl * r
            mean[j] = m
            q = m2[j] + dl * (v - m)
            m2[j] = q
            cj = c[j]
            cn = k * cj + sn * (v - m) / q if q > 0.0 else k * cj
            c[j] = cn
            shift += (cn - cj) * m
        # The intercept in z-space is intercept + coef·mean: keep it, then step it.
        self._b += step - shift
        self.t += 1.0

    def _step_general(self, xs: Sequence[float], g: float) -> None:
        """Every option: AdaGrad, elastic net, gradient clipping, step cap."""
        d = len(self._c)
        std = self.standardize
        mean, m2, c = self._mean, self._m2, self._c
        if std:
            n = self._count + 1
            self._count = n
            r = 1.0 / n
            zs = [0.0] * d
            inv = [0.0] * d
            for j in range(d):
                v = xs[j]
                m = mean[j]
                dl = v - m
                m += dl * r
                mean[j] = m
                q = m2[j] + dl * (v - m)
                m2[j] = q
                if q > 0.0 and n >= MIN_COUNT:
                    s_inv = math.sqrt(n / q)
                    inv[j] = s_inv
                    zs[j] = (v - m) * s_inv
        else:
            zs = [float(v) for v in xs]
            inv = [1.0] * d
        gb = g if self.fit_intercept else 0.0
        if self.clip_norm is not None:
            norm = abs(g) * math.sqrt(sum(z * z for z in zs) + (1.0 if self.fit_intercept else 0.0))
            if norm > self.clip_norm:
                scale = self.clip_norm / norm
                g *= scale
                gb *= scale
        if self._lr == _ADAGRAD:
            eta = self.eta0
            accum = self._accum
            dw = [0.0] * d
            for j in range(d):
                gz = g * zs[j]
                if gz != 0.0:
                    a = accum[j] + gz * gz
                    accum[j] = a
                    dw[j] = -self.eta0 * gz / (math.sqrt(a) + ADAGRAD_EPS)
            db = 0.0
            if gb != 0.0:
                self._accum_b += gb * gb
                db = -self.eta0 * gb / (math.sqrt(self._accum_b) + ADAGRAD_EPS)
        else:
            eta = self._rate()
            dw = [-eta * g * z for z in zs]
            db = -eta * gb
        max_step = self._max_step
        if max_step is not None:
            norm = math.sqrt(sum(w * w for w in dw) + db * db)
            if norm > max_step:
                scale = max_step / norm
                dw = [w * scale for w in dw]
                db *= scale
        k = 1.0 - eta * self.alpha * (1.0 - self.l1_ratio)
        if k < 0.0:
            k = 0.0
        tau = eta * self.alpha * self.l1_ratio
        if tau > 0.0:
            self._l1_total += tau
        u = self._l1_total
        applied = self._l1_applied
        shift = 0.0
        for j in range(d):
            s_inv = inv[j]
            cj = c[j]
            cn = k * cj + dw[j] * s_inv
            if tau > 0.0 and s_inv > 0.0:
                # Cumulative L1 penalty on the standardised weight w = c·std (Tsuruoka et al.).
                w = cn / s_inv
                q = applied[j]
                if w > 0.0:
                    w_new = max(0.0, w - (u + q))
                elif w < 0.0:
                    w_new = min(0.0, w + (u - q))
                else:
                    w_new = w
                applied[j] = q + (w_new - w)
                cn = w_new * s_inv
            c[j] = cn
            if std:
                shift += (cn - cj) * mean[j]
        self._b += db - shift
        self.t += 1.0

    def _step_numpy_plain(self, xs: FloatArray, g: float) -> None:
        """Fast path of the numpy backend without standardisation."""
        eta = self._rate()
        k = 1.0 - eta * self.alpha
        c = self._ac
        if k != 1.0:
            c *= k if k > 0.0 else 0.0
        c += (-eta * g) * xs
        if self.fit_intercept:
            self._b -= eta * g
        self.t += 1.0

    def _step_numpy_standardized(self, xs: FloatArray, g: float) -> None:
        """Fast path of the numpy backend with standardisation (as ``_step_standardized``)."""
        eta = self._rate()
        step = -eta * g
        k = max(0.0, 1.0 - eta * self.alpha)
        n = self._count + 1
        self._count = n
        mean, m2, c = self._amean, self._am2, self._ac
        delta = xs - mean
        mean += delta / n
        centred = xs - mean
        m2 += delta * centred
        # m2 == 0 only when every value so far was the same: then centred == 0 too.
        direction = np.maximum(m2, _TINY)
        np.divide(centred, direction, out=direction)
        direction *= step * n if n >= MIN_COUNT else 0.0
        shift = (k - 1.0) * float(c.dot(mean)) + float(direction.dot(mean))
        if k != 1.0:
            c *= k
        c += direction
        self._b += step - shift
        self.t += 1.0

    def _step_numpy(self, xs: FloatArray, g: float) -> None:
        """Every option, vectorised (as ``_step_general``)."""
        d = xs.shape[0]
        std = self.standardize
        c = self._ac
        if std:
            n = self._count + 1
            self._count = n
            mean, m2 = self._amean, self._am2
            delta = xs - mean
            mean += delta / n
            centred = xs - mean
            m2 += delta * centred
            inv = np.zeros(d)
            if n >= MIN_COUNT:
                np.sqrt(np.divide(n, m2, out=inv, where=m2 > 0.0), out=inv)
            zs = centred * inv
        else:
            zs = xs
            inv = np.ones(d)
        gb = g if self.fit_intercept else 0.0
        if self.clip_norm is not None:
            norm = abs(g) * math.sqrt(float(zs @ zs) + (1.0 if self.fit_intercept else 0.0))
            if norm > self.clip_norm:
                scale = self.clip_norm / norm
                g *= scale
                gb *= scale
        if self._lr == _ADAGRAD:
            eta = self.eta0
            gz = g * zs
            self._aaccum += gz * gz
            dw = -self.eta0 * gz / (np.sqrt(self._aaccum) + ADAGRAD_EPS)
            db = 0.0
            if gb != 0.0:
                self._accum_b += gb * gb
                db = -self.eta0 * gb / (math.sqrt(self._accum_b) + ADAGRAD_EPS)
        else:
            eta = self._rate()
            dw = (-eta * g) * zs
            db = -eta * gb
        max_step = self._max_step
        if max_step is not None:
            norm = math.sqrt(float(dw @ dw) + db * db)
            if norm > max_step:
                scale = max_step / norm
                dw *= scale
                db *= scale
        k = max(0.0, 1.0 - eta * self.alpha * (1.0 - self.l1_ratio))
        new = c * k + dw * inv
        tau = eta * self.alpha * self.l1_ratio
        if tau > 0.0:
            self._l1_total += tau
            u = self._l1_total
            live = inv > 0.0
            w = np.divide(new, inv, out=np.zeros(d), where=live)
            q = self._al1_applied
            w_new = np.where(
                w > 0.0,
                np.maximum(0.0, w - (u + q)),
                np.where(w < 0.0, np.minimum(0.0, w + (u - q)), w),
            )
            q += np.where(live, w_new - w, 0.0)
            new = np.where(live, w_new * inv, new)
        if std:
            self._b += db - float((new - c) @ self._amean)
        else:
            self._b += db
        c[:] = new
        self.t += 1.0

    # -- export and state ------------------------------------------------------------------

    @property
    def coef(self) -> list[float]:
        """Coefficients in the original feature space, in ``feature_names`` order."""
        return self._ac.tolist() if self._numpy else list(self._c)

    @property
    def intercept(self) -> float:
        """Intercept in the original feature space."""
        return self._b

    def linear_params(self) -> LinearParams:
        """Coefficients and intercept in the original feature space, for export."""
        estimator = self.default_estimator
        if self.export_as is not None:
            estimator = str(self.export_as.get("estimator", estimator))
        return LinearParams(
            feature_names=self.feature_names,
            coef=tuple(self.coef),
            intercept=self._b,
            n_updates=self.n_updates,
            classes=self._classes(),
            estimator=estimator,
        )

    def _classes(self) -> tuple[Label, Label] | None:
        return None

    def _params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._param_names()}

    def state_dict(self) -> dict[str, Any]:
        """Parameters, coefficients and running statistics; JSON-serialisable."""
        numpy = self._numpy
        return {
            "feature_names": list(self.feature_names),
            "params": self._params(),
            "coef": self.coef,
            "intercept": self._b,
            "t": self.t,
            "n_updates": self.n_updates,
            "count": self._count,
            "mean": self._amean.tolist() if numpy else list(self._mean),
            "m2": self._am2.tolist() if numpy else list(self._m2),
            "accum": self._aaccum.tolist() if numpy else list(self._accum),
            "accum_intercept": self._accum_b,
            "l1_applied": self._al1_applied.tolist() if numpy else list(self._l1_applied),
            "l1_total": self._l1_total,
            "export_as": self.export_as,
        }

    @classmethod
    def from_state(cls, state: object) -> Self:
        """Rebuild a learner whose future predictions and updates equal the saved one's.

        A state that is not exactly one this class writes raises ``ValueError``.
        """
        r = StateReader(state, cls.__name__)
        r.keys("feature_names", "params", "coef", "intercept", "t", "n_updates", "count",
               "mean", "m2", "accum", "accum_intercept", "l1_applied", "l1_total", "export_as")
        names = r.value("feature_names")
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise r.fail("feature_names must be a list of strings")
        params = r.mapping("params")
        params.keys(*cls._param_names())
        settings = {name: params.value(name) for name in cls._param_names()}
        for name, value in settings.items():  # the constructor checks values, not containers
            if isinstance(value, Mapping | tuple) or (isinstance(value, list)
                                                      and name != "classes"):
                raise params.fail(f"{name} must be a single value, got {value!r}")
        if not isinstance(settings.get("classes", []), list):
            raise params.fail("classes must be a list")
        try:
            learner = cls(names, **settings, coef=r.numbers("coef", len(names)),
                          intercept=r.number("intercept"), t=r.number("t", minimum=1.0),
                          export_as=_export_as(r, cls.estimators))
        except (TypeError, ValueError) as exc:
            raise r.fail(str(exc)) from exc
        d = len(names)
        if not learner.fit_intercept and learner.intercept != 0.0:
            raise r.fail("an intercept without fit_intercept")
        learner.n_updates = r.integer("n_updates")
        learner._count = r.integer("count")
        learner._accum_b = r.number("accum_intercept", minimum=0.0)
        learner._l1_total = r.number("l1_total", minimum=0.0)
        mean, m2 = r.numbers("mean", d), r.numbers("m2", d, minimum=0.0)
        accum, l1_applied = r.numbers("accum", d, minimum=0.0), r.numbers("l1_applied", d)
        learner._mean, learner._m2, learner._accum = mean, m2, accum
        learner._l1_applied = l1_applied
        learner._amean = np.array(mean, dtype=np.float64)
        learner._am2 = np.array(m2, dtype=np.float64)
        learner._aaccum = np.array(accum, dtype=np.float64)
        learner._al1_applied = np.array(l1_applied, dtype=np.float64)
        return learner

    @classmethod
    def _param_names(cls) -> tuple[str, ...]:
        return _PARAM_NAMES

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self.feature_names)} features, "
            f"learning_rate={self.learning_rate!r}, eta0={self.eta0!r}, alpha={self.alpha!r}, "
            f"standardize={self.standardize!r}, n_updates={self.n_updates})"
        )


_PARAM_NAMES = ("alpha", "l1_ratio", "learning_rate", "eta0", "power_t", "clip_norm", "max_step",
                "standardize", "fit_intercept", "backend")
"""Constructor parameters both learners save in their state."""


def _export_as(reader: StateReader, estimators: Sequence[str]) -> dict[str, Any] | None:
    """The saved ``export_as``: None or {estimator, params of plain values, feature_names_in}."""
    if reader.value("export_as") is None:
        return None
    export = reader.mapping("export_as")
    export.keys("estimator", "params", "feature_names_in")
    export.text("estimator", estimators)
    export.boolean("feature_names_in")
    for key, value in export.mapping("params").state.items():
        if value is not None and not isinstance(value, bool | int | str):
            check_number(value, f"export_as params: {key}")
    return dict(export.state)


def _one_feature(name: str, x: Mapping[str, float]) -> tuple[float]:
    return (x[name],)


def _finite_number(value: object) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
    )


@register_learner("sgd_regressor")
class LinearRegressor(_LinearSGD):
    """Linear regression by per-event SGD, with squared or Huber loss.

    ``loss="squared"`` minimises ``(y − p)²/2``; ``loss="huber"`` is quadratic up to
    ``|y − p| = epsilon`` and linear beyond (robust to outlying labels). The other
    parameters, and the conventions for features, are described in the module docstring.

    >>> model = LinearRegressor(["a", "b"], learning_rate="constant", eta0=0.05)
    >>> for i in range(2000):
    ...     a, b = (i % 7) - 3.0, (i % 5) - 2.0
    ...     model.learn_one({"a": a, "b": b}, 1.0 + 2.0 * a - b)
    >>> [round(v, 2) for v in model.coef], round(model.intercept, 2)
    ([2.0, -1.0], 1.0)
    >>> round(model.predict_one({"a": 1.0, "b": 1.0}), 2)
    2.0
    """

    kind: ClassVar[str] = "regressor"
    default_estimator: ClassVar[str] = "SGDRegressor"
    estimators: ClassVar[tuple[str, ...]] = ("SGDRegressor", "LinearRegression")

    def __init__(
        self,
        feature_names: Sequence[str],
        *,
        loss: str = "squared",
        epsilon: float = 0.1,
        **params: Any,
    ) -> None:
        if loss not in REGRESSION_LOSSES:
            choices = ", ".join(map(repr, REGRESSION_LOSSES))
            raise ValueError(f"loss must be one of {choices}, got {loss!r}")
        self.loss = loss
        self.epsilon = check_positive("epsilon", epsilon, "Huber threshold", zero=True)
        self._huber = loss == "huber"
        super().__init__(feature_names, **params)

    def predict_one(self, x: Mapping[str, float]) -> float:
        """The predicted target for features ``x``."""
        return self._raw(x)

    def encode_label(self, y: Label) -> float:
        """``y`` as a float; ValueError unless it is a finite number."""
        return check_regression_label(y)

    def learn_one(self, x: Mapping[str, float], y: Label) -> None:
        """One SGD step on ``(x, y)``; ValueError (and no change) for non-finite input."""
        if type(y) is float and y - y == 0.0:  # finite float: the common case, checked fast
            target = y
        else:
            target = check_regression_label(y)
        xs, p = self._features_and_raw(x)
        self.learn_row(xs, p, target)

    def _gradient(self, raw: float, target: float) -> float:
        g = raw - target
        if self._huber:
            eps = self.epsilon
            return eps if g > eps else -eps if g < -eps else g
        if g > MAX_DLOSS or g < -MAX_DLOSS:
            return MAX_DLOSS if g > 0.0 else -MAX_DLOSS
        return g

    @classmethod
    def _param_names(cls) -> tuple[str, ...]:
        return ("loss", "epsilon", *_PARAM_NAMES)


@register_learner("sgd_classifier")
class LogisticRegressor(_LinearSGD):
    """Binary logistic regression by per-event SGD on the log loss.

    ``predict_one`` is the probability of ``classes[1]``; ``predict_label`` the more likely
    class (``classes[1]`` when the log-odds are > 0, as scikit-learn decides). Labels must be
    one of ``classes`` (default ``(0, 1)``; ``1.0`` and ``True`` equal ``1``).

    >>> model = LogisticRegressor(["a"], classes=["ok", "fraud"], learning_rate="constant",
    ...                           eta0=0.5, alpha=0.0)
    >>> for i in range(3000):
    ...     a = (i % 11) - 5.0
    ...     model.learn_one({"a": a}, "fraud" if a > 0 else "ok")
    >>> model.predict_label({"a": 3.0}), model.predict_label({"a": -3.0})
    ('fraud', 'ok')
    >>> model.predict_one({"a": 5.0}) > 0.99
    True
    """

    kind: ClassVar[str] = "classifier"
    default_estimator: ClassVar[str] = "SGDClassifier"
    estimators: ClassVar[tuple[str, ...]] = ("SGDClassifier", "LogisticRegression")

    def __init__(
        self,
        feature_names: Sequence[str],
        *,
        classes: Sequence[Label] = (0, 1),
        **params: Any,
    ) -> None:
        labels = tuple(classes)
        if len(labels) != 2 or labels[0] == labels[1]:
            raise ValueError(f"classes must be two distinct labels, got {labels!r}")
        if not all(isinstance(c, str | int | float) for c in labels):
            raise ValueError(f"classes must be strings, numbers or booleans, got {labels!r}")
        self.classes: tuple[Label, Label] = (labels[0], labels[1])
        super().__init__(feature_names, **params)

    def predict_one(self, x: Mapping[str, float]) -> float:
        """The probability that the label of ``x`` is ``classes[1]``."""
        return sigmoid(self._raw(x))

    def decision_function(self, x: Mapping[str, float]) -> float:
        """The log-odds of ``classes[1]`` (scikit-learn's ``decision_function``)."""
        return self._raw(x)

    def predict_label(self, x: Mapping[str, float]) -> Label:
        """The more likely class for ``x``."""
        return self.classes[1] if self._raw(x) > 0.0 else self.classes[0]

    def encode_label(self, y: Label) -> float:
        """1.0 for ``classes[1]``, 0.0 for ``classes[0]``; ValueError otherwise."""
        if y == self.classes[1]:
            return 1.0
        if y == self.classes[0]:
            return 0.0
        raise ValueError(f"label {y!r} is not one of the classes {list(self.classes)!r}")

    def learn_one(self, x: Mapping[str, float], y: Label) -> None:
        """One SGD step on ``(x, y)``; ValueError (and no change) for bad input."""
        classes = self.classes
        if y == classes[1]:
            target = 1.0
        elif y == classes[0]:
            target = 0.0
        else:
            raise ValueError(f"label {y!r} is not one of the classes {list(classes)!r}")
        xs, p = self._features_and_raw(x)
        self.learn_row(xs, p, target)

    def prediction(self, raw: float) -> float:
        """The probability of ``classes[1]`` at log-odds ``raw``."""
        return sigmoid(raw)

    def _gradient(self, raw: float, target: float) -> float:
        return sigmoid(raw) - target

    def _classes(self) -> tuple[Label, Label] | None:
        return self.classes

    @classmethod
    def _param_names(cls) -> tuple[str, ...]:
        return ("classes", *_PARAM_NAMES)

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "classes": list(self.classes)}
