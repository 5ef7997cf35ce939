"""The names the probes report under, in one place: per-layer metrics and layer kinds.

`LayerStats.layers[layer][metric]` and `StepStats.series[layer][metric]` use these names;
`LayerStats.kinds[layer]` says what a layer is, so readers (the app, `read_run`, exports)
never parse layer names. A reader that meets a name not listed here shows it as it is.
"""

from __future__ import annotations

from typing import Final

# -- layer kinds ------------------------------------------------------------------------------
LINEAR: Final = "linear"  # nn.Linear / ConvNd: weights, their gradients and drift
ACTIVATION: Final = "activation"  # an elementwise activation: dead units, rates, saturation
DROPOUT: Final = "dropout"  # nn.Dropout & co.: output rates only
LAYER_KINDS: Final = (LINEAR, ACTIVATION, DROPOUT)

# -- activation layers ------------------------------------------------------------------------
SIZE: Final = "size"  # units in the layer
DEAD_EXACT: Final = "dead_exact"  # units zero on every training example (full pass)
DEAD_EXACT_FRAC: Final = "dead_exact_frac"
DEAD_LIVE: Final = "dead_live"  # units zero on every batch seen this epoch (live count)
DEAD_LIVE_FRAC: Final = "dead_live_frac"
ACTIVATION_RATE: Final = "activation_rate"  # share of non-zero outputs
DEATH_RATE: Final = "death_rate"  # share of units zero on a whole batch
GRAD_ACTIVATION_RATE: Final = "grad_activation_rate"  # the same, from parameter gradients
GRAD_DEATH_RATE: Final = "grad_death_rate"
GRAD_DEAD_LIVE: Final = "grad_dead_live"
SATURATION: Final = "saturation"  # share of units with |f'(z)| below the threshold
Z_MEAN: Final = "z_mean"  # pre-activation mean and std
Z_STD: Final = "z_std"

# -- parameter (linear) layers ----------------------------------------------------------------
GRAD_MEAN_ABS: Final = "grad_mean_abs"  # mean |dL/dW|
GRAD_L2: Final = "grad_l2"
GRAD_MAX: Final = "grad_max"
UPDATE_RATIO_LOG10: Final = "update_ratio_log10"  # log10(|lr * g| / |W|)
DIST_FROM_INIT: Final = "dist_from_init"  # |W - W0| / |W0|
WEIGHT_NORM: Final = "weight_norm"

#: the fraction of dead units the screen and the summaries show: exact where measured, else live
def dead_fraction(stats: dict[str, float]) -> float | None:
    """The best-known dead fraction of one activation layer's stats (exact, else live)."""
    for key in (DEAD_EXACT_FRAC, DEAD_LIVE_FRAC):
        value = stats.get(key)
        if value is not None:
            return float(value)
    return None

# -- histograms: LayerStats.histograms["<kind>/<layer>"] ----------------------------------------
HIST_ACTIVATION: Final = "act"  # activation outputs (validation pass; init: the init pass)
HIST_GRAD_INIT: Final = "grad_init"  # log10 |weight gradient| of the init batch

# -- report epochs ----------------------------------------------------------------------------
INIT_EPOCH: Final = 0  # LayerStats.epoch of the statistics at initialisation, before any step
#: LayerStats.epoch of the "trained" table: after a finished or early-stopped run, on the best
#: checkpoint's weights (exact dead count over the training split); not an epoch of training
TRAINED_EPOCH: Final = -1
