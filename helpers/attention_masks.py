"""Attention masks: the presets of chapter 6 (causal, local, strided, global, BigBird, padding),
their cost, and the attention-mask editor (``AttentionMaskExplorer``) of chapters 6 and 7.

A mask here is a boolean ``(num_tokens, num_tokens)`` tensor, ``True`` where query ``i`` may
attend to key ``j``; :func:`helpers.attention.attention_weights` turns scores and a mask into
weights. :func:`mask_from_preset` and :func:`attended_pairs` are plain functions; the editor is
their widget.
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as w
import matplotlib.pyplot as plt
import torch

from helpers.attention import attention_weights, fully_masked_rows
from helpers.widgets import PlotExplorer, warning_html

# ---------------------------------------------------------------------------------------------
# Attention masks: presets and their cost
# ---------------------------------------------------------------------------------------------

PRESET_LABELS = {
    "none": "none (full attention)",
    "padding": "padding (valid length)",
    "causal": "causal",
    "local": "local window k",
    "strided": "strided",
    "global": "global tokens",
    "bigbird": "BigBird (local + global + random)",
}
"""The name of each preset in the editor's dropdown."""

PRESETS = {
    "none": "full attention: every query attends to every key",
    "padding": "padding: keys at or after the valid length are masked",
    "causal": "causal: query i attends to keys j <= i",
    "local": "local window: |i - j| <= k",
    "strided": "strided: |i - j| is a multiple of the stride",
    "global": "global tokens: the first tokens attend to and are attended by all (plus the diagonal)",
    "bigbird": "BigBird: local window + global tokens + random keys",
}
"""The presets of :func:`mask_from_preset`, with a one-line description each."""


