"""Pure online statistics and detectors: no Kafka, no HTTP, no files.

Importing this package registers every detector, so ``build_detector(name)`` knows them all.
"""

from vigil.detectors.adaptive import AdaptiveDetector
from vigil.detectors.bank import BankSeries, SeriesBank
from vigil.detectors.base import (
    Detector,
    Explanation,
    PointResult,
    build_detector,
    detector_names,
    restore_detector,
    score_from_ratio,
)
from vigil.detectors.budget import (
    arl_for_budget,
    cusum_h_for_arl,
    ewma_L_for_arl,
    shewhart_k_for_arl,
)
from vigil.detectors.coldstart import ColdStart, GroupPool
from vigil.detectors.cusum import CusumChart
from vigil.detectors.drift import AdwinDrift, KswinDrift, PageHinkleyDrift
from vigil.detectors.ensemble import EnsembleDetector
from vigil.detectors.ewma import EwmaChart
from vigil.detectors.multivariate import HalfSpaceTreesDetector
from vigil.detectors.robust import RobustChart
from vigil.detectors.seasonal import Seasonal
from vigil.detectors.shewhart import ShewhartChart  # importing a detector module registers it
from vigil.detectors.stats import RunningStats

__all__ = [
    "AdaptiveDetector",
    "AdwinDrift",
    "BankSeries",
    "ColdStart",
    "CusumChart",
    "Detector",
    "EnsembleDetector",
    "EwmaChart",
    "Explanation",
    "GroupPool",
    "HalfSpaceTreesDetector",
    "KswinDrift",
    "PageHinkleyDrift",
    "PointResult",
    "RobustChart",
    "RunningStats",
    "Seasonal",
    "SeriesBank",
    "ShewhartChart",
    "arl_for_budget",
    "build_detector",
    "cusum_h_for_arl",
    "detector_names",
    "ewma_L_for_arl",
    "restore_detector",
    "score_from_ratio",
    "shewhart_k_for_arl",
]
