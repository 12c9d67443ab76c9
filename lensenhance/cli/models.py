"""The ``models`` command: the shipped models and their figures."""

import click


@click.command("models")
@click.option("--task", type=click.Choice(["sr", "denoise", "posterior", "generate", "classify",
                                           "features"]),
              default=None, help="Only the models of this task.")
def models_command(task):
    """List the pretrained models shipped with the package, one section per task."""
    from ..pretrained import TASKS, list_pretrained, model_card

    def figure(metrics, key, label, fmt, unit=""):
        value = metrics
        for part in key.split("."):  # nested figures: "calibration_light.coverage_68"
            value = value.get(part) if isinstance(value, dict) else None
        error = ""
        if isinstance(value, dict) and "mean" in value:  # a mean with its standard error
            error = f" +- {value['se']:{fmt}}" if isinstance(value.get("se"), float) else ""
            value = value["mean"]
        else:  # beside the figure: psnr_sem (residual SR cards), kid_se (generators)
            spread = next((metrics[f"{key}{suffix}"] for suffix in ("_sem", "_se")
                           if isinstance(metrics.get(f"{key}{suffix}"), float)), None)
            error = f" +- {spread:{fmt}}" if spread is not None else ""
        if not isinstance(value, (int, float)):
            return None
        floor = metrics.get(f"{key}_floor")  # generators: the real-vs-real distance
        return f"{label} {value:{fmt}}{error}{unit}" + (
            f" (floor {floor:{fmt}})" if isinstance(floor, (int, float)) else "")

    # each task's own figures: (metrics key, label, format[, unit])
    shown = {"sr": [("psnr", "PSNR", ".2f", " dB"), ("ssim", "SSIM", ".4f")],
             "denoise": [("psnr", "PSNR", ".2f", " dB"), ("ssim", "SSIM", ".4f")],
             "posterior": [("psnr", "PSNR", ".2f", " dB"),
                           ("calibration_light.coverage_68", "68% coverage", ".3f"),
                           ("calibration_light.coverage_95", "95% coverage", ".3f")],
             "generate": [("fd", "FD", ".4g"), ("kid", "KID", ".3g")],
             "classify": [("accuracy", "accuracy", ".3f"), ("min_auc", "min AUC", ".4f")],
             "features": [("theta_e_mae_arcsec", "theta_E MAE", ".4f", '"')]}
    names = list_pretrained(task=task)
    if not names:
        click.echo(f"no pretrained {task + ' ' if task else ''}models installed")
    cards = {name: model_card(name) for name in names}
    width = max((len(name) for name in names), default=20) + 2
    preset_width = max((len(str(c.get("preset", ""))) for c in cards.values()), default=12) + 2
    for section in TASKS if task is None else (task,):
        members = [name for name, card in cards.items() if card.get("task") == section]
        if not members:
            continue
        click.echo(f"[{section}]")
        for name in members:
            card = cards[name]
            metrics = dict(card.get("metrics") or {})
            if isinstance(metrics.get("auc"), dict):  # classifiers: the worst class's AUC
                metrics["min_auc"] = min(metrics["auc"].values())
            figures = [f for f in (figure(metrics, *spec) for spec in shown[section]) if f]
            if "n" in metrics:
                figures.append(f"n={metrics['n']}")
            scaled = section in ("sr", "denoise", "posterior")
            where = f"x{card.get('scale', 1)}" if scaled else card.get("architecture", "")
            click.echo(f"  {name:<{width}}{where:<13}{card.get('preset', ''):<{preset_width}}"
                       + ", ".join(figures))
