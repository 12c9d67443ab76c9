"""Make the gallery figures of generated lenses beside simulated ones.

``docs/_static/generate_samples.png``: top row the default generator,
``Generator.from_pretrained()``; ``docs/_static/generate_chain_samples.png``: top row
``ddpm-deeplense-i-chain`` taken to 128 x 128 by ``edsr-deeplense-i-x2``. Both DDIM, 50
steps, seed 0, the classes in turn; bottom rows simulated noise-free images of the same
preset, grid and classes (seed 777), in one asinh stretch. Run from the repository root::

    python docs/make_generate_figure.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import lensenhance as le  # noqa: E402
from lensenhance.predict.normalization import AsinhScaling  # noqa: E402
from lensenhance.training.data import CLASSES, default_scaling, generation_images  # noqa: E402

STATIC = Path(__file__).parent / "_static"
N = 6


def figure(out, generator=None, enhancer=None):
    """Generated (top) against simulated (bottom) images of the generator's grid, or with
    ``enhancer`` of its preset's grid before binning."""
    gen = le.Generator.from_pretrained(generator)
    generated = gen.generate(N, steps=50, sampler="ddim", seed=0, progress=False,
                             enhancer=enhancer)
    meta = gen.model.metadata
    grid = {"num_pix": int(meta["data_num_pix"]) if "data_num_pix" in meta else None,
            "binned": 1 if enhancer else int(meta.get("binned", 1))}
    real, labels, _ = generation_images(N, preset=gen.preset, seed=777, progress=False,
                                        **grid)
    scaling = AsinhScaling(**default_scaling(real, gen.preset)) if enhancer else gen.scaling
    # generation_images concatenates the classes; show them in turn like the generator.
    order = [list(labels).index(k % 3) + k // 3 for k in range(N)]
    fig, axes = plt.subplots(2, N, figsize=(2 * N, 4.3))
    for i in range(N):
        for row, image in ((0, generated.values[i]), (1, real[order[i]])):
            axes[row, i].imshow(scaling.apply(image), origin="lower", cmap="magma",
                                vmin=-1, vmax=1)
            axes[row, i].set_axis_off()
        axes[0, i].set_title(CLASSES[i % 3])
    axes[0, 0].text(-0.1, 0.5, "generated", transform=axes[0, 0].transAxes, rotation=90,
                    va="center", ha="right")
    axes[1, 0].text(-0.1, 0.5, "simulated", transform=axes[1, 0].transAxes, rotation=90,
                    va="center", ha="right")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    print(f"wrote {out}")


def main():
    figure(STATIC / "generate_samples.png")
    figure(STATIC / "generate_chain_samples.png", "ddpm-deeplense-i-chain",
           enhancer="edsr-deeplense-i-x2")


if __name__ == "__main__":
    main()