def mask_from_preset(preset: str, num_tokens: int, k: int = 1, stride: int = 2,
                     valid_len: int | None = None, num_global: int = 1, num_random: int = 1,
                     seed: int = 0) -> torch.Tensor:
    """A boolean attention mask ``(num_tokens, num_tokens)``: ``True`` where query i may attend to key j.

    Presets (see :data:`PRESETS`): ``'none'``, ``'padding'``, ``'causal'``, ``'local'`` (window
    ``k`` on each side), ``'strided'`` (every ``stride``-th key, counted from the query),
    ``'global'`` (the first ``num_global`` tokens are global), ``'bigbird'`` (local ``k`` +
    ``num_global`` global tokens + ``num_random`` random keys per query, drawn with ``seed``).
    ``valid_len`` applies to every preset: keys at or after it are padding (masked). The
    ``'padding'`` preset is ``'none'`` with that key mask.
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    if num_tokens < 1:
        raise ValueError(f"num_tokens must be at least 1, got {num_tokens}.")
    for name, value, low in (("k", k, 0), ("stride", stride, 1), ("num_global", num_global, 0),
                             ("num_random", num_random, 0)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    i = torch.arange(num_tokens)[:, None]
    j = torch.arange(num_tokens)[None, :]
    distance = (i - j).abs()
    local = distance <= k
    glob = (i < num_global) | (j < num_global) | (i == j)
    if preset in ("none", "padding"):
        mask = torch.ones(num_tokens, num_tokens, dtype=torch.bool)
    elif preset == "causal":
        mask = j <= i
    elif preset == "local":
        mask = local
    elif preset == "strided":
        mask = distance % stride == 0
    elif preset == "global":
        mask = glob
    else:  # bigbird
        gen = torch.Generator().manual_seed(seed)
        random_keys = torch.rand(num_tokens, num_tokens, generator=gen).argsort(dim=1)[:, :num_random]
        rand = torch.zeros(num_tokens, num_tokens, dtype=torch.bool)
        rand[torch.arange(num_tokens)[:, None], random_keys] = True
        mask = local | glob | rand
    if valid_len is not None:
        if int(valid_len) != valid_len or not 0 <= valid_len <= num_tokens:
            raise ValueError(f"valid_len must be an integer from 0 to {num_tokens}, got {valid_len!r}.")
        mask = mask & (j < valid_len)
    return mask.expand(num_tokens, num_tokens).clone()


def attended_pairs(mask: torch.Tensor) -> int:
    """How many (query, key) pairs a mask lets attention compute (``N^2`` without a mask)."""
    return int(mask.sum())


# ---------------------------------------------------------------------------------------------
# The attention-mask editor
# ---------------------------------------------------------------------------------------------


def draw_attention_mask(tokens: Sequence[str], scores: torch.Tensor, mask: torch.Tensor,
                        title: str = ""):
    """The plain function behind :class:`AttentionMaskExplorer`: ``(figure, message)``.

    Draws the mask (left) and the attention weights ``attention_weights(scores, mask)`` (right),
    queries as rows and keys as columns. The message counts the attended pairs against ``N^2``
    and warns about every query whose keys are all masked (its row shows the weights the
    implementation produces: uniform over all keys).
    """
    from matplotlib.patches import Rectangle

    n = len(tokens)
    if scores.shape != (n, n) or mask.shape != (n, n):
        raise ValueError(f"scores and mask must be ({n}, {n}) for {n} tokens, got "
                         f"{tuple(scores.shape)} and {tuple(mask.shape)}.")
    weights = attention_weights(scores, mask)
    empty = fully_masked_rows(mask).tolist()
    labels = [f"{t} ({i})" for i, t in enumerate(tokens)]
    # A fixed layout (no tight_layout pass) keeps the editor's update fast.
    fig, (ax_mask, ax_w) = plt.subplots(1, 2, figsize=(8.4, 4.0), layout="none")
    fig.subplots_adjust(left=0.14, right=0.93, bottom=0.26, top=0.86, wspace=0.32)
    ax_mask.imshow(mask.numpy(), cmap="Greys", vmin=-0.25, vmax=1.25, interpolation="nearest")
    ax_w.imshow(weights.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    for ax, name in ((ax_mask, "mask (dark = may attend)"), (ax_w, "attention weights")):
        ax.grid(False)
        ax.set_xticks(range(n), labels if ax is ax_mask else [str(i) for i in range(n)],
                      rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels if ax is ax_mask else [str(i) for i in range(n)], fontsize=7)
        ax.set_xlabel("key")
        ax.set_title(name, fontsize=9)
        for r in empty:
            ax.add_patch(Rectangle((-0.5, r - 0.5), n, 1, fill=False, edgecolor="#D55E00", linewidth=2))
    ax_mask.set_ylabel("query")
    fig.colorbar(ax_w.images[0], ax=ax_w, fraction=0.046, pad=0.04, label="weight")
    pairs = attended_pairs(mask)
    fig.suptitle(f"{title}{': ' if title else ''}{pairs} of {n}x{n} = {n * n} pairs attended", fontsize=10)
    message = f"<b>{pairs}</b> of {n}&sup2; = {n * n} query-key pairs attended ({pairs / (n * n):.0%})"
    if empty:
        rows = ", ".join(f"{i} '{tokens[i]}'" for i in empty)
        warning = warning_html(
            f"{len(empty)} of {n} queries have every key masked (rows {rows}): masked softmax gives "
            f"them uniform weights, 1/{n} on every key, masked ones included (all their scores are "
            "-1e6), so they average the whole sentence instead of attending to nothing; other "
            "implementations give NaN. Allow at least one key in each row (e.g. the diagonal).")
        message = f"{warning} <br>{message}"
    return fig, message


class AttentionMaskExplorer(PlotExplorer):
    """The attention-mask editor: presets, sliders and a clickable grid over a short sentence.

    Controls (``explorer.controls``): ``preset`` (Dropdown), ``k`` (local window), ``stride``,
    ``valid_len``, ``num_global``, ``num_random`` (sliders). Changing one of them rewrites the
    mask from the preset; ``explorer.cells[i][j]`` (ToggleButtons, tooltip ``"query i, key j"``)
    then toggle single query-key cells. The picture shows the mask and
    :func:`attention_weights` of ``scores`` under it; the status line counts the attended pairs
    and warns about queries with every key masked. Same interface as
    :class:`helpers.widgets.PlotExplorer` (it is one): ``controls``, ``message``, ``image``,
    ``seconds`` (time of the latest update, grid included) and ``widget``.
    """

    def __init__(self, tokens: Sequence[str], scores: torch.Tensor | None = None,
                 preset: str = "causal", k: int = 2, stride: int = 3,
                 valid_len: int | None = None, num_global: int = 1, num_random: int = 1,
                 seed: int = 0, title: str = "") -> None:
        n = len(tokens)
        if not 2 <= n <= 24:
            raise ValueError(f"The editor needs a sentence of 2 to 24 tokens, got {n}; "
                             "shorten it (the grid has one button per query-key pair).")
        self.tokens = list(tokens)
        if scores is None:
            scores = torch.zeros(n, n)
        self.scores = torch.as_tensor(scores, dtype=torch.float32).detach().cpu()
        if self.scores.shape != (n, n):
            raise ValueError(f"scores must be ({n}, {n}) for {n} tokens, got {tuple(self.scores.shape)}.")
        self.seed, self.title = seed, title
        slider = {"continuous_update": False, "style": {"description_width": "initial"}}
        controls = {
            "preset": w.Dropdown(options=[(label, name) for name, label in PRESET_LABELS.items()],
                                 value=preset, description="preset"),
            "k": w.IntSlider(value=k, min=0, max=n - 1, description="window k", **slider),
            "stride": w.IntSlider(value=stride, min=1, max=n, description="stride", **slider),
            "valid_len": w.IntSlider(value=n if valid_len is None else valid_len, min=0, max=n,
                                     description="valid length", **slider),
            "num_global": w.IntSlider(value=num_global, min=0, max=n, description="global tokens", **slider),
            "num_random": w.IntSlider(value=num_random, min=0, max=n, description="random keys", **slider),
        }
        self.preset_mask = self._mask_for({name: c.value for name, c in controls.items()})
        cell = w.Layout(width="24px", height="22px", padding="0px", margin="0px")
        self.cells = [[w.ToggleButton(value=bool(allowed), tooltip=f"query {i}, key {j}", layout=cell)
                       for j, allowed in enumerate(row)] for i, row in enumerate(self.preset_mask.tolist())]
        for row in self.cells:
            for button in row:
                button.observe(lambda _change: self.refresh(), names="value")  # held while syncing
        self.reset_button = w.Button(description="reset cells", tooltip="rewrite the grid from the preset")
        self.reset_button.on_click(lambda _: self.reset_cells())
        super().__init__(controls, self._draw, busy="updating...", extra=[self.reset_button],
                         tight=False)  # a fixed layout: skip the second rendering, a third faster

    def build_layout(self) -> w.Widget:
        """The controls in a row, the status line, then the grid of cells beside the picture."""
        n = len(self.tokens)
        header = [w.Label("q \\ k", layout=w.Layout(width="90px"))] + [
            w.Label(str(j), layout=w.Layout(width="24px")) for j in range(n)]
        rows = [w.HBox(header)] + [
            w.HBox([w.Label(f"{i} {t}"[:12], layout=w.Layout(width="90px")), *row])
            for i, (t, row) in enumerate(zip(self.tokens, self.cells, strict=True))]
        self.grid = w.VBox(rows, layout=w.Layout(margin="0px 12px 0px 0px"))
        return w.VBox([self.controls_row(), self.status, w.HBox([self.grid, self.image])])

    # --- the state of the grid -------------------------------------------------------------
    @property
    def mask(self) -> torch.Tensor:
        """The mask the grid shows (``True`` = the query may attend to the key)."""
        return torch.tensor([[b.value for b in row] for row in self.cells], dtype=torch.bool)

    def _mask_for(self, values: dict) -> torch.Tensor:
        return mask_from_preset(values["preset"], len(self.tokens), values["k"], values["stride"],
                                values["valid_len"], values["num_global"], values["num_random"], self.seed)

    def _write_grid(self, mask: torch.Tensor) -> None:
        for row, values in zip(self.cells, mask.tolist(), strict=True):
            for button, value in zip(row, values, strict=True):
                if button.value != value:
                    button.value = value

    def on_change(self, name: str, change) -> None:
        """A preset or slider change rewrites the whole grid from the preset (one redraw)."""
        self.preset_mask = self._mask_for(self.values())
        self._write_grid(self.preset_mask)

    def reset_cells(self) -> None:
        """Undo the edited cells: rewrite the grid from the preset and redraw."""
        with self.hold_updates():
            self._write_grid(self.preset_mask)
            self.refresh()

    def toggle(self, query: int, key: int) -> None:
        """Toggle one query-key cell (as clicking its button does)."""
        self.cells[query][key].value = not self.cells[query][key].value

    def _draw(self, preset, k, stride, valid_len, num_global, num_random):
        mask = self.mask
        fig, message = draw_attention_mask(self.tokens, self.scores, mask,
                                           title=self.title or f"preset '{preset}'")
        edited = int((mask != self.preset_mask).sum())
        if edited:
            message += f" ({edited} cell{'s' * (edited != 1)} edited by hand)"
        return fig, message
