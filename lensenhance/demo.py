"""``lensenhance demo``: the package's jobs end to end, offline, from the shipped weights.

1. **simulate** a few Model-I-like lenses (`lensenhance.LensSimulator`, the classes
   no_sub, cdm and axion in turn): noisy low-resolution images with their exact sigma,
   and the noise-free high-resolution truth;
2. **super-resolve** them x2 with bicubic interpolation (the baseline), the best shipped
   residual network (`best_pretrained`) and the diffusion posterior ``diffusion-sr-x2``
   (its mean, one sample and the per-pixel standard deviation), each scored against the
   noise-free truth;
3. **denoise** one shipped HSC Wide cutout with ``diffusion-denoise-hsc`` (mean and
   standard deviation), scored against the Deep/UltraDeep image of the same galaxy;
4. **generate** a few lenses with the default generator (``ddpm-deeplense-ii``, see
   `~lensenhance.generate.generator.DEFAULT_GENERATOR`), set beside simulated images of
   the preset it was trained on;
5. write every input and output as FITS (`lensenhance.write_image`), one figure
   (``demo.png``) and return the metrics table, with the number of images behind every
   figure.

The diffusion models run with fewer posterior samples and sampler steps than the
benchmarks behind their model cards, so that the demo takes well under two minutes on a
2-core CPU; the table says which.
"""

import logging
from dataclasses import dataclass, replace
from io import BytesIO
from pathlib import Path

import numpy as np

from .generate.generator import DEFAULT_GENERATOR

__all__ = ["run_demo", "best_pretrained", "DemoSize", "FULL", "QUICK"]

log = logging.getLogger(__name__)

SR_POSTERIOR = "diffusion-sr-x2"
DENOISER = "diffusion-denoise-hsc"
GENERATOR = DEFAULT_GENERATOR
SCALE = 2


@dataclass(frozen=True)
class DemoSize:
    """How much the demo does: images, posterior samples and sampler steps."""

    n_lenses: int = 3
    sr_samples: int = 8
    sr_steps: int = 6
    hsc_samples: int = 16  # the model card's settings: a 64x64 cutout is cheap
    hsc_steps: int = 10
    n_generated: int = 3
    generate_steps: int = 20


#: The default run: about half a minute on one CPU core.
FULL = DemoSize()
#: ``--quick``: a few seconds of work, for a smoke test (the numbers mean little).
QUICK = DemoSize(n_lenses=2, sr_samples=2, sr_steps=2, hsc_samples=4, hsc_steps=2,
                 n_generated=3, generate_steps=4)


def best_pretrained(*, scale=2):
    """The shipped SR model for observed Model-I-like images with the best validation PSNR.

    See `lensenhance.pretrained.best_by_validation` for the rule; None when none is shipped.
    """
    from .pretrained import best_by_validation, sr_models_for

    return best_by_validation(sr_models_for(scale=scale))


# -- the four jobs ------------------------------------------------------------------------

def simulate_lenses(n, *, seed, progress):
    """``n`` model_i x2 lenses: LR CCDData (TAN WCS, exact sigma) and HR truth CCDData."""
    from astropy.nddata import CCDData, StdDevUncertainty

    from .simulate import LensSimulator, tan_wcs

    sim = LensSimulator.from_preset("model_i", substructure="all", seed=seed)
    ds = sim.simulate_pairs(n, scale=SCALE, progress=progress)
    unit = ds.attrs["unit"]
    lr_wcs = tan_wcs(ds["lr"].shape[1:], float(ds.attrs["lr_pixel_scale"]))
    hr_wcs = tan_wcs(ds["hr"].shape[1:], float(ds.attrs["hr_pixel_scale"]))
    classes = [str(c) for c in ds["substructure"].values]
    lr = [CCDData(ds["lr"].values[i], unit=unit, wcs=lr_wcs,
                  uncertainty=StdDevUncertainty(ds["lr_sigma"].values[i]),
                  meta={"SUBSTRUC": classes[i]}) for i in range(n)]
    hr = [CCDData(ds["hr"].values[i], unit=unit, wcs=hr_wcs, meta={"SUBSTRUC": classes[i]})
          for i in range(n)]
    return lr, hr


