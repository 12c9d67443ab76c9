"""Pages generated at build time: the model zoo from the model cards, the benchmarks from
their JSON results.

Nothing on these pages is typed by hand: each build reads the cards shipped in
``lensenhance/pretrained/weights`` and the files in ``benchmark_results/``, so a page cannot
disagree with the package it documents. The pages are written to ``docs/generated/``
(ignored by git) when the builder starts, before Sphinx reads the sources.
"""

import json
import math
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1]
RESULTS = DOCS.parent / "benchmark_results"
OUT = DOCS / "generated"

#: Sections of the model zoo, in order: (task, title, what the models do).
TASKS = (
    ("sr", "Super-resolution", "Residual networks that map a cutout to one sampled s times "
     "finer; deterministic, with a Monte-Carlo propagation of the input's uncertainty."),
    ("posterior", "Conditional diffusion (posterior samples)",
     "A deterministic mean plus a diffusion model of the residual: many samples give the "
     "posterior mean and a calibrated per-pixel standard deviation."),
    ("denoise", "Denoising", "Residual attention U-Nets that take the image and its "
                             "per-pixel sigma."),
    ("generate", "Generation", "A class-conditional diffusion model of lensing images "
     "(no_sub, cdm, axion), sampled with classifier-free guidance."),
    ("classify", "Classification", "Small classifiers of the substructure class (no_sub, "
     "cdm, axion), trained on the DeepLense-faithful presets; their features measure "
     "generated images."),
    ("features", "Regression", "A small ResNet that measures the Einstein radius."),
)

#: Benchmark files, in order: (file name, title, what was measured).
BENCHMARKS = (
    ("sr_x2_n1000.json", "Super-resolution x2",
     "Every x2 network against the interpolation baselines on simulated model_i pairs, "
     "with paired differences against the model chosen by its validation PSNR, and the "
     "downstream theta_E regression over three seeds."),
    ("sr_x2_n100_self_ensemble.json", "Super-resolution x2 with the D4 self-ensemble",
     "Each network with and without averaging over the 8 rotations and flips."),
    ("sr_x4_n300.json", "Super-resolution x4", "edsr-x4 against the baselines."),
    ("sr_lens64_x2_n300.json", "Super-resolution x2 of noise-free lenses",
     "edsr-lens64-x2 on noise-free model_ii images on the preset's own grid."),
    ("sr_x2_diffusion_n100.json", "Diffusion super-resolution x2",
     "diffusion-sr-x2's posterior mean and calibration against its deterministic base."),
    ("sr_x2_fast_n100.json", "Few-step diffusion super-resolution x2",
     "diffusion-sr-x2-fast at 1, 2 and 4 steps against its 10-step teacher diffusion-sr-x2 "
     "on the same images: posterior mean, coverage overall, per brightness decile, SNR bin "
     "and class, TARP, fine-scale power, seconds per image."),
    ("denoise_n100.json", "Denoising, simulated",
     "The denoisers against tuned classical baselines on simulated images of known noise."),
    ("denoise_hsc_val.json", "Denoising, real HSC Wide against Deep/UltraDeep",
     "All validation pairs of the HSC sample; the deep image is the reference."),
    ("generate_n200.json", "Generation", "ddpm-lens64 against simulated images: Frechet "
                                         "and kernel distances with their floors."),
    ("generate_n1000.json", "Generation of DeepLense classes",
     "ddpm-deeplense-ii against simulated deeplense_model_ii images at n = 1000, in the "
     "features of the substructure classifier: FD and KID with their floors, per-class FD "
     "and conditional fidelity, train-on-generated against train-on-real, memorisation, "
     "and the verdict on each target."),
    ("generate_n1000_guidance2.json", "Generation of DeepLense classes, guided",
     "ddpm-deeplense-ii with classifier-free guidance 2 (DDIM-50), the same measures at "
     "n = 1000."),
    ("generate_chain_n1000.json", "Generation of 128 x 128 Model I-like images",
     "ddpm-deeplense-i-chain taken to 128 x 128 by edsr-deeplense-i-x2 against simulated "
     "128 x 128 deeplense_model_i images, in the features of lens-classifier-deeplense-i."),
    ("detectability_n100.json", "Substructure detectability",
     "How much of the substructure is in the images: per preset and class, sub_chi2 (the "
     "noise-free image with against without its substructure, against the observed "
     "image's noise) and sub_chi2_refit (after refitting the smooth lens and source)."),
    ("downstream_n300.json", "Downstream science",
     "Substructure classification (AUC) and Einstein-radius regression (MAE) by networks "
     "trained on HR images, given HR, bicubic LR and each super-resolution model's output; "
     "the share of the LR -> HR gap each closes."),
    ("speed_enhance.json", "Speed of the enhancement engine",
     "Whole against tiled, dask workers, the command line's peak memory at 4096x4096, "
     "throughput and share of the CPU's convolution peak, seams."),
    ("speed_simulate.json", "Speed of the simulator", "Images per second, 1 and 2 workers."),
    ("speed_posterior.json", "Speed of the posterior models",
     "Seconds per cutout against samples and steps: one after another, the sampler on a "
     "batch of cutouts, and a catalog run; the peak memory of each."),
    ("speed_posterior_10step.json", "Speed of the 10-step posterior models",
     "The same figures for the 10-step models the few-step ones were distilled from."),
    ("speed_posterior_denoise_32.json", "Speed of diffusion-denoise-fast, 32 cutouts",
     "The denoising student at 1 and 2 steps timed on 32 cutouts per figure, so that the "
     "catalog's fixed cost is spread over enough rows."),
    ("denoise_fast_n100.json", "Few-step diffusion denoising",
     "diffusion-denoise-fast at 1, 2 and 4 steps against its 10-step teacher "
     "diffusion-denoise on the same simulated images."),
    ("denoise_hsc_fast_val.json", "Few-step diffusion denoising of real HSC cutouts",
     "diffusion-denoise-hsc-fast (2 steps) against its 10-step teacher diffusion-denoise-hsc "
     "on all 132 HSC validation pairs, the deep image the reference."),
    ("speed_memory.json", "Memory against the image size",
     "The command line's peak memory and time per megapixel for x2 of 1024^2, 4096^2 and "
     "8192^2 FITS images: fsrcnn-x2, and diffusion-sr-x2-fast writing its std map."),
    ("speed_memory_one_machine.json", "Posterior memory on one machine",
     "diffusion-sr-x2-fast's command-line peak memory at 1024^2, 2048^2 and 4096^2, every "
     "side in one session on one machine: the peak is not monotonic in the size."),
    ("speed_memory_16samples.json", "Memory of a posterior at its default samples",
     "diffusion-sr-x2-fast at 16 samples and 2 steps on small images: the memory of a tile's "
     "samples."),
)


