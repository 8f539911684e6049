"""Doctested examples in public docstrings, imported under their real package names."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["autotts.controllers", "autotts.controllers.actions", "autotts.controllers.aggregate",
           "autotts.controllers.confidence", "autotts.controllers.registry", "autotts.engines.answers",
           "autotts.engines.mock", "autotts.controllers.extractors", "autotts.controllers.aggregators"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failures, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failures == 0