def super_resolve(lr, residual, size, *, seed, progress):
    """Every SR method's outputs (CCDData lists) and one posterior sample of each image."""
    from .enhance import Enhancer

    outputs = {"bicubic": Enhancer.interpolation("bicubic", scale=SCALE).enhance(lr)}
    if residual is not None:
        outputs[residual] = Enhancer.from_pretrained(residual).enhance(lr)
    posterior = Enhancer.from_pretrained(SR_POSTERIOR, n_samples=size.sr_samples,
                                         steps=size.sr_steps)
    outputs[SR_POSTERIOR], samples = posterior.enhance(lr, return_samples=True, seed=seed,
                                                       progress=progress)
    return outputs, [s.values[0] for s in samples]  # the first sample of each image


def denoise_hsc(size, *, seed):
    """The first shipped HSC cutout: Wide input, Deep truth, posterior output, one sample."""
    from .data import hsc_sample
    from .enhance import Enhancer
    from .io import read_image

    row = hsc_sample()[0]
    # The cutouts have no BUNIT: dimensionless, as they are to the model.
    wide = read_image(row["path"], unit="")
    deep = read_image(row["target_path"], unit="")
    denoiser = Enhancer.from_pretrained(DENOISER, n_samples=size.hsc_samples,
                                        steps=size.hsc_steps)
    mean, samples = denoiser.enhance(wide, return_samples=True, seed=seed)
    return {"name": str(row["name"]), "wide": wide, "deep": deep, "mean": mean,
            "sample": samples.values[0]}


def generate_lenses(size, *, seed, progress):
    """Generated lenses (DataArray) and two simulated sets of the generator's preset.

    The simulated sets are the noise-free images the generator was trained to draw: one
    to compare with, one for the floor of the comparison (simulated vs simulated).
    """
    from .generate import Generator
    from .simulate import LensSimulator

    generator = Generator.from_pretrained(GENERATOR)
    generated = generator.generate(size.n_generated, steps=size.generate_steps,
                                   sampler="ddim", seed=seed, progress=progress)
    sim = LensSimulator.from_preset(generator.preset, substructure="all", seed=seed)
    reference, floor = (sim.simulate_pairs(size.n_generated, progress=False)["hr"].values
                        for _ in range(2))
    return generator, generated, reference, floor


# -- scores -------------------------------------------------------------------------------

def score_images(outputs, truths, *, posterior=False):
    """Mean and standard error of PSNR and SSIM against each truth (its own data range),
    and for a posterior, the 68 % interval coverage of its standard deviation where there
    is light (truth above its median)."""
    from .evaluate.metrics import batch_metrics, summarize_metrics
    from .evaluate.uncertainty import interval_coverage

    truth = np.stack([np.asarray(t.data, np.float64) for t in truths])
    mean = np.stack([np.asarray(o.data, np.float64) for o in outputs])
    row = summarize_metrics(batch_metrics(mean, truth))
    row["n"] = len(truth)
    row["coverage_68"] = None
    if posterior:
        std = np.stack([o.uncertainty.array for o in outputs])
        light = truth > np.median(truth, axis=(1, 2), keepdims=True)
        row["coverage_68"] = interval_coverage(truth, mean, std, levels=0.68, mask=light)[0.68]
    return row


def score_generation(generator, generated, reference, floor):
    """Jensen-Shannon distance between the pixel histograms (in the generator's asinh
    stretch) of the generated and a simulated set, and between two simulated sets."""
    from .evaluate.metrics import pixel_histogram_distance

    sets = [generator.scaling.apply(images) for images in (generated.values, reference,
                                                            floor)]
    edges = (min(s.min() for s in sets), max(s.max() for s in sets))
    return {"n": len(generated), "preset": generated.attrs["preset"],
            "histogram_js": pixel_histogram_distance(sets[0], sets[1], range=edges),
            "histogram_js_floor": pixel_histogram_distance(sets[2], sets[1], range=edges)}


def _pm(row, key, digits):
    text = f"{row[key]:.{digits}f}"
    sem = row.get(f"{key}_sem")
    return text + (f" ± {sem:.{digits}f}" if sem is not None and np.isfinite(sem) else "")


