"""The causal heatmap saved beside a result: IIA and attribution share per layer × site for the
main readout, with the unrelated-episode baseline in each IIA cell."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_causal(result: dict[str, Any], path: Path) -> Path:
    """Two panels from `result["per_layer_causal"]` (main readout: the first rows' readout)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from probekit.io import atomic_path

    rows = result["per_layer_causal"]
    main = rows[0]["readout"]
    rows = [r for r in rows if r["readout"] == main]
    layers = list(dict.fromkeys(r["layer"] for r in rows))
    sites = list(dict.fromkeys(r["position"] for r in rows))
    fig, axes = plt.subplots(1, 2, figsize=(3 + 1.1 * len(sites), 1.2 + 0.45 * len(layers)),
                             squeeze=False)
    panels = (("iia", "IIA (baseline)", "viridis", (0, 1)),
              ("attribution", "attribution share", "RdBu_r", (-1, 1)))
    for ax, (key, title, cmap, (lo, hi)) in zip(axes[0], panels):
        grid = np.full((len(layers), len(sites)), np.nan)
        for r in rows:
            if r[key] is not None:
                grid[layers.index(r["layer"]), sites.index(r["position"])] = r[key]
        ax.imshow(grid, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
        for r in rows:
            i, j = layers.index(r["layer"]), sites.index(r["position"])
            if r[key] is None:
                continue
            text = f"{r[key]:.2f}" + (f"\n({r['baseline_iia']:.2f})" if key == "iia" else "")
            ax.text(j, i, text, ha="center", va="center", fontsize=6, color="w"
                    if key == "iia" and r[key] < 0.6 else "k")
        ax.set_xticks(range(len(sites)), sites, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(layers)), layers, fontsize=7)
        ax.set_title(f"{title} — {main} readout", fontsize=8)
    fig.suptitle(f"{result['model']['id']} on {result['task']['name']}: patch site × layer",
                 fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
