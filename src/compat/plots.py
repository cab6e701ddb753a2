"""The few figure kinds the book reuses: image grids, split maps, metric bars, retrieval results, cost curves,
interval lines and heatmaps on a shared scale."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns


def _bare(ax) -> None:
    """No ticks: the axes hold a picture."""
    ax.set_xticks([])
    ax.set_yticks([])


def image_grid(images: np.ndarray, labels: np.ndarray, class_names: Sequence[str], classes: Sequence[int], per_class: int = 8):
    """One row per class: its first ``per_class`` images, the class name on the left."""
    fig, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 0.9, len(classes) * 0.95), squeeze=False)
    for row, c in enumerate(classes):
        rows = np.flatnonzero(labels == c)[:per_class]
        for col in range(per_class):
            ax = axes[row, col]
            _bare(ax)
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(rows):
                ax.imshow(images[rows[col]], interpolation="nearest")
        axes[row, 0].set_ylabel(class_names[c].split(",")[0][:18], rotation=0, ha="right", va="center", fontsize=8)
    fig.subplots_adjust(wspace=0.04, hspace=0.08)
    return fig


def split_map(coverage: dict[str, np.ndarray]):
    """Rows = models of each scenario, columns = classes, colour = share of the class's images used."""
    names = list(coverage)
    matrix = np.stack([coverage[n] for n in names])
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(names) + 1.2))
    im = ax.imshow(matrix, aspect="auto", cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("class (label = index of the sorted WordNet id)")
    fig.colorbar(im, ax=ax, label="share of the class's training images", fraction=0.025, pad=0.01)
    for y in range(1, len(names)):
        if names[y].split(":")[0] != names[y - 1].split(":")[0]:
            ax.axhline(y - 0.5, color="k", lw=0.8)
    fig.tight_layout()
    return fig


def metric_bars(table: pd.DataFrame, x: str, hue: str, y: str = "value", col: str | None = None, **kwargs):
    """Grouped bars of a long-form metrics table (one panel per ``col``)."""
    grid = sns.catplot(data=table, kind="bar", x=x, y=y, hue=hue, col=col, height=3.2, aspect=1.1, sharey=False, **kwargs)
    grid.set_titles("{col_name}")
    return grid


def retrieval_grid(images: np.ndarray, labels: np.ndarray, queries: Sequence[int], top5: dict[str, list[list[int]]]):
    """One row per query: the query image, then its top-5 gallery images under each case
    (green frame: same class as the query; red: another class)."""
    cases = list(top5)
    cols = 1 + 6 * len(cases)  # query, then per case 5 results and a spacer
    fig, axes = plt.subplots(
        len(queries),
        cols,
        figsize=(cols * 0.62, len(queries) * 0.72 + 0.4),
        squeeze=False,
        gridspec_kw={"width_ratios": [1] + [1, 1, 1, 1, 1, 0.25] * len(cases)},
    )
    for row, q in enumerate(queries):
        axes[row, 0].imshow(images[q], interpolation="nearest")
        _bare(axes[row, 0])
        for spine in axes[row, 0].spines.values():
            spine.set_linewidth(2)
        for c, case in enumerate(cases):
            base = 1 + 6 * c
            for k, g in enumerate(top5[case][row]):
                ax = axes[row, base + k]
                ax.imshow(images[g], interpolation="nearest")
                _bare(ax)
                colour = "#1b9e77" if labels[g] == labels[q] else "#d95f02"
                for spine in ax.spines.values():
                    spine.set_edgecolor(colour)
                    spine.set_linewidth(2.5)
                if row == 0 and k == 2:
                    ax.set_title(case, fontsize=8)
            axes[row, base + 5].axis("off")
    axes[0, 0].set_title("query", fontsize=8)
    fig.subplots_adjust(wspace=0.05, hspace=0.08)
    return fig


def cost_curves(table: pd.DataFrame, x: str = "n", y: str = "seconds", hue: str = "method", ylabel: str = "seconds"):
    """Log-log lines of a cost measure against gallery size, one line per method."""
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    sns.lineplot(data=table, x=x, y=y, hue=hue, marker="o", ax=ax, palette="colorblind")
    ax.set(xscale="log", yscale="log", xlabel="gallery size N", ylabel=ylabel)
    fig.tight_layout()
    return fig


def interval_bars(table: pd.DataFrame, metrics: Sequence[str], xlabel: str = "%"):
    """One panel per metric: a bar per case at its mean over seeds, the 95 % interval as an error bar
    (from :func:`compat.experiments.base.interval_table`); diverged cases are left out."""
    rows = table[table[list(metrics)].notna().all(axis=1)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 0.42 * len(rows) + 1.0), sharey=True, squeeze=False)
    for ax, m in zip(axes[0], metrics):
        y = np.arange(len(rows))
        ax.barh(y, rows[m], color=sns.color_palette("colorblind")[0], alpha=0.8)
        ax.errorbar(rows[m], y, xerr=[rows[m] - rows[f"{m} low"], rows[f"{m} high"] - rows[m]], fmt="none", ecolor="k", capsize=3, lw=1)
        ax.set(yticks=y, yticklabels=rows.index, title=m, xlabel=xlabel)
        ax.invert_yaxis()
    fig.tight_layout()
    return fig