def card_notes():
    """Notes on what the shipped model cards' figures come from, beside the demo's."""
    from .pretrained import model_card

    sr, hsc, gen = (model_card(name)["metrics"] for name in (SR_POSTERIOR, DENOISER,
                                                              GENERATOR))
    return [f"One cutout: compare the model with the Wide input, not with its model card's "
            f"mean over {hsc.get('n')} cutouts.",
            f"The model cards' figures come from {SR_POSTERIOR}: {sr.get('n_samples')} "
            f"samples of {sr.get('steps')} steps, {DENOISER}: {hsc.get('n_samples')} of "
            f"{hsc.get('steps')}, {GENERATOR}: {gen.get('sampler')} (the demo runs fewer "
            "where its labels say so, to stay fast)."]


def format_table(rows, generation, *, labels, notes=()):
    """The metrics as plain text: one line per method, with the number of images."""
    lines = ["Against the truth: PSNR [dB] and SSIM with data_range = the truth's max - min, "
             "mean ± standard error over n images;",
             "68 % cover: share of the pixels with light (truth above its median) inside "
             "mean ± std, 0.68 when calibrated.",
             "",
             f"{'task':<9}{'method':<52}{'n':>3}{'PSNR [dB]':>16}{'SSIM':>18}"
             f"{'68 % cover':>12}"]
    for (task, method), row in rows.items():
        cover = "-" if row["coverage_68"] is None else f"{row['coverage_68']:.3f}"
        lines.append(f"{task:<9}{labels[method]:<52}{row['n']:>3}{_pm(row, 'psnr', 2):>16}"
                     f"{_pm(row, 'ssim', 4):>18}{cover:>12}")
    lines += ["", "sr truth: the noise-free HR simulation. denoise truth: the HSC Deep/UltraDeep "
              "image of the same galaxy (itself noisy).", *notes,
              "",
              f"{'generate':<9}{labels[GENERATOR]:<52}{generation['n']:>3}  "
              f"pixel-histogram JS distance to {generation['n']} simulated "
              f"{generation['preset']} images {generation['histogram_js']:.3f}",
              f"{'':<64}(0: identical; floor, between two simulated sets: "
              f"{generation['histogram_js_floor']:.3f})"]
    return "\n".join(lines)


# -- files --------------------------------------------------------------------------------

def planned_files(out_dir, n_lenses, n_generated, sr_methods, hsc_name):
    """Every file the demo writes, by what it holds."""
    out_dir = Path(out_dir)
    files = {("sr", kind, i): out_dir / "sr" / f"{kind}_{i:03d}.fits"
             for i in range(n_lenses) for kind in ("lr", "hr", *sr_methods)}
    files.update({("denoise", kind, 0): out_dir / "denoise" / f"{hsc_name}_{kind}.fits"
                  for kind in ("wide", "deep", DENOISER)})
    files.update({("generate", GENERATOR, i): out_dir / "generate" / f"{GENERATOR}_{i:03d}.fits"
                  for i in range(n_generated)})
    files["figure"] = out_dir / "demo.png"
    return files


def _refuse_existing(files, overwrite):
    """Stop before any work when an earlier run's files are there and may not be replaced."""
    existing = [path for path in files.values() if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} and {len(existing) - 1} more of the demo's "
                              f"{len(files)} files exist")


def write_fits(files, images, *, overwrite, history):
    """Write ``{key: CCDData}`` to ``files[key]`` (atomically, each folder created)."""
    from .io import write_image

    for key, ccd in images.items():
        files[key].parent.mkdir(parents=True, exist_ok=True)
        write_image(ccd, files[key], overwrite=overwrite, history=history)


# -- figure -------------------------------------------------------------------------------