def _rst_table(header, rows):
    """A list-table directive."""
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return lines + [""]


def _number(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
        return f"{value:.4g}"
    return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"


def _value_and_error(value, error):
    """``value ± error``, the error to 2 significant digits and the value to match."""
    if not (isinstance(error, float) and math.isfinite(error) and error > 0):
        return _number(value)
    if abs(value) < 1e-3 or abs(value) >= 1e5:
        return f"{value:.4g} ± {error:.2g}"
    decimals = max(0, 1 - math.floor(math.log10(error)))
    return f"{value:.{decimals}f} ± {error:.{decimals}f}"


#: Suffixes of the key that holds a figure's standard error beside it (``psnr_sem``,
#: ``kid_se``).
ERROR_SUFFIXES = ("_sem", "_se")


def _error_key(figures, key):
    """The key of ``key``'s standard error in ``figures``, or None."""
    return next((key + suffix for suffix in ERROR_SUFFIXES if key + suffix in figures), None)


def _is_error(figures, key):
    """Whether ``key`` is the standard error of a numeric figure beside it."""
    return any(key.endswith(suffix) and isinstance(figures.get(key[:-len(suffix)]),
                                                   (int, float))
               for suffix in ERROR_SUFFIXES)


def _with_error(metrics, key):
    """``value ± se`` from a card's metrics (``{key}_sem``, ``{key}_se`` or a
    ``{mean, se}`` dict)."""
    value = metrics.get(key)
    if isinstance(value, dict) and "mean" in value:
        value, error = value["mean"], value.get("se")
    else:
        error = metrics.get(_error_key(metrics, key))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return ""
    return _value_and_error(value, error)


def _flatten(figures, prefix=""):
    """(dotted key, scalar) pairs of a nested dict; long lists are summarised. A figure
    with its standard error beside it (``{key}_sem``, ``{key}_se``) gives one pair,
    ``value ± se``."""
    for key, value in figures.items():
        name = f"{prefix}{key}"
        if _is_error(figures, key) or key == "targets":  # shown with its figure; not figures
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and _error_key(figures, key):
            yield name, _with_error(figures, key)
        elif isinstance(value, dict) and "mean" in value:  # a mean with its standard error
            yield name, _value_and_error(value["mean"], value.get("se"))
        elif isinstance(value, dict):
            yield from _flatten(value, name + ".")
        elif isinstance(value, list):
            if all(isinstance(v, (int, float)) for v in value) and len(value) <= 8:
                yield name, ", ".join(_number(v) for v in value)
        elif isinstance(value, float) and not math.isfinite(value):
            yield name, str(value)
        else:
            yield name, _number(value)


def _code(command):
    return [".. code-block:: text", "", f"    {command}", ""]


def model_zoo_page():
    """The model zoo as reStructuredText."""
    from lensenhance.pretrained import list_pretrained, model_card, weights_path

    cards = {name: model_card(name) for name in list_pretrained()}
    lines = ["Model zoo", "=========", "",
             "Every model that ships with the package, generated from its model card when "
             "these pages are built (``lensenhance models`` prints the same figures). Each "
             "figure gives ``n``, the number of images it comes from, and a standard error "
             "where one applies; the command under *measured by* reproduces the figures, and "
             "the command under *rebuilt by* trains the weights again. Load any of them with "
             "``Enhancer.from_pretrained(name)`` (or ``Generator.from_pretrained`` for the "
             "generator).", ""]
    for task, title, what in TASKS:
        members = [name for name, card in cards.items() if card.get("task") == task]
        if not members:
            continue
        lines += [title, "-" * len(title), "", what, ""]
        rows = []
        for name in members:
            card, metrics = cards[name], cards[name].get("metrics", {})
            headline = {"sr": "psnr", "posterior": "psnr", "denoise": "psnr", "generate": "fd",
                        "classify": "accuracy", "features": "theta_e_mae_arcsec"}[task]
            rows.append([f"`{name}`_", card.get("architecture", ""),
                         f"x{card['scale']}" if "scale" in card else "-",
                         f"{card.get('parameters', 0):,}", card.get("preset", ""),
                         _with_error(metrics, headline), _number(metrics.get("n", ""))])
        lines += _rst_table(["model", "architecture", "scale", "parameters", "trained on",
                             {"sr": "PSNR (dB)", "posterior": "PSNR (dB)",
                              "denoise": "PSNR (dB)", "generate": "FD",
                              "classify": "accuracy",
                              "features": "theta_E MAE (arcsec)"}[task], "n"], rows)
        for name in members:
            lines += _model_section(name, cards[name], weights_path(name))
    return "\n".join(lines) + "\n"


def _model_section(name, card, path):
    metrics = dict(card.get("metrics", {}))
    lines = [name, "^" * len(name), ""]
    facts = [("task", card.get("task")), ("architecture", card.get("architecture")),
             ("parameters", f"{card.get('parameters', 0):,}"),
             ("training data", card.get("preset")), ("degradation", card.get("degradation")),
             ("base model", card.get("base_model")),
             ("training steps", _number(card.get("steps"))),
             ("wall time", f"{card['wall_time_s'] / 3600:.2f} h on {card.get('machine')}"
              if isinstance(card.get("wall_time_s"), (int, float)) else None),
             ("weights", f"``{path.name}``, {path.stat().st_size / 1e6:.1f} MB, "
                         f"sha256 ``{card.get('sha256', '')[:16]}...``"),
             ("license", card.get("license")), ("note", card.get("note"))]
    lines += [f":{key}: {value}" for key, value in facts if value not in (None, "")]
    lines += ["", "Rebuilt by:", "", *_code(card.get("command", "(not recorded)"))]
    command = metrics.pop("command", None)
    differences = metrics.pop("psnr_differences", None) or {}
    compared = metrics.pop("compared", None)
    lines += [f"Measured on n = {metrics.get('n')} images by:", "",
              *_code(command or "(not recorded)")]
    scalars = [(key, value) for key, value in _flatten(metrics) if key != "n"]
    if scalars:
        lines += _rst_table(["figure", "value"], [[f"``{k}``", v] for k, v in scalars])
    if differences:
        lines += ["Paired PSNR differences (the same images; significant: beyond 2 standard "
                  "errors):", ""]
        lines += _rst_table(["pair", "mean (dB)", "n", "significant"],
                            [[pair, _value_and_error(d["mean"], d["se"]), d["n"],
                              "yes" if d["significant"] else "no"]
                             for pair, d in differences.items()])
    if compared:
        lines += ["Other rows of the same benchmark: "
                  + "; ".join(f"{key} {', '.join(f'{k} {v}' for k, v in _flatten(row))}"
                              for key, row in compared.items()) + ".", ""]
    return lines


def _sr_table(result):
    """``benchmark sr``'s table rebuilt from its rows, with the standard errors (older
    runs stored a table without them), followed by the theta_E regression it printed."""
    from lensenhance.benchmark.sr import format_sr_table

    rows = result["rows"]
    classes = [c for c in ("no_sub", "cdm", "axion")
               if all(c in row["metrics"] for row in rows.values())]
    table = format_sr_table(rows, classes, result.get("differences"))
    _, marker, regression = result.get("table", "").partition("theta_E regression")
    return table + ("\n" + marker + regression if marker else "")


def _benchmark_table(result):
    """The plain text the benchmark printed, from its JSON."""
    from lensenhance.benchmark import denoise, detectability, downstream, generate, speed

    if "rows" in result and "table" in result:  # benchmark sr
        return _sr_table(result)
    kind = result.get("benchmark")
    if kind == "detectability":
        return detectability.format_detectability_table(result)
    if kind == "downstream":
        return downstream.format_downstream_table(result)
    if kind == "denoise":
        return denoise.format_denoise_table(result)
    if kind == "speed/enhance":
        return speed.format_enhance_table(result)
    if kind == "speed/simulate":
        return speed.format_simulate_table(result)
    if kind == "speed/memory":
        return speed.format_memory_table(result)
    if kind == "speed/posterior":
        from lensenhance.benchmark.speed_posterior import format_posterior_speed_table

        return format_posterior_speed_table(result)
    if "generator" in result:
        return generate.format_generate_table(result)
    raise ValueError(f"no formatter for the benchmark {kind!r}")


def benchmarks_page():
    """The benchmark results as reStructuredText."""
    lines = ["Benchmarks", "==========", "",
             "Every number below is read from a JSON file in ``benchmark_results/`` when "
             "these pages are built, and printed by the same function as the command that "
             "wrote it. Each section gives the command (rerun it to check the figures), the "
             "number of images and, where the benchmark timed anything, the machine it ran "
             "on. Standard errors (±) are of the mean over the images; paired differences "
             "compare models on the same images and say whether the difference is beyond "
             "two standard errors.", ""]
    for filename, title, what in BENCHMARKS:
        path = RESULTS / filename
        if not path.exists():
            continue
        result = json.loads(path.read_text())
        lines += [title, "-" * len(title), "", what, "",
                  f":file: ``benchmark_results/{filename}``"]
        if result.get("n") is not None:
            lines.append(f":images: {result['n']}")
        machine = result.get("note") or result.get("machine")
        if machine:
            if isinstance(machine, dict):
                machine = ", ".join(f"{k} {v}" for k, v in machine.items())
            lines.append(f":machine: {machine}")
        lines += ["", "Command:", "", *_code(result.get("command", "(not recorded)")),
                  "Result:", "", ".. code-block:: text", ""]
        lines += [f"    {line}" for line in _benchmark_table(result).splitlines()] + [""]
    return "\n".join(lines) + "\n"


def _write_if_changed(path, text):
    # An unchanged file keeps its time stamp, so Sphinx does not rebuild the page.
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def generate_pages(app):
    OUT.mkdir(exist_ok=True)
    _write_if_changed(OUT / "model_zoo.rst", model_zoo_page())
    _write_if_changed(OUT / "benchmarks.rst", benchmarks_page())


def setup(app):
    app.connect("builder-inited", generate_pages)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
