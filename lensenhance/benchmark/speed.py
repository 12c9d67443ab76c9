"""The ``speed`` benchmark: simulation images per second, and the enhancement engine.

Simulation part (`benchmark_simulate`): images per second for 1 and 2 workers.

Each timing is one end-to-end `LensSimulator.simulate_pairs` call (seeds, workers,
concatenation and the xarray Dataset), after a warm-up that starts the worker
processes and builds their lenstronomy models, which are kept between calls. The
best of ``repeats`` runs is reported (the worker counts interleaved), because the
machine may be shared; the start-up time of the first call (worker processes,
lenstronomy imports and model objects) is reported separately as ``warmup_s``.

On a shared machine the wall-clock rates understate what the code does, so the CPU
time of the run (this process and its worker processes, with psutil) is reported too,
with ``idle_estimate_images_per_s`` = min(workers, cores) / CPU seconds per image: the
rate an otherwise idle machine would allow.

Enhancement part (`benchmark_enhance`): whole-image against tiled time, dask workers
against one process using the same cores, the peak resident memory of the command line
on a large FITS image (a child process's own VmHWM), and per model the input
megapixels per second and the share of this CPU's convolution peak (a large plain
``conv2d``) it sustains. Every figure carries the number of images and repeats it
comes from; the best of the repeats counts.
"""

from __future__ import annotations

import math
import os
import platform
import time

import numpy as np

from ..predict.tiling import plan_tiles
from . import write_json

__all__ = ["benchmark_simulate", "benchmark_enhance", "benchmark_memory", "SIMULATE_TARGETS",
           "ENHANCE_TARGETS", "SEAM_RUNS", "MEMORY_SIZES"]

#: Targets of issue 9, and of issue 23's bounded memory (the 8192^2 peak, and its growth
#: over the 4096^2 one).
ENHANCE_TARGETS = {"tiled_over_whole_1024": 1.15, "cli_peak_rss_gb_4096": 1.5,
                   "share_of_conv_peak": 0.5, "cli_peak_rss_gb_8192": 1.5,
                   "peak_growth_4096_to_8192": 1.10}

#: Sides of the command line's memory runs: the first gives the time per megapixel the
#: others are compared with.
MEMORY_SIZES = (1024, 4096, 8192)

#: Runs of the plain convolution that measures the CPU's peak (each about 30 ms).
PEAK_REPEATS = 20

#: Targets of issue 3 on a 2-core machine: images/s with 2 workers, and 2-vs-1 speedup.
SIMULATE_TARGETS = {
    ("model_i", "no_sub"): 300.0,
    ("model_i", "cdm"): 100.0,
    "speedup": 1.6,
}


def _cpu_seconds():
    """CPU time of this process and all its descendants (the workers), or None."""
    try:
        import psutil
    except ImportError:  # psutil comes with dask.distributed; without it, no CPU figures
        return None
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:  # a process that just ended
            pass
    return total


def _rate(sim, n, scale, workers, seed):
    """Images per second (wall) and CPU seconds per image (all processes) of one run."""
    cpu = _cpu_seconds()
    start = time.perf_counter()
    sim.simulate_pairs(n, scale=scale, workers=workers, progress=False, seed=seed)
    rate = n / (time.perf_counter() - start)
    cpu_after = _cpu_seconds()
    return rate, None if cpu is None else (cpu_after - cpu) / n


