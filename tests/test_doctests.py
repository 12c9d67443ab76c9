"""The Examples sections of the docstrings run, and show what they claim."""

import doctest
import importlib
import pkgutil

import pytest

import lensenhance

# Modules whose import runs something (the command line's entry point).
SKIP = {"lensenhance.__main__"}


def _modules():
    names = ["lensenhance"]
    for info in pkgutil.walk_packages(lensenhance.__path__, "lensenhance."):
        if info.name not in SKIP:
            names.append(info.name)
    return names


def _examples(module):
    finder = doctest.DocTestFinder(exclude_empty=True)
    return [test for test in finder.find(module, module.__name__) if test.examples]


MODULES = [name for name in _modules() if _examples(importlib.import_module(name))]


def test_the_docstrings_have_examples():
    # a check that the finder works: these modules document themselves by example
    for name in ("lensenhance.enhance.enhancer", "lensenhance.evaluate.metrics",
                 "lensenhance.predict.tiling", "lensenhance.io.wcs", "lensenhance.io.images",
                 "lensenhance.predict.normalization", "lensenhance.evaluate.uncertainty",
                 "lensenhance.nn.inference"):
        assert name in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in _examples(module):
        # only the examples written in this module, not those of names it imports
        if test.name.startswith(name):
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"