def interval_curve(
    rows: pd.DataFrame, x: Sequence[float], metrics: Sequence[str], references: pd.Series | None = None, xlabel: str = "", ylabel: str = "%"
):
    """``metrics`` of ``rows`` against ``x`` (one line per metric, 95 % intervals as error bars, symmetric-log
    axis so 0 is shown); ``references`` (one value per metric) drawn as dotted lines of the same colour."""
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    for metric, marker in zip(metrics, "osD^v"):
        ax.errorbar(
            x,
            rows[metric],
            yerr=[rows[metric] - rows[f"{metric} low"], rows[f"{metric} high"] - rows[metric]],
            marker=marker,
            capsize=3,
            label=metric,
        )
        if references is not None:
            ax.axhline(references[metric], ls=":", color=ax.lines[-1].get_color(), lw=1)
    ax.set(xscale="symlog", xlabel=xlabel, ylabel=ylabel, xticks=list(x), xticklabels=[f"{v:g}" for v in x])
    ax.margins(x=0.08)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def gain_heatmap(matrix: pd.DataFrame, title: str = "update gain G (top-1), cross-test"):
    """Scenario x method heatmap of update gains (0 = no better than the old model, 1 = as good as backfilling)."""
    fig, ax = plt.subplots(figsize=(1.5 * matrix.shape[1] + 2.5, 0.6 * matrix.shape[0] + 1.4))
    sns.heatmap(matrix.astype(float), annot=True, fmt=".2f", cmap="vlag", center=0, vmin=-1, vmax=1, ax=ax, cbar_kws={"label": "G"})
    ax.set(title=title, xlabel="", ylabel="")
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return fig


