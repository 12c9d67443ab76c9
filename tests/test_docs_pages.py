"""The generated documentation pages: every shipped model and every benchmark result."""

import importlib
import json
import sys
from pathlib import Path

import pytest

from lensenhance.models import list_pretrained, model_card

EXT = Path(__file__).resolve().parents[1] / "docs" / "_ext"


@pytest.fixture(scope="module")
def pages():
    if not EXT.exists():
        pytest.skip("docs/_ext is not in this checkout")
    sys.path.insert(0, str(EXT))
    try:
        yield importlib.import_module("lensenhance_pages")
    finally:
        sys.path.remove(str(EXT))


def test_model_zoo_has_every_model_with_its_commands(pages):
    text = pages.model_zoo_page()
    for name in list_pretrained():
        card = model_card(name)
        assert f"\n{name}\n" in text, name  # its own section
        assert card["command"] in text  # how to rebuild it
        assert card["metrics"]["command"] in text  # how its figures were measured
    assert "± " in text


def test_benchmark_page_has_every_result_with_its_command(pages):
    text = pages.benchmarks_page()
    for filename, title, _ in pages.BENCHMARKS:
        path = pages.RESULTS / filename
        if path.exists():
            assert title in text
            assert json.loads(path.read_text())["command"] in text
    listed = {filename for filename, _, _ in pages.BENCHMARKS}
    assert {p.name for p in pages.RESULTS.glob("*.json")} <= listed  # none left out


@pytest.mark.parametrize("value, error, text", [(51.718, 0.1224, "51.72 ± 0.12"),
                                                 (0.99349, 0.00021, "0.99349 ± 0.00021"),
                                                 (9.9e-06, 3.2e-07, "9.9e-06 ± 3.2e-07"),
                                                 (47.0, float("nan"), "47.00")])
def test_value_and_error_keep_two_significant_digits_of_the_error(pages, value, error, text):
    assert pages._value_and_error(value, error) == text
