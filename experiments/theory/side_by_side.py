"""Theory lab beside the real runs: final loss against the share of data at the small batch.

Left: the exact linear-regression risk of a two-phase schedule (batch 1 -> 32, a = 2, b = 1.6,
equal data D), from ``results/switch_comparison.json`` (``switch_comparison.py``). Right: the
demo model's final EWA eval loss of the fixed arms of the policy comparison (batch 4 -> 16, equal
tokens, mean and 95% t-interval over seeds), from ``experiments/policies/results.json``. In
both, 0 on the x axis is the constant large batch and 1 the constant small batch. No training
or simulation: it reads the two results files and takes seconds.

  .venv/bin/python experiments/theory/side_by_side.py

Writes results/side_by_side.png and results/side_by_side.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import parser, write_results

HERE = Path(__file__).resolve().parent
POLICY_RESULTS = HERE.parent / "policies" / "results.json"


def real_arms(results: dict) -> list[tuple[str, float, float, float, float]]:
    """(arm, share of examples at the small batch, mean, low, high) of the fixed arms."""
    settings = results["settings"]
    budget = settings["budget_examples"]
    shares = {
        "const_large": 0.0,
        "early_switch": settings["early_fraction"],
        "late_switch": settings["fsl_switch_examples"] / budget,
        "const_small": 1.0,
    }
    out = []
    for arm, share in shares.items():
        if arm in results["arms"]:
            ewa = results["arms"][arm]["final_ewa"]
            out.append((arm, share, ewa["mean"], ewa["lo"], ewa["hi"]))
    return sorted(out, key=lambda row: row[1])


def main() -> None:
    """Read both results files, draw the two panels, write the table."""
    args = parser(__doc__.split("\n")[0]).parse_args()
    theory = json.loads((args.out / "switch_comparison.json").read_text())["exact"]
    real = real_arms(json.loads(POLICY_RESULTS.read_text()))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    ax = axes[0]
    ax.plot(theory["scan_fractions"], theory["scan_final_risk"], "o-", ms=3)
    ax.axvline(theory["fsl_switch_fraction"], color="gray", ls=":", label="FSL switch point")
    ax.set(
        xlabel=f"share of data at batch {theory['batch1']} (then {theory['batch2']})",
        ylabel="final excess risk",
        yscale="log",
        title=f"theory: exact risk, a={theory['a']:g}, b={theory['b']:g}, D={theory['D']}",
    )
    ax.legend(fontsize=8)
    ax = axes[1]
    xs = [row[1] for row in real]
    means = [row[2] for row in real]
    errs = [
        [m - row[3] for m, row in zip(means, real)],
        [row[4] - m for m, row in zip(means, real)],
    ]
    ax.errorbar(xs, means, yerr=errs, fmt="o-", capsize=3)
    for arm, x, m, _, _ in real:
        ax.annotate(arm, (x, m), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set(
        xlabel="share of tokens at batch 4 (then 16)",
        ylabel="final EWA eval loss (95% t-interval)",
        title="real runs: demo model, equal tokens",
    )
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "side_by_side.png", dpi=110)
    plt.close(fig)

    lines = [
        "# Theory lab beside the real runs: share of data at the small batch",
        "",
        "| schedule | theory schedule | theory: final excess risk | real: share at batch 4 "
        "| real: final EWA eval loss [95%] |",
        "|---|---|---|---|---|",
    ]
    named = theory["named"]
    pairs = [
        ("constant large", f"constant B={theory['batch2']}", "const_large"),
        ("early switch", next(k for k in named if k.startswith("early")), "early_switch"),
        ("late switch", next(k for k in named if "FSL" in k), "late_switch"),
        ("constant small", f"constant B={theory['batch1']}", "const_small"),
    ]
    by_arm = {row[0]: row for row in real}
    for label, theory_key, arm in pairs:
        row = by_arm.get(arm)
        real_cells = (
            "– | –" if row is None else f"{row[1]:.3f} | {row[2]:.4f} [{row[3]:.4f}, {row[4]:.4f}]"
        )
        lines.append(f"| {label} | {theory_key} | {named[theory_key]:.4g} | {real_cells} |")
    i_best = min(range(len(theory["scan_final_risk"])), key=theory["scan_final_risk"].__getitem__)
    best_real = min(real, key=lambda row: row[2])
    early, late = named[pairs[1][1]], named[pairs[2][1]]
    lines += [
        "",
        f"Theory minimum at share {theory['scan_fractions'][i_best]:.3f}; late switch "
        f"{100 * (late / early - 1):+.0f}% against the early switch. Real runs: lowest mean at "
        f"{best_real[0]} (share {best_real[1]:.3f}); the paired late-minus-early interval is in "
        "experiments/README.md.",
    ]
    write_results(
        args.out,
        "side_by_side",
        "\n".join(lines),
        dict(theory=theory, real=[list(r) for r in real]),
    )


if __name__ == "__main__":
    main()
