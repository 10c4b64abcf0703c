"""The examples in every module's docstrings, run under the names Vigil is installed as.

pytest's ``--doctest-modules`` would import ``stream/x.py`` as ``stream.x`` beside the
installed ``vigil.stream.x``, registering every detector twice; this runs them once.
"""

import doctest
import importlib
import pkgutil

import pytest

from vigil import detectors, stream, updaters

MODULES = sorted(
    info.name
    for package in (stream, detectors, updaters)
    for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")
)


def test_every_package_has_modules() -> None:
    assert {name.split(".")[1] for name in MODULES} == {"stream", "detectors", "updaters"}


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