def benchmark_simulate(*, n=2000, workers=(1, 2), presets=("model_i",),
                       substructures=("no_sub", "cdm"), scale=2, repeats=2, json_path=None,
                       verbose=True):
    """Measure simulation throughput (images/s) per preset, class and worker count.

    Parameters
    ----------
    n : int, optional
        Pairs per timed run.
    workers : sequence of int, optional
        Worker counts to time; the speedup is that of the largest over 1.
    presets, substructures : sequence of str, optional
        What to simulate.
    scale : int, optional
        Pair scale.
    repeats : int, optional
        Timed runs per setting; the fastest counts.
    json_path : str or os.PathLike, optional
        Write the result as JSON there (atomically).
    verbose : bool, optional
        Print a table with the targets.

    Returns
    -------
    dict
        ``results`` (one entry per preset, class and worker count: images/s, seconds,
        CPU ms per image, idle-machine estimate, warm-up seconds),
        ``speedup`` and ``passed`` (the targets), each ``measured`` and
        ``idle_estimate``; ``targets``, ``load_average`` and ``machine``.
    """
    from ..simulate import LensSimulator

    workers = tuple(int(w) for w in workers)
    if not workers or min(workers) < 1:
        raise ValueError(f"workers must be positive integers, got {workers}")
    results = []
    speedups = {"measured": {}, "idle_estimate": {}}
    passed = {"measured": {}, "idle_estimate": {}}
    for preset in presets:
        for substructure in substructures:
            sim = LensSimulator.from_preset(preset, substructure=substructure, seed=0)
            warmup = {}
            for w in workers:
                start = time.perf_counter()
                _rate(sim, 16 * w, scale, w, seed=1)  # start the workers, build their models
                warmup[w] = time.perf_counter() - start
            # interleave the worker counts so that load from other jobs hits all alike
            timings = {w: [] for w in workers}
            for r in range(repeats):
                for w in workers:
                    timings[w].append(_rate(sim, n, scale, w, seed=2 + r))
            rates = {"measured": {}, "idle_estimate": {}}
            for w in workers:
                rate, cpu = max(timings[w])
                # what the CPU time allows on an otherwise idle machine with >= w cores
                estimate = None if cpu is None else min(w, os.cpu_count() or 1) / cpu
                rates["measured"][w] = rate
                rates["idle_estimate"][w] = estimate
                results.append({"preset": preset, "substructure": substructure, "workers": w,
                                "n": n, "images_per_s": rate, "seconds": n / rate,
                                "all_images_per_s": [t[0] for t in timings[w]],
                                "cpu_ms_per_image": None if cpu is None else 1e3 * cpu,
                                "idle_estimate_images_per_s": estimate,
                                "warmup_s": warmup[w]})
            key = f"{preset}/{substructure}"
            for kind, by_workers in rates.items():
                if None not in by_workers.values():
                    _check_targets(key, (preset, substructure), by_workers, speedups[kind],
                                   passed[kind])
    result = {
        "benchmark": "speed/simulate",
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "scale": scale,
        "repeats": repeats,
        "results": results,
        "speedup": speedups,
        "targets": {f"{k[0]}/{k[1]}" if isinstance(k, tuple) else k: v
                    for k, v in SIMULATE_TARGETS.items()},
        "passed": passed,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
    }
    if verbose:
        print(format_simulate_table(result))
    if json_path is not None:
        write_json(result, json_path)
    return result


def _check_targets(key, target_key, rates, speedups, passed):
    """Speedup of the most workers over one, and the issue's targets, for one setting."""
    top = max(rates)
    if 1 in rates and top > 1:
        speedups[key] = rates[top] / rates[1]
    target = SIMULATE_TARGETS.get(target_key)
    if target is not None and 2 in rates:
        passed[f"{key} >= {target:g}/s with 2 workers"] = bool(rates[2] >= target)
    if key in speedups and top == 2:
        passed[f"{key} speedup >= {SIMULATE_TARGETS['speedup']}"] = \
            bool(speedups[key] >= SIMULATE_TARGETS["speedup"])


def format_simulate_table(result):
    """The benchmark result as a text table."""
    lines = [f"{'preset/class':<20}{'workers':>8}{'images/s':>11}{'CPU ms/img':>12}"
             f"{'idle est./s':>13}{'warm-up s':>11}"]
    for row in result["results"]:
        cpu, estimate = row["cpu_ms_per_image"], row["idle_estimate_images_per_s"]
        lines.append(f"{row['preset'] + '/' + row['substructure']:<20}{row['workers']:>8}"
                     f"{row['images_per_s']:>11.1f}"
                     f"{'-' if cpu is None else format(cpu, '.2f'):>12}"
                     f"{'-' if estimate is None else format(estimate, '.0f'):>13}"
                     f"{row['warmup_s']:>11.2f}")
    if result.get("load_average"):
        lines.append("load average (1, 5, 15 min) at the end: "
                     + ", ".join(f"{x:.2f}" for x in result["load_average"]))
    for kind, label in (("measured", "measured"), ("idle_estimate", "idle-machine estimate")):
        for key, value in result["speedup"][kind].items():
            lines.append(f"speedup {key} ({label}): {value:.2f}x")
        for check, ok in result["passed"][kind].items():
            lines.append(f"{'PASS' if ok else 'MISS'}  {check} ({label})")
    return "\n".join(lines)




