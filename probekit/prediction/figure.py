"""The prediction figure: the mean surprise curve around the violation, model against twin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from probekit.io import atomic_path


def plot_prediction(result: dict[str, Any], path: str | Path) -> Path | None:
    """One panel per surprise (headline first): mean surprise of the possible (solid) and
    impossible (dashed) episodes by step offset from the violation, the trained model and its
    random-init twin, with the VoE accuracies in the legend. None (nothing written) when the
    result has no prediction block."""
    p = result["scores"].get("prediction")
    rows = result.get("per_offset") or []
    if p is None or not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = {p["surprise"]: p, **(p.get("also") or {})}
    fig, axes = plt.subplots(1, len(blocks), figsize=(5.2 * len(blocks), 3.8), squeeze=False)
    for ax, (kind, block) in zip(axes[0], blocks.items()):
        mine = sorted((r for r in rows if r["surprise"] == kind), key=lambda r: r["offset"])
        x = [r["offset"] for r in mine]
        twin = block["random_init"]
        for who, prefix, colour, stats in (("model", "", "C0", block),
                                           ("random init", "random_init_", "C7", twin)):
            if stats is None:
                continue
            label = f"{who}: VoE {stats['voe']:.3f} [{stats['ci95'][0]:.2f}, " \
                    f"{stats['ci95'][1]:.2f}]"
            ax.plot(x, [r[f"{prefix}possible"] for r in mine], "-o", color=colour, ms=3,
                    label=f"{label}, possible")
            ax.plot(x, [r[f"{prefix}impossible"] for r in mine], "--s", color=colour, ms=3,
                    label=f"{who}, impossible")
        ax.axvline(0, color="grey", lw=0.6)
        ax.set_xlabel("step relative to the violation", fontsize=9)
        ax.set_ylabel(f"mean {kind} surprise ({block['unit']})", fontsize=9)
        ax.set_title(f"{kind} surprise around the violation ({block['pairs']} pairs)",
                     fontsize=10)
        ax.legend(fontsize=7)
    fig.suptitle(f"{result['model']['id']} on {result['task']['name']}: violation of "
                 "expectation", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