def plot_demo(path, panels, *, title, overwrite):
    """One PNG: a row of labelled panels per job (Agg canvas, no screen, written atomically).

    ``panels`` is ``{row label: [(title, image, norm, cmap), ...]}``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ._atomic import atomic_write_bytes

    n_cols = max(len(row) for row in panels.values())
    fig = Figure(figsize=(2.1 * n_cols, 2.5 * len(panels) + 0.4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), n_cols, squeeze=False)
    for ax_row, (label, row) in zip(axes, panels.items()):
        for ax in ax_row:
            ax.set_axis_off()
        for ax, (name, image, norm, cmap) in zip(ax_row, row):
            ax.set_axis_on()
            ax.imshow(image, origin="lower", norm=norm, cmap=cmap, interpolation="nearest")
            ax.set_title(name, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        ax_row[0].set_ylabel(label, fontsize=10)
    fig.suptitle(title, fontsize=9)
    buffer = BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    atomic_write_bytes(path, buffer.getvalue(), overwrite=overwrite)


def _norms(truth):
    """An asinh stretch fitted to a truth image (shared by the flux panels of a row), and a
    square-root stretch for standard deviations."""
    from astropy.visualization import (
        AsinhStretch,
        ImageNormalize,
        MinMaxInterval,
        PercentileInterval,
        SqrtStretch,
    )

    flux = ImageNormalize(truth, interval=PercentileInterval(99.5), stretch=AsinhStretch(0.05))
    return flux, lambda std: ImageNormalize(std, interval=MinMaxInterval(),
                                            stretch=SqrtStretch())


def figure_panels(lr, hr, sr, sr_sample, hsc, generated, reference):
    """The figure's rows: the first SR example, the HSC denoising, the generated lenses."""
    from .evaluate.metrics import image_metrics

    def psnr(out, truth):
        return f"\n{image_metrics(out.data, truth.data)['psnr']:.1f} dB"

    def names(method):
        return {"bicubic": "bicubic", SR_POSTERIOR: f"{SR_POSTERIOR} mean"}.get(
            method, f"{method} (best residual)")

    flux, std_norm = _norms(hr[0].data)
    std = sr[SR_POSTERIOR][0].uncertainty.array
    # Flux per pixel: an LR pixel holds SCALE**2 HR pixels' flux; shown per HR pixel.
    sr_row = [("LR input\n(noisy)", lr[0].data / SCALE**2, flux, "magma")]
    sr_row += [(names(m) + psnr(out[0], hr[0]), out[0].data, flux, "magma")
               for m, out in sr.items()]
    sr_row += [(f"{SR_POSTERIOR}\none sample", sr_sample, flux, "magma"),
               (f"{SR_POSTERIOR}\nstd", std, std_norm(std), "viridis"),
               ("HR truth\n(noise-free)", hr[0].data, flux, "magma")]

    flux, std_norm = _norms(hsc["deep"].data)
    std = hsc["mean"].uncertainty.array
    hsc_row = [("HSC Wide input" + psnr(hsc["wide"], hsc["deep"]), hsc["wide"].data, flux,
                "magma"),
               (f"{DENOISER} mean" + psnr(hsc["mean"], hsc["deep"]), hsc["mean"].data, flux,
                "magma"),
               (f"{DENOISER}\none sample", hsc["sample"], flux, "magma"),
               (f"{DENOISER}\nstd", std, std_norm(std), "viridis"),
               ("HSC Deep/UltraDeep\n(truth, itself noisy)", hsc["deep"].data, flux, "magma")]

    flux, _ = _norms(reference)
    gen_row = [(f"{GENERATOR}\n{cls}", image, flux, "magma")
               for image, cls in zip(generated.values[:5], generated["substructure"].values)]
    gen_row += [(f"simulated {generated.attrs['preset']}\n(for comparison)", image, flux,
                 "magma") for image in reference[:2]]
    return {f"super-resolution x{SCALE}\n(lens 0 of {len(lr)})": sr_row,
            f"denoising\n(HSC {hsc['name']})": hsc_row,
            f"generation\n({len(generated)} lenses)": gen_row}


# -- the demo -----------------------------------------------------------------------------

def method_labels(size, residual):
    """Each method's name in the table, with the samples and steps it ran with."""
    labels = {"bicubic": "bicubic",
              SR_POSTERIOR: f"{SR_POSTERIOR} mean ({size.sr_samples} samples, "
                            f"{size.sr_steps} steps)",
              "wide": "HSC Wide input (no denoising)",
              DENOISER: f"{DENOISER} mean ({size.hsc_samples} samples, "
                        f"{size.hsc_steps} steps)",
              GENERATOR: f"{GENERATOR} ({size.generate_steps} DDIM steps)"}
    if residual:
        labels[residual] = f"{residual} (best residual)"
    return labels