def setting_panels(table: pd.DataFrame, panels: Sequence[str] = ("new/old", "new/new"), hue: str = "method", ylabel: str = "top-1 (%)"):
    """One panel per (scenario, measure): each ``hue`` value's mean against the studied setting (in the table's
    order), with its 95 % interval as error bars (columns ``measure``, ``measure low``, ``measure high``)."""
    scenarios = list(dict.fromkeys(table["scenario"]))
    settings = list(dict.fromkeys(table["setting"]))
    fig, axes = plt.subplots(len(panels), len(scenarios), figsize=(4.6 * len(scenarios), 3.0 * len(panels)), squeeze=False)
    colours = sns.color_palette("colorblind")
    for j, scenario in enumerate(scenarios):
        for i, measure in enumerate(panels):
            ax = axes[i][j]
            for k, (name, rows) in enumerate(table[table["scenario"] == scenario].groupby(hue, sort=False)):
                x = np.array([settings.index(s) for s in rows["setting"]]) + 0.08 * (k - 0.5)
                ax.errorbar(
                    x,
                    rows[measure],
                    yerr=[rows[measure] - rows[f"{measure} low"], rows[f"{measure} high"] - rows[measure]],
                    marker="os^D"[k % 4],
                    capsize=3,
                    color=colours[k],
                    label=name,
                    ls="-",
                )
            ax.set(title=f"{scenario}: {measure}", ylabel=ylabel, xticks=range(len(settings)), xticklabels=settings)
            ax.tick_params(axis="x", labelsize=8)
            ax.margins(x=0.1)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def interval_lines(frame: pd.DataFrame, x: str, hue: str, xlabel: str = "", ylabel: str = "%"):
    """One line per ``hue`` value of ``value`` against ``x`` (its values evenly spaced, as labels), its 95 % interval
    (``low``, ``high``) as error bars, the lines nudged apart sideways so that their bars do not hide each other."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    groups = list(frame.groupby(hue, sort=False))
    xs = sorted(frame[x].unique())
    for k, (name, rows) in enumerate(groups):
        rows = rows.sort_values(x)
        position = np.array([xs.index(v) for v in rows[x]]) + 0.06 * (k - (len(groups) - 1) / 2)
        ax.errorbar(
            position, rows["value"], yerr=[rows["value"] - rows["low"], rows["high"] - rows["value"]], marker="osD^v<>"[k % 7], capsize=3, label=name
        )
    ax.set(xticks=range(len(xs)), xticklabels=[f"{v:g}" for v in xs], xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig


def shared_heatmaps(matrices: dict[str, pd.DataFrame], label: str = "top-1 (%)", difference: tuple[str, str] | None = None):
    """One heatmap per matrix on one colour scale (so equal colours are equal numbers across panels), and with
    ``difference = (a, b)`` a last panel of a minus b on a diverging scale centred on 0."""
    panels = list(matrices.items())
    if difference is not None:
        a, b = difference
        panels.append(("difference (first panel minus second)", matrices[a].astype(float) - matrices[b].astype(float)))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    values = np.concatenate([m.to_numpy(float).ravel() for m in matrices.values()])
    low, high = np.nanmin(values), np.nanmax(values)
    for k, (ax, (title, matrix)) in enumerate(zip(axes[0], panels)):
        if difference is not None and k == len(panels) - 1:
            bound = float(np.nanmax(np.abs(matrix.to_numpy(float)))) or 1.0
            sns.heatmap(
                matrix, annot=True, fmt="+.1f", cmap="vlag", center=0, vmin=-bound, vmax=bound, ax=ax, cbar_kws={"label": f"difference, {label}"}
            )
        else:
            sns.heatmap(
                matrix.astype(float),
                annot=True,
                fmt=".1f",
                cmap="viridis",
                vmin=low,
                vmax=high,
                ax=ax,
                cbar=k == len(matrices) - 1,
                cbar_kws={"label": label},
            )
        ax.set(title=title, xlabel="gallery", ylabel="queries")
    fig.tight_layout()
    return fig


def training_curves(curves: pd.DataFrame, models: Sequence[str] | None = None):
    """Loss and training accuracy against the epoch, one line per model (mean over seeds, the seeds' range
    shaded), from :func:`compat.experiments.base.training_curves`."""
    models = list(models or dict.fromkeys(curves["model"]))
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.4))
    for k, model in enumerate(models):
        part = curves[curves["model"] == model].groupby("epoch")
        for ax, column in zip(axes, ("loss", "train accuracy (%)")):
            mean, low, high = part[column].mean(), part[column].min(), part[column].max()
            ax.plot(mean.index, mean, marker="osD^v<>"[k % 7], label=model)
            ax.fill_between(mean.index, low, high, alpha=0.2)
            ax.set(xlabel="epoch", ylabel=column)
    axes[1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    return fig


def backfill_curves(curve: pd.DataFrame):
    """Top-1 against the share of the gallery re-embedded (:func:`compat.backfill.curves`): one colour per strategy,
    a solid line for the random order and a dashed one for the far-from-class-mean order, 95 % intervals as bars."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    strategies = list(dict.fromkeys(curve["strategy"]))
    orders = list(dict.fromkeys(curve["order"]))
    for k, strategy in enumerate(strategies):
        colour = f"C{k}"
        for j, (order, style) in enumerate(zip(orders, ("-", "--", ":"))):
            rows = curve[(curve["strategy"] == strategy) & (curve["order"] == order)].sort_values("fraction")
            x = 100 * rows["fraction"] + 0.6 * (j - (len(orders) - 1) / 2)  # nudged apart: the bars do not hide each other
            ax.errorbar(
                x,
                rows["top1"],
                yerr=[rows["top1"] - rows["top1 low"], rows["top1 high"] - rows["top1"]],
                color=colour,
                ls=style,
                marker="o",
                ms=3,
                capsize=2,
                label=f"{strategy}, {order}",
            )
    ax.set(xlabel="gallery re-embedded by the new model (%)", ylabel="top-1 (%), 95% CI")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig
