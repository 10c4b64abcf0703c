"""Pure per-event learners and model maintenance: no Kafka, no HTTP, no files.

Importing this package registers every learner, so ``build_learner(name)`` knows them all.
The scikit-learn bridge is imported on its own (``updaters.sklearn_io``): it loads
scikit-learn, which the rest does not need.
"""

# Importing a learner module registers it.
from vigil.updaters.base import (
    Learner,
    LinearLearner,
    LinearParams,
    build_learner,
    learner_names,
    restore_learner,
)
from vigil.updaters.guardrails import GuardedLearner, GuardEvent, GuardResult
from vigil.updaters.labels import Expired, Joined, LabelJoinBuffer
from vigil.updaters.performance import LossChart, PerformanceMonitor, PerformanceResult
from vigil.updaters.residual import ResidualDetector
from vigil.updaters.river_io import RiverLearner
from vigil.updaters.sgd import LinearRegressor, LogisticRegressor

__all__ = [
    "Expired",
    "GuardEvent",
    "GuardResult",
    "GuardedLearner",
    "Joined",
    "LabelJoinBuffer",
    "Learner",
    "LinearLearner",
    "LinearParams",
    "LinearRegressor",
    "LogisticRegressor",
    "LossChart",
    "PerformanceMonitor",
    "PerformanceResult",
    "ResidualDetector",
    "RiverLearner",
    "build_learner",
    "learner_names",
    "restore_learner",
]
