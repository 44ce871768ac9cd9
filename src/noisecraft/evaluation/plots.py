"""Pictures that explain diffusion (matplotlib, imported lazily; Agg backend, files only)."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_toy_overview(data: Tensor, noised: dict[float, Tensor], samples: Tensor, path: str | Path) -> Path:
    """One row: the data, the forward process at a few σ, and the model's samples (2-D point clouds)."""
    plt = _pyplot()
    panels = [("data", data)] + [(f"noised, σ = {s:g}", x) for s, x in noised.items()] + [("samples", samples)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2))
    lim = float(data.abs().max()) * 1.3
    for ax, (title, pts) in zip(axes, panels):
        pts = pts.detach().cpu()
        ax.scatter(pts[:, 0], pts[:, 1], s=1, alpha=0.4, color="tab:red" if title == "samples" else "tab:blue")
        ax.set_title(title, fontsize=10)
        if title in ("data", "samples"):
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
