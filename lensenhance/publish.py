"""Turn a finished training run into shipped weights with a model card.

``python -m lensenhance.publish training_runs/rcan-x2 rcan-x2`` copies the run's EMA
weights into ``lensenhance/models/weights/``, evaluates them on the held-out ``sr``
benchmark set and writes the model card: task, architecture, scale, data preset,
degradation, the exact training command, steps, wall time, benchmark figures and the
SHA-256 of the weights file.
"""

import json
import shutil
import sys
from pathlib import Path

from ._atomic import atomic_write_bytes
from .models import WEIGHTS_DIR, file_sha256
from .nn.weights import load_sr_weights, read_weights_metadata

__all__ = ["publish_sr_weights"]

DEGRADATION = {
    "model_i": ("the HR image is the sky convolved with a Gaussian PSF (FWHM 0.087\") on "
                "the 0.05\"/px grid; LR = HR summed over s x s blocks plus Poisson source "
                "noise and Gaussian background noise (exposure 10^U(3, 3.5) s)"),
}


def publish_sr_weights(run_dir, name, *, n_eval=300, overwrite=False, progress=False):
    """Copy a run's weights into the package and write its model card.

    Parameters
    ----------
    run_dir : path-like
        A ``lensenhance train sr --out`` folder (``weights.safetensors``,
        ``history.json``).
    name : str
        The registry name, e.g. ``"rcan-x2"``.
    n_eval : int
        Held-out benchmark images for the card's figures.

    Returns
    -------
    dict
        The model card.
    """
    from .benchmark.sr import BENCHMARK_SEED, benchmark_sr

    run_dir = Path(run_dir)
    source = run_dir / "weights.safetensors"
    if not source.is_file():
        raise FileNotFoundError(f"{source}: the run has no exported weights yet")
    target = WEIGHTS_DIR / f"{name}.safetensors"
    card_path = WEIGHTS_DIR / f"{name}.json"
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists (use overwrite=True)")
    history = json.loads((run_dir / "history.json").read_text())
    metadata = read_weights_metadata(source)
    config = history["config"]
    preset = metadata.get("data_preset", "model_i")

    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    tmp.replace(target)
    card = {
        "name": name,
        "task": "sr",
        "architecture": config["architecture"],
        "scale": int(config["scale"]),
        "size": json.loads(metadata.get("train_args", "{}")).get("preset", "small"),
        "parameters": sum(p.numel() for p in load_sr_weights(target).parameters()),
        "preset": preset,
        "degradation": DEGRADATION.get(preset, f"simulated {preset} pairs"),
        "command": metadata.get("command"),
        "steps": int(history["step"]),
        "wall_time_s": round(float(history["wall_time_s"]), 1),
        "machine": "2 CPU cores (no GPU)",
        "val_psnr_normalised": history["val"][-1]["psnr"] if history.get("val") else None,
        "sha256": file_sha256(target),
        "license": "BSD-3-Clause",
    }
    atomic_write_bytes(card_path, json.dumps(card, indent=2).encode())

    result = benchmark_sr(n=n_eval, scale=card["scale"], preset=preset, models=[name],
                          self_ensemble=False, regression=False, progress=progress)
    row, bicubic = result["rows"][name], result["rows"]["bicubic"]
    card["metrics"] = {
        "n": n_eval, "seed": BENCHMARK_SEED,
        "command": f"lensenhance benchmark sr -n {n_eval} --scale {card['scale']} --model "
                   f"{name} --no-self-ensemble --no-regression",
        **{key: row["metrics"]["all"][key] for key in ("mse", "psnr", "ssim")},
        "bicubic_psnr": bicubic["metrics"]["all"]["psnr"],
        "per_class_psnr": {k: v["psnr"] for k, v in row["metrics"].items() if k != "all"},
        "seconds_per_image": row["seconds_per_image"],
    }
    atomic_write_bytes(card_path, json.dumps(card, indent=2).encode())
    return card


if __name__ == "__main__":  # pragma: no cover - maintainer tool
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: python -m lensenhance.publish RUN_DIR NAME [N_EVAL]")
    card = publish_sr_weights(sys.argv[1], sys.argv[2],
                              n_eval=int(sys.argv[3]) if len(sys.argv) == 4 else 300,
                              overwrite=True, progress=True)
    print(json.dumps(card, indent=2))
