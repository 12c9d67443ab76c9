"""Make docs/_static/generate_samples.png: generated lenses beside simulated ones.

Top row: the default generator, ``Generator.from_pretrained()`` (DDIM, 50 steps, seed 0,
the classes in turn); bottom row: simulated noise-free images of its training preset and
the same classes (seed 777), both in the generator's asinh stretch. Run from the
repository root::

    python docs/make_generate_figure.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import lensenhance as le  # noqa: E402
from lensenhance.training.data import CLASSES, generation_images  # noqa: E402

OUT = Path(__file__).parent / "_static" / "generate_samples.png"
N = 6


def main():
    gen = le.Generator.from_pretrained()
    generated = gen.generate(N, steps=50, sampler="ddim", seed=0, progress=False)
    real, labels, _ = generation_images(N, preset=gen.preset, seed=777, progress=False)
    # generation_images concatenates the classes; show them in turn like the generator.
    order = [list(labels).index(k % 3) + k // 3 for k in range(N)]
    fig, axes = plt.subplots(2, N, figsize=(2 * N, 4.3))
    for i in range(N):
        for row, image in ((0, generated.values[i]), (1, real[order[i]])):
            axes[row, i].imshow(gen.scaling.apply(image), origin="lower", cmap="magma",
                                vmin=-1, vmax=1)
            axes[row, i].set_axis_off()
        axes[0, i].set_title(CLASSES[i % 3])
    axes[0, 0].text(-0.1, 0.5, "generated", transform=axes[0, 0].transAxes, rotation=90,
                    va="center", ha="right")
    axes[1, 0].text(-0.1, 0.5, "simulated", transform=axes[1, 0].transAxes, rotation=90,
                    va="center", ha="right")
    fig.tight_layout()
    fig.savefig(OUT, dpi=80)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