def run_demo(out_dir="demo_out", *, n_images=None, seed=0, overwrite=False, progress=True,
             quick=False):
    """Run the demo and return its table and the files it wrote.

    Parameters
    ----------
    out_dir : str or path-like
        Folder for ``sr/``, ``denoise/``, ``generate/`` (FITS) and ``demo.png``.
    n_images : int, optional
        Number of simulated lenses (classes no_sub, cdm, axion in turn); default 3 (2
        with ``quick``).
    seed : int
        Seed of the simulations, the posterior samples and the generator.
    overwrite : bool
        Replace files from an earlier run; otherwise the demo stops, before any work,
        when one of its files exists.
    progress : bool
        Show progress bars.
    quick : bool
        Fewer images, samples and steps (`QUICK`): a smoke test.

    Returns
    -------
    dict
        ``table`` (str), ``metrics`` (per ``(task, method)``: ``n``, mean and standard
        error of MSE/PSNR/SSIM, ``coverage_68``; and ``("generate", name)``: ``n`` and the
        pixel-histogram distances), ``files`` (paths), ``figure`` (its path) and
        ``size`` (`DemoSize`).
    """
    from ._runfolder import check_output_folder
    from ._validation import check_int
    from .data import hsc_sample
    from .generate import to_ccddata

    size = QUICK if quick else FULL
    if n_images is not None:
        size = replace(size, n_lenses=check_int(n_images, "n_images"))
    out_dir = check_output_folder(out_dir)
    residual = best_pretrained(scale=SCALE)
    sr_methods = ["bicubic", *([residual] if residual else []), SR_POSTERIOR]
    files = planned_files(out_dir, size.n_lenses, size.n_generated, sr_methods,
                          str(hsc_sample()["name"][0]))
    _refuse_existing(files, overwrite)

    log.info("simulating %d model_i x%d lenses", size.n_lenses, SCALE)
    lr, hr = simulate_lenses(size.n_lenses, seed=seed, progress=progress)
    log.info("super-resolving them: %s", ", ".join(sr_methods))
    sr, sr_samples = super_resolve(lr, residual, size, seed=seed, progress=progress)
    log.info("denoising an HSC Wide cutout with %s", DENOISER)
    hsc = denoise_hsc(size, seed=seed)
    log.info("generating %d lenses with %s", size.n_generated, GENERATOR)
    generator, generated, reference, floor = generate_lenses(size, seed=seed,
                                                             progress=progress)

    rows = {("sr", m): score_images(out, hr, posterior=m == SR_POSTERIOR)
            for m, out in sr.items()}
    rows[("denoise", "wide")] = score_images([hsc["wide"]], [hsc["deep"]])
    rows[("denoise", DENOISER)] = score_images([hsc["mean"]], [hsc["deep"]], posterior=True)
    generation = score_generation(generator, generated, reference, floor)

    images = {("sr", "lr", i): ccd for i, ccd in enumerate(lr)}
    images |= {("sr", "hr", i): ccd for i, ccd in enumerate(hr)}
    images |= {("sr", m, i): ccd for m, out in sr.items() for i, ccd in enumerate(out)}
    images |= {("denoise", kind, 0): hsc[key] for kind, key in
               (("wide", "wide"), ("deep", "deep"), (DENOISER, "mean"))}
    images |= {("generate", GENERATOR, i): ccd for i, ccd in enumerate(to_ccddata(generated))}
    write_fits(files, images, overwrite=overwrite, history=f"lensenhance demo, seed {seed}")
    plot_demo(files["figure"],
              figure_panels(lr, hr, sr, sr_samples[0], hsc, generated, reference),
              title=f"lensenhance demo, seed {seed}. {SR_POSTERIOR}: {size.sr_samples} "
                    f"posterior samples of {size.sr_steps} sampler steps; {DENOISER}: "
                    f"{size.hsc_samples} of {size.hsc_steps}; {GENERATOR}: "
                    f"{size.generate_steps} DDIM steps",
              overwrite=overwrite)

    table = format_table(rows, generation, labels=method_labels(size, residual),
                         notes=card_notes())
    return {"table": table, "metrics": {**rows, ("generate", GENERATOR): generation},
            "files": list(files.values()), "figure": files["figure"], "size": size}