# -- enhancement ------------------------------------------------------------------------------


def _best_time(func, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times), times


def _conv_flops(module, shape):
    """Floating-point operations of one forward pass (2 per multiply-add of each conv)."""
    import torch

    total = 0

    def hook(layer, inputs, output):
        nonlocal total
        kernel = layer.weight.shape  # (out, in/groups, kh, kw) or (in, out/groups, ...)
        if isinstance(layer, torch.nn.ConvTranspose2d):
            total += 2 * inputs[0].numel() * kernel[1] * kernel[2] * kernel[3]
        else:
            total += 2 * output.numel() * kernel[1] * kernel[2] * kernel[3]

    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, kinds)]
    try:
        with torch.inference_mode():
            module(torch.zeros(shape))
    finally:
        for handle in handles:
            handle.remove()
    return total


def _conv_peak(repeats):
    """GFLOP/s of a large plain 3x3 conv2d (64 -> 64 channels, 256 x 256), float32.

    The faster of the two memory layouts (NCHW and channels_last, which the predictors
    use), so that a model's share is of the best this CPU does, not of a slow layout.
    """
    import torch

    conv = torch.nn.Conv2d(64, 64, 3, padding=1)
    x = torch.randn(1, 64, 256, 256)
    best = math.inf
    with torch.inference_mode():
        for layout in (torch.contiguous_format, torch.channels_last):
            layer, data = conv.to(memory_format=layout), x.contiguous(memory_format=layout)
            layer(data)
            best = min(best, _best_time(lambda layer=layer, data=data: layer(data), repeats)[0])
    return 2 * 64 * 64 * 9 * 256 * 256 / best / 1e9


def _lens_field(size, seed=0, noise=1.0):
    """A smooth field with lens-like rings and Gaussian noise of sigma ``noise``, float32."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] / 64.0
    field = 20 * (np.sin(x) * np.cos(1.3 * y)) ** 2 + 5
    return (field + rng.normal(0, noise, (size, size))).astype(np.float32)


# Runs the command line in a fresh interpreter and writes that process's peak resident
# memory (VmHWM: per address space, so not the parent's pages a fork inherits, which
# RUSAGE_CHILDREN would count) to the file named by the first argument.
_PEAK_WRAPPER = """
import resource, sys
out, args = sys.argv[1], sys.argv[2:]
from lensenhance.cli import main
try:
    main(args)
except SystemExit as end:
    code = end.code
else:
    code = 0
try:
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(out, "w") as handle:
    handle.write(str(peak * 1024))
sys.exit(code)
"""


def _cli_peak_rss(size, model, tile_size, options=()):
    """Peak RSS (bytes) and wall time of ``lensenhance enhance`` on a size^2 FITS file."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from astropy.io import fits

    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "big.fits"
        fits.writeto(source, _lens_field(size), fits.Header({"BUNIT": "electron"}))
        peak_file = Path(folder) / "peak"
        command = [sys.executable, "-c", _PEAK_WRAPPER, str(peak_file), "-q", "enhance",
                   str(source), "--model", model, "--out", str(Path(folder) / "out")]
        if tile_size:
            command += ["--tile-size", str(tile_size)]
        command += list(options)
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds = time.perf_counter() - start
        return int(peak_file.read_text()), seconds


