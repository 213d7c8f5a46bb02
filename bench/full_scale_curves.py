"""Learning curves of a `hepattn fit` run from its CSV log: training loss and validation metrics per step.

    python bench/full_scale_curves.py TRAINING_DIR --out curves.png

TRAINING_DIR is the fit's `default_root_dir` (its newest `lightning_logs/version_N/metrics.csv` is read).
Prints one line per validation (step, val_loss, DM efficiency) and draws the training loss (each logged
step, and its running mean) above the validation loss and efficiencies.
"""

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

VAL_RATES = ("dm_efficiency", "perfect_efficiency", "lhc_efficiency")
PRINTED = (*VAL_RATES, "fake_rate", "duplicate_rate")  # of the raw masks: one query per hit, no clean-up


def read_log(root: Path) -> list[dict[str, float]]:
    versions = sorted(root.glob("lightning_logs/version_*/metrics.csv"), key=lambda p: int(p.parent.name[8:]))
    if not versions:
        raise SystemExit(f"no lightning_logs/version_*/metrics.csv under {root}")
    with versions[-1].open() as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def series(rows: list[dict[str, float]], key: str) -> tuple[np.ndarray, np.ndarray]:
    steps = np.array([r["step"] for r in rows if key in r])
    return steps, np.array([r[key] for r in rows if key in r])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="the fit's default_root_dir")
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args()
    rows = read_log(args.root)
    val_steps, val_loss = series(rows, "val_loss")
    rates = {name: series(rows, f"val/{name}")[1] for name in PRINTED}
    for i, step in enumerate(val_steps):
        found = ", ".join(f"{n} {rates[n][i]:.3f}" for n in PRINTED if i < len(rates[n]))
        print(f"step {int(step) + 1}: val_loss {val_loss[i]:.4f}, {found}")

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
    steps, loss = series(rows, "train_loss")
    top.plot(steps + 1, loss, ".", ms=3, alpha=0.4, label="training loss (logged steps)")
    if len(loss) >= 5:
        k = max(len(loss) // 10, 3)
        mean = np.convolve(loss, np.ones(k) / k, mode="valid")
        top.plot(steps[k - 1 :] + 1, mean, label=f"running mean of {k}")
    top.plot(val_steps + 1, val_loss, "o-", label="validation loss")
    top.set_ylabel("loss")
    top.legend()
    for name in VAL_RATES:
        if len(values := rates[name]):
            bottom.plot(val_steps[: len(values)] + 1, values, "o-", label=name.replace("_", " "))
    bottom.set_ylabel("validation efficiency (raw masks)")
    bottom.set_xlabel("optimizer step")
    bottom.set_ylim(0, 1)
    if any(len(rates[name]) for name in VAL_RATES):
        bottom.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)


if __name__ == "__main__":
    main()
