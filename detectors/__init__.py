"""Pure online statistics and detectors: no Kafka, no HTTP, no files.

Importing this package registers every detector, so ``build_detector(name)`` knows them all.
"""

from detectors.base import (
    Detector,
    PointResult,
    build_detector,
    detector_names,
    restore_detector,
    score_from_ratio,
)
from detectors.shewhart import ShewhartChart  # importing a detector module registers it
from detectors.stats import RunningStats

__all__ = [
    "Detector",
    "PointResult",
    "RunningStats",
    "ShewhartChart",
    "build_detector",
    "detector_names",
    "restore_detector",
    "score_from_ratio",
]