#: Seam measurements, tiled against whole, exact or not (raunet-denoise tiles exactly:
#: its run checks that it stays 0): (model, image side, tile side, posterior
#: samples, sampler steps).
SEAM_RUNS = (("rcan-x2", 512, 160, None, None), ("raunet-denoise", 384, 160, None, None),
             ("diffusion-denoise", 192, 96, 4, 4), ("diffusion-denoise", 768, 576, 4, 4))


def _seam_error(name, size, tile_size, n_samples, steps, noise=0.2):
    """Tiled against whole-image output of a model (one with global operations or not).

    The differences are given beside the input's noise and, for a posterior, the median
    of its standard deviation: a seam well below both is one no one can see. The field's
    noise (0.2 on a 5-25 signal) is inside every shipped denoiser's trained SNR range.
    """
    from astropy.nddata import CCDData, StdDevUncertainty

    from ..enhance.enhancer import Enhancer

    options = {} if n_samples is None else {"n_samples": n_samples, "steps": steps}
    image = _lens_field(size, seed=2, noise=noise)
    ccd = CCDData(image, unit="adu", uncertainty=StdDevUncertainty(np.full_like(image, noise)))
    tiled = Enhancer.from_pretrained(name, device="cpu", tile_size=tile_size, **options)
    whole = Enhancer.from_pretrained(name, device="cpu", tile_size=None, **options)
    reference = whole.enhance(ccd)
    difference = tiled.enhance(ccd).data - reference.data
    n_tiles = len(plan_tiles(image.shape, tile_size=tile_size, halo=tiled.halo,
                             overlap=tiled.overlap))
    std = None if reference.uncertainty is None else \
        float(np.median(reference.uncertainty.array))
    return {"model": name, "image": [size, size], "n_images": 1, "tile_size": tile_size,
            "halo": tiled.halo, "overlap": tiled.overlap, "n_tiles": n_tiles,
            "n_samples": n_samples, "steps": steps, "input_noise_sigma": noise,
            "median_output_std": std,
            "max_abs_difference": float(np.abs(difference).max()),
            "rms_difference": float(np.sqrt(np.mean(difference**2)))}


