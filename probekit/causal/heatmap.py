"""The causal figure saved beside a result: per featurizer, a layer × positions grid of the gain
(IIA above the unrelated-patch baseline, as a share of the headroom), one row of panels per
scope. Each cell prints its IIA with the baseline under it; cells no patch can test are grey
and say why in the legend; the headline cell is outlined."""

from __future__ import annotations

from pathlib import Path
from typing import Any

POSITIONS = ("diff", "read", "last", "query")
ORDER = ("full", "probe", "das", "random")


def plot_causal(result: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import TwoSlopeNorm
    from matplotlib.patches import Patch, Rectangle

    rows = [r for r in result["per_cell"] if r["featurizer"] != "steer"]
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    positions = [p for p in POSITIONS if any(r["positions"] == p for r in rows)]
    feats = [f for f in ORDER if any(r["featurizer"] == f for r in rows)]
    scopes = [s for s in ("layer", "onward") if any(r["scope"] == s and r["featurizer"]
                                                      for r in rows)]
    head = result["scores"].get("causality") or {}
    if not feats or not scopes:  # no cell could be tested: a figure that says why
        fig, ax = plt.subplots(figsize=(6.4, 1.6))
        ax.axis("off")
        reason = result["scores"].get("causality_reason") or "no cell could be tested"
        ax.text(0.5, 0.5, f"{result['model']['id']} on {result['task']['name']}: no causal "
                f"cell could be tested\n{reason}", ha="center", va="center", fontsize=8,
                wrap=True)
        return _save(fig, path)
    fig, axes = plt.subplots(len(scopes), len(feats), squeeze=False,
                             figsize=(1.0 + 2.1 * len(feats),
                                      0.9 + 0.42 * len(layers) * len(scopes)))
    cmap = plt.get_cmap("RdBu_r").copy()
    cmap.set_bad("#d9d9d9")
    norm = TwoSlopeNorm(vmin=-0.5, vcenter=0.0, vmax=1.0)
    image = None
    for i, scope in enumerate(scopes):
        for j, feat in enumerate(feats):
            ax = axes[i, j]
            grid = np.full((len(layers), len(positions)), np.nan)
            for r in rows:
                if r["scope"] != scope or r["positions"] not in positions:
                    continue
                y, x = layers.index(r["layer"]), positions.index(r["positions"])
                if r["featurizer"] == feat and r["reachable"] and r["gain"] is not None:
                    grid[y, x] = r["gain"]
                    text = f"{r['iia']:.2f}" + (f"\nb {r['baseline']:.2f}"
                                                if r["baseline"] is not None else "")
                    ax.text(x, y, text, ha="center", va="center", fontsize=6.5,
                            color="white" if abs(r["gain"]) > 0.6 else "black")
                elif r["featurizer"] in (feat, None) and not r["reachable"]:
                    ax.text(x, y, "—", ha="center", va="center", fontsize=8, color="#707070")
            if scope == "onward":  # at the last patchable layer, onward is layer l only
                for y, layer in enumerate(layers):
                    if not any(r["layer"] == layer and r["scope"] == "onward" for r in rows) \
                            and any(r["layer"] == layer and r["reachable"] for r in rows):
                        for x in range(len(positions)):
                            ax.text(x, y, "as above", ha="center", va="center", fontsize=6,
                                    color="#707070")
            image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto")
            if (head and head.get("featurizer") == feat and head.get("scope") == scope
                    and head.get("layer") in layers and head.get("positions") in positions):
                ax.add_patch(Rectangle((positions.index(head["positions"]) - 0.5,
                                        layers.index(head["layer"]) - 0.5), 1, 1, fill=False,
                                       lw=2, ec="black"))
            ax.set_xticks(range(len(positions)), positions, fontsize=7)
            ax.set_yticks(range(len(layers)), layers if j == 0 else [""] * len(layers),
                          fontsize=7)
            ax.set_title(f"{feat} · {'layer l only' if scope == 'layer' else 'l and after'}",
                         fontsize=8)
    readout = rows[0]["readout"] if rows else "?"
    fig.suptitle(f"{result['model']['id']} on {result['task']['name']} — interchange by site "
                 f"({readout} readout; cell: IIA, b = unrelated-episode baseline)", fontsize=8.5)
    fig.subplots_adjust(left=0.08, right=0.86, top=0.86, bottom=0.16, wspace=0.08, hspace=0.45)
    if image is not None:
        bar = fig.colorbar(image, cax=fig.add_axes([0.89, 0.2, 0.018, 0.62]))
        bar.set_label("gain = (IIA − b) / (source accuracy − b)", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    fig.legend(handles=[Patch(fc="#d9d9d9", label="— not testable: cannot reach the readout"),
                        Patch(fc="white", ec="black", lw=2, label="headline cell")],
               loc="lower center", ncol=2, fontsize=7, frameon=False)
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    """Write `fig` to `path` as PNG (atomically) and free it."""
    import matplotlib.pyplot as plt

    from probekit.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path
