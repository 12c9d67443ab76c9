"""The generated documentation pages: every shipped model and every benchmark result."""

import importlib
import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from lensenhance.pretrained import list_pretrained, model_card

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


def test_sr_tables_carry_standard_errors(pages):
    # every benchmark sr table is rebuilt from its rows: PSNR and SSIM with their errors,
    # also for runs that stored a table without them
    for filename, _, _ in pages.BENCHMARKS:
        path = pages.RESULTS / filename
        result = json.loads(path.read_text()) if path.exists() else {}
        if "rows" not in result or "table" not in result:
            continue
        table = pages._benchmark_table(result)
        for method in result["rows"]:
            line = next(line for line in table.splitlines() if line.startswith(method + " "))
            assert line.count("±") == 2, (filename, line)
        if "regression" in result:
            assert "theta_E regression" in table


def test_model_zoo_pairs_each_figure_with_its_standard_error(pages):
    text = pages.model_zoo_page()
    assert "_sem``" not in text and "_se``" not in text  # no error on a row of its own
    for name in list_pretrained(task="generate"):
        metrics = model_card(name)["metrics"]
        if "kid_se" in metrics:
            assert pages._value_and_error(metrics["kid"], metrics["kid_se"]) in text
    assert "class-conditional" in text and "unconditional DDPM" not in text
    figures = dict(pages._flatten({"kid": 0.0884, "kid_se": 0.0027, "kid_floor": 0.005,
                                   "rows": {"a": {"psnr": 40.0, "psnr_sem": 0.12}}}))
    assert figures == {"kid": "0.0884 ± 0.0027", "kid_floor": "0.005",
                       "rows.a.psnr": "40.00 ± 0.12"}


def test_readme_benchmark_commands_are_the_recorded_ones():
    readme = Path(__file__).resolve().parents[1] / "README.md"
    results = Path(__file__).resolve().parents[1] / "benchmark_results"
    if not readme.exists() or not results.exists():
        pytest.skip("README.md or benchmark_results/ is not in this checkout")
    text = " ".join(readme.read_text().split())  # a command may wrap over lines
    commands = {}
    for span in re.findall(r"`(lensenhance benchmark [^`]*)`", text):
        written = re.search(r"--json (\S+)", span)
        if written:
            commands[written.group(1)] = " ".join(shlex.split(span))  # quoting aside
    for path in sorted(results.glob("*.json")):
        recorded = json.loads(path.read_text()).get("command")
        if recorded:
            assert commands.get(f"benchmark_results/{path.name}") == " ".join(
                shlex.split(recorded)), path.name
    assert all(key.startswith("benchmark_results/") for key in commands), commands


def test_readme_generate_tables_are_rendered_from_their_json():
    """Every ``benchmark generate`` table in the README is its JSON as the command prints
    it (`format_generate_markdown`), never typed: a rerun that changes the JSON fails here
    until the README shows the new table."""
    from lensenhance.benchmark.generate import format_generate_markdown

    root = Path(__file__).resolve().parents[1]
    readme, results = root / "README.md", root / "benchmark_results"
    if not readme.exists() or not results.exists():
        pytest.skip("README.md or benchmark_results/ is not in this checkout")
    text = readme.read_text()
    rendered = [path for path in sorted(results.glob("generate_*.json"))
                if "generator" in json.loads(path.read_text())]
    assert any(path.name == "generate_n1000.json" for path in rendered)  # the headline
    for path in rendered:
        block = format_generate_markdown(path)
        assert block in text, f"README.md's table of {path.name} is not its JSON; it is:\n{block}"
    # no other table of the benchmark, typed by hand
    assert text.count("```\ngenerator ") == len(rendered)