def benchmark_enhance(*, size=1024, model="edsr-x2", models=None, model_size=256, repeats=2,
                      memory_size=4096, memory_model=None, seams=SEAM_RUNS, json_path=None,
                      verbose=True, note=None, command=None):
    """Measure the enhancement engine: tiles, dask workers, memory and conv efficiency.

    Parameters
    ----------
    size : int, optional
        Side of the image for whole-vs-tiled and the dask comparison.
    model : str, optional
        Pretrained model of those comparisons.
    models : list of str, optional
        Models for megapixels/s and the share of the conv peak (default: every ``sr``
        model).
    model_size : int, optional
        Side of the image each of those models enhances.
    repeats : int, optional
        Timed runs per figure (the best counts).
    memory_size : int or None, optional
        Side of the FITS image for the command line's peak memory (None: skip).
    memory_model : str, optional
        Model of the memory run (default: ``model``).
    seams : sequence of tuple, optional
        ``(model, image side, tile side, n_samples, steps)`` of the networks whose tiles
        are not exact (global operations): tiled against whole-image output, against the
        input's noise (default `SEAM_RUNS`; empty: skip).
    json_path : path, optional
        Write the result there.
    note : str, optional
        Recorded in the result (e.g. what else ran on the machine).
    command : str, optional
        The command line that ran it, recorded in the result.

    Returns
    -------
    dict
    """
    import torch

    from ..enhance.enhancer import Enhancer
    from ..pretrained import list_pretrained, load_pretrained, model_card

    cores = os.cpu_count() or 1
    torch.set_num_threads(cores)
    result = {"benchmark": "speed/enhance", "command": command, "repeats": repeats,
              "note": note,
              "targets": ENHANCE_TARGETS, "torch_threads": cores}
    # The peak is the best of many short runs, before and after the models: one short
    # measurement varied by 30 % between runs on this machine.
    peak = _conv_peak(PEAK_REPEATS)
    result["conv_peak_gflops"] = {"value": peak, "n_repeats": PEAK_REPEATS,
                                  "what": "3x3 conv2d 64->64 ch on 256x256, float32, the "
                                          "faster of NCHW and channels_last"}

    image = _lens_field(size)
    whole = Enhancer.from_pretrained(model, device="cpu", tile_size=None)
    tiled = Enhancer.from_pretrained(model, device="cpu")
    whole.enhance(image[:64, :64])  # warm-up
    t_whole, all_whole = _best_time(lambda: whole.enhance(image), repeats)
    t_tiled, all_tiled = _best_time(lambda: tiled.enhance(image), repeats)
    difference = float(np.nanmax(np.abs(tiled.enhance(image) - whole.enhance(image))))
    result["whole_vs_tiled"] = {
        "model": model, "image": [size, size], "n_images": 1, "n_repeats": repeats,
        "tile_size": tiled.tile_size, "halo": tiled.halo, "overlap": tiled.overlap,
        "whole_s": t_whole, "tiled_s": t_tiled, "all_whole_s": all_whole,
        "all_tiled_s": all_tiled, "ratio": t_tiled / t_whole,
        "max_abs_difference": difference,
        "passed": bool(t_tiled / t_whole <= ENHANCE_TARGETS["tiled_over_whole_1024"])}

    serial = Enhancer.from_pretrained(model, device="cpu", tile_size=size // 2 + 2 * 24)
    t_serial, _ = _best_time(lambda: serial.enhance(image), repeats)
    t_dask, _ = _best_time(lambda: serial.enhance(image, parallel=cores), repeats)
    result["dask_workers"] = {
        "model": model, "image": [size, size], "n_images": 1, "n_repeats": repeats,
        "tile_size": serial.tile_size, "cores": cores,
        "one_process_s": t_serial, "one_process_torch_threads": cores,
        "dask_threads_s": t_dask, "dask_workers": cores, "torch_threads_per_worker": 1,
        "speedup": t_serial / t_dask}

    rows = []
    for name in models or list_pretrained(task="sr"):
        net = load_pretrained(name, device="cpu")
        enh = Enhancer(net, scale=model_card(name)["scale"], name=name, device="cpu",
                       tile_size=None)
        small = _lens_field(model_size, seed=1)
        enh.enhance(small[:32, :32])
        best, _ = _best_time(lambda enh=enh, small=small: enh.enhance(small), repeats)
        flops = _conv_flops(net, (1, 1, model_size, model_size))
        rows.append({"model": name, "image": [model_size, model_size], "n_images": 1,
                     "n_repeats": repeats, "seconds": best,
                     "megapixels_per_s": model_size**2 / best / 1e6,
                     "gflop_per_image": flops / 1e9, "gflops": flops / best / 1e9,
                     "share_of_conv_peak": flops / best / 1e9 / peak,
                     "passed": bool(flops / best / 1e9 / peak
                                    >= ENHANCE_TARGETS["share_of_conv_peak"])})
    after = _conv_peak(PEAK_REPEATS)
    result["conv_peak_gflops"].update(before=peak, after=after, n_repeats=2 * PEAK_REPEATS)
    if after > peak:  # the shares are of the best the CPU did
        peak = result["conv_peak_gflops"]["value"] = after
        for row in rows:
            row["share_of_conv_peak"] = row["gflops"] / peak
            row["passed"] = bool(row["share_of_conv_peak"]
                                 >= ENHANCE_TARGETS["share_of_conv_peak"])
    result["models"] = rows

    result["seams"] = [_seam_error(*run) for run in seams]

    if memory_size:
        memory_model = memory_model or model
        rss, seconds = _cli_peak_rss(memory_size, memory_model, None)
        result["cli_memory"] = {
            "command": f"lensenhance enhance <{memory_size}x{memory_size} FITS> --model "
                       f"{memory_model}", "image": [memory_size, memory_size],
            "n_images": 1, "n_repeats": 1, "peak_rss_gb": rss / 1e9, "seconds": seconds,
            "passed": bool(rss / 1e9 <= ENHANCE_TARGETS["cli_peak_rss_gb_4096"])}
    result["load_average"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    result["machine"] = {"cpu_count": cores, "platform": platform.platform(),
                         "python": platform.python_version(), "torch": torch.__version__}
    if verbose:
        print(format_enhance_table(result))
    if json_path is not None:
        write_json(result, json_path)
    return result


def benchmark_memory(*, models=("fsrcnn-x2",), sizes=MEMORY_SIZES, n_samples=None,
                     json_path=None, resume=False, verbose=True, note=None, command=None):
    """The command line's peak memory and time per megapixel against the image size.

    Each row is one ``lensenhance enhance`` run, in a fresh process, on a square FITS
    image (`_lens_field`, float32) with the default tiles: its own peak resident memory
    (VmHWM) and wall time. The targets: at most 1.5 GB at 8192^2, and at most 10 % above
    the 4096^2 peak (memory that does not grow with the image); the time per input
    megapixel is compared with the first size's run.

    Parameters
    ----------
    models : sequence of str, optional
        Pretrained models; ``NAME@K``: a posterior model at ``K`` sampler steps.
    sizes : sequence of int, optional
        Image sides, smallest first (default `MEMORY_SIZES`).
    n_samples : int, optional
        Posterior samples (default: the command line's); the std map is written, the
        samples themselves are not.
    json_path : path, optional
        Written after every run, so a long benchmark stopped part way keeps its rows.
    resume : bool, optional
        Keep the runs already in ``json_path`` (the same model, options and side) and
        run only the others.
    note, command : str, optional
        Recorded in the result.

    Returns
    -------
    dict
    """
    import json
    from pathlib import Path

    import torch

    from ._runs import split_steps

    done = {}
    if resume and json_path is not None and Path(json_path).exists():
        done = {row["command"]: row for row in json.loads(Path(json_path).read_text())["rows"]}

    result = {"benchmark": "speed/memory", "command": command, "note": note,
              "targets": {k: ENHANCE_TARGETS[k] for k in ("cli_peak_rss_gb_8192",
                                                            "peak_growth_4096_to_8192")},
              "sizes": list(sizes), "rows": [],
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                          "python": platform.python_version(), "torch": torch.__version__}}
    for spec in models:
        name, steps = split_steps(spec)
        options = [] if steps is None else ["--steps", str(steps)]
        if n_samples is not None and (steps is not None or "diffusion" in name):
            options += ["--n-samples", str(n_samples)]
        for size in sizes:
            run = " ".join(["lensenhance enhance", f"<{size}x{size} FITS>", "--model", name,
                            *options])
            if run in done:
                result["rows"].append(done[run])
                continue
            rss, seconds = _cli_peak_rss(size, name, None, options)
            result["rows"].append({
                "model": spec, "command": run, "image": [size, size], "n_images": 1,
                "n_repeats": 1, "peak_rss_gb": rss / 1e9, "seconds": seconds,
                "s_per_input_megapixel": seconds / (size * size / 1e6),
                "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None})
            _memory_verdicts(result)
            if json_path is not None:
                write_json(result, json_path)
            if verbose:
                print(_memory_line(result["rows"][-1]), flush=True)
    if verbose:
        print(format_memory_table(result))
    return result


def _memory_line(row):
    return (f"{row['model']:<26}{row['image'][0]:>6}^2 px{row['peak_rss_gb']:>7.2f} GB"
            f"{row['seconds']:>8.0f}s{row['s_per_input_megapixel']:>8.1f}")


def _memory_verdicts(result):
    """Per model: the 8192^2 peak, its growth over 4096^2, time per Mpx against the first."""
    targets = result["targets"]
    verdicts = {}
    for spec in dict.fromkeys(row["model"] for row in result["rows"]):
        rows = {row["image"][0]: row for row in result["rows"] if row["model"] == spec}
        first = rows[min(rows)]
        item = {"time_per_megapixel_vs_first": {
            size: row["s_per_input_megapixel"] / first["s_per_input_megapixel"]
            for size, row in rows.items()}, "first_size": min(rows)}
        if 8192 in rows:
            peak = rows[8192]["peak_rss_gb"]
            item["peak_rss_gb_8192"] = peak
            item["peak_8192_met"] = bool(peak <= targets["cli_peak_rss_gb_8192"])
            if 4096 in rows:
                growth = peak / rows[4096]["peak_rss_gb"]
                item["peak_growth_4096_to_8192"] = growth
                item["growth_met"] = bool(growth <= targets["peak_growth_4096_to_8192"])
        verdicts[spec] = item
    result["verdicts"] = verdicts


def format_memory_table(result):
    """The memory benchmark as text: one line per run, then the verdicts."""
    lines = [f"{'model':<26}{'image':>11}{'peak RSS':>10}{'time':>9}{'s/Mpx':>8}"]
    lines += [_memory_line(row) for row in result["rows"]]
    targets = result["targets"]
    for spec, item in result.get("verdicts", {}).items():
        ratios = ", ".join(f"{size}^2 {ratio:.2f}x" for size, ratio
                           in item["time_per_megapixel_vs_first"].items())
        line = f"{spec}: time per Mpx vs {item['first_size']}^2: {ratios}"
        if "peak_rss_gb_8192" in item:
            line += (f"; 8192^2 peak {item['peak_rss_gb_8192']:.2f} GB (<= "
                     f"{targets['cli_peak_rss_gb_8192']}: "
                     f"{'met' if item['peak_8192_met'] else 'not met'})")
        if "peak_growth_4096_to_8192" in item:
            line += (f", {item['peak_growth_4096_to_8192']:.3f}x the 4096^2 peak (<= "
                     f"{targets['peak_growth_4096_to_8192']}: "
                     f"{'met' if item['growth_met'] else 'not met'})")
        lines.append(line)
    return "\n".join(lines)


def format_enhance_table(result):
    """The enhancement benchmark as text."""
    peak = result["conv_peak_gflops"]
    lines = [f"conv peak: {peak['value']:.1f} GFLOP/s" + (
        f" (best of {peak['n_repeats'] // 2} runs before the models, {peak['before']:.1f}, "
        f"and {peak['n_repeats'] // 2} after, {peak['after']:.1f})" if "after" in peak else "")]
    w = result["whole_vs_tiled"]
    lines.append(f"{w['model']} {w['image'][0]}^2: whole {w['whole_s']:.2f} s, tiled "
                 f"{w['tiled_s']:.2f} s (tile {w['tile_size']}, halo {w['halo']}): "
                 f"{w['ratio']:.3f}x {'PASS' if w['passed'] else 'MISS'} (<= "
                 f"{result['targets']['tiled_over_whole_1024']}); max |diff| "
                 f"{w['max_abs_difference']:.2g}")
    d = result["dask_workers"]
    lines.append(f"dask: {d['dask_workers']} workers {d['dask_threads_s']:.2f} s vs one "
                 f"process {d['one_process_s']:.2f} s: speedup {d['speedup']:.2f}x")
    for row in result["models"]:
        lines.append(f"{row['model']:<14}{row['megapixels_per_s']:8.3f} Mpx/s "
                     f"{row['gflops']:7.1f} GFLOP/s {100 * row['share_of_conv_peak']:5.1f} % "
                     f"of peak {'PASS' if row['passed'] else 'MISS'}")
    for row in result.get("seams", []):
        lines.append(f"seams {row['model']} {row['image'][0]}^2 in {row['n_tiles']} tiles of "
                     f"{row['tile_size']}: max |tiled - whole| {row['max_abs_difference']:.3g}"
                     f", rms {row['rms_difference']:.3g} (input noise sigma "
                     f"{row['input_noise_sigma']:g}"
                     + ("" if row["median_output_std"] is None else
                        f", median output std {row['median_output_std']:.3g}") + ")")
    if "cli_memory" in result:
        m = result["cli_memory"]
        lines.append(f"CLI {m['image'][0]}^2: peak RSS {m['peak_rss_gb']:.2f} GB in "
                     f"{m['seconds']:.0f} s {'PASS' if m['passed'] else 'MISS'}")
    return "\n".join(lines)
