"""The figures of the HTML reports, as PNG bytes: matplotlib (the optional `[plots]` extra), None without it."""

from __future__ import annotations

import io

PLOTS_NOTE = "plots need the [plots] extra (matplotlib): install mcu-attn with it and run again"


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _png(figure, plt) -> bytes:
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=110, metadata={"Software": None})  # no version: reproducible bytes
    plt.close(figure)
    return buffer.getvalue()


def pareto_png(points: list[dict]) -> bytes | None:
    """Accuracy against estimated energy per inference, every measured point, the Pareto front joined."""
    plt = _pyplot()
    measured = [p for p in points if "error" not in p and p.get("energy_uj") is not None]
    if plt is None or not measured:
        return None
    figure, axes = plt.subplots(figsize=(7.5, 4.8))
    for bits, marker in ((32, "s"), (8, "o"), (4, "^")):
        group = [p for p in measured if p["config"]["bits"] == bits]
        if group:
            axes.scatter([p["energy_uj"] for p in group], [p["accuracy"] for p in group], marker=marker,
                         label="fp32" if bits == 32 else f"int{bits}", alpha=0.7)
    front = sorted((p for p in measured if p.get("pareto")), key=lambda p: p["energy_uj"])
    axes.plot([p["energy_uj"] for p in front], [p["accuracy"] for p in front], "k--", linewidth=1,
              label="Pareto front")
    from mcu_attn.sweep import shown

    for p in front:
        axes.annotate(shown(p), (p["energy_uj"], p["accuracy"]), fontsize=7, xytext=(4, -10),
                      textcoords="offset points")
    axes.set_xscale("log")
    axes.set_xlabel("energy per inference, µJ (estimate, log scale)")
    axes.set_ylabel("accuracy (reference, on --data)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    return _png(figure, plt)


def layers_png(layers: list[dict]) -> bytes | None:
    """Per layer: estimated energy (when profiled) and the RAM live while it runs."""
    plt = _pyplot()
    if plt is None or not layers:
        return None
    profiled = all(layer.get("energy_uj") is not None for layer in layers)
    rows = 2 if profiled else 1
    figure, axes = plt.subplots(rows, 1, figsize=(8, 2.2 + 1.8 * rows), sharex=True, squeeze=False)
    positions = range(len(layers))
    axes[0][0].bar(positions, [layer["live_bytes"] for layer in layers], color="tab:blue")
    axes[0][0].set_ylabel("RAM live, B")
    if profiled:
        axes[1][0].bar(positions, [layer["energy_uj"] for layer in layers], color="tab:orange")
        axes[1][0].set_ylabel("energy, µJ (est.)")
    axes[-1][0].set_xticks(list(positions), [layer["op"] for layer in layers], rotation=90, fontsize=7)
    return _png(figure, plt)
