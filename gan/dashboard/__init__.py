"""The GAN view: runs' grids side by side at one step, labelled with the primary metric, inside TensorBoard (a
dynamic plugin: the `gan` tab, `plugin.py` and `static/`) and as one PNG (`sheet.py`, `gan compare --grids`).

TensorBoard finds this package through the `tensorboard_plugins` entry point (pyproject.toml), so installing `gan`
is enough: a bare `tensorboard --logdir logs` from the venv gets the tab, and every grid a run logged. TensorBoard
keeps a random 10 images per tag unless `--samples_per_plugin images=N`; `GanLoader.fix_flags` raises it when the
user did not set it. N is a large number, not 0: in TensorBoard 2.21 `images=0` keeps no image at all (the Rust
data server's reservoir of capacity 0 retains nothing, and the Python reader downsamples to 0 when serving).

This module stays light (TensorBoard imports it at every start): the plugin itself is imported in `load`, where a
failure disables the tab with a logged error instead of stopping TensorBoard.
"""
from __future__ import annotations

from tensorboard.plugins import base_plugin

IMAGES_KEPT = 100_000  # images kept per (run, tag): every grid of a 100k-step run logging one every step


class GanLoader(base_plugin.TBLoader):
    def fix_flags(self, flags) -> None:
        """Every logged image unless the user said otherwise (`--samples_per_plugin images=N` wins)."""
        kept = getattr(flags, "samples_per_plugin", None)
        if isinstance(kept, dict) and "images" not in kept:
            kept["images"] = IMAGES_KEPT

    def load(self, context):
        from gan.dashboard.plugin import GanPlugin

        return GanPlugin(context)
