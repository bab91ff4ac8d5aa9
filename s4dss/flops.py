r"""Analytic FLOP counts of an :class:`~s4dss.S4Model`: training steps and recurrent inference.

Wall seconds on a shared machine are noisy and machine-specific; these counts are exact
functions of the model's configuration and the data sizes, so two runs can be matched in
compute deterministically. They follow the model as implemented (:mod:`s4dss.model`,
:mod:`s4dss.dss`), component by component.

Conventions
-----------
- One real addition, multiplication or division is 1 FLOP; a multiply-add is 2. A complex
  multiplication is 6 (4 mul + 2 add), a complex addition 2, complex times real 2, a complex
  multiply-accumulate 8, a complex division 11.
- Each evaluation of a transcendental function (``exp``, ``sin``, ``cos``, ``erf``) counts as
  :data:`TRANSCENDENTAL` = 1 FLOP, so a complex ``exp`` (:math:`e^{a}(\cos b + i \sin b)`) is
  5. (Counters such as ``torch.utils.flop_counter`` count matrix products only; this module
  also counts the elementwise work, because the kernel generation, the only part whose cost
  grows with the state size ``N``, is elementwise.)
- A real FFT of ``n`` points costs :math:`2.5\,n\log_2 n` (half the classic
  :math:`5\,n\log_2 n` of a complex FFT); the causal convolution pads to ``n = 2L``.
- LayerNorm is 8 FLOPs per element (mean, variance, normalisation, affine); GELU 5 (exact
  form :math:`\tfrac{x}{2}(1+\mathrm{erf}(x/\sqrt2))`); dropout 1 when ``dropout > 0``.
- Backward = 2 x forward (the gradients with respect to the inputs and to the weights each
  cost about one forward pass), so one training step is 3 x forward, plus the optimiser:
  AdamW with gradient clipping is :data:`OPTIMIZER_PER_PARAM` = 15 FLOPs per parameter.
  The loss (cross-entropy, O(B C)) is left out.

Forward pass of a batch of ``B`` sequences of length ``L`` (``H = d_model``, ``N_i`` the
complex states of layer ``i``, ``C`` the number of outputs):

=================  =====================================================================
component          FLOPs
=================  =====================================================================
encoder            ``2 B L d_input H + B L H`` (linear; an embedding lookup is 0)
norm               ``8 B L H`` per layer
kernel             ``H N_i (7 (b + q) + 6 q + 4 q b) + 25 H N_i`` per layer, the blocked
                   powers of :func:`s4dss.dss.vandermonde` with ``b = ceil(sqrt(L))`` taps
                   per block and ``q = ceil(L / b)`` blocks: ``b + q`` complex ``exp``
                   (exponent 2 + exp 5) per ``(h, n)``, the coefficients ``c e^{t_q x}`` (6
                   per block), one real product ``(q, 2N) @ (2N, b)`` (``4 N q b``); the
                   ``(H, N)`` set-up 25; ``"softmax"`` adds 3 per exponent for the shift;
                   independent of B
conv               ``2.5 (2B H + H) 2L log2(2L) + 6 B H (L + 1)`` per layer (FFT of the
                   input and the kernel, product, inverse FFT)
skip               ``2 B H L`` per layer (``D u`` and the sum)
activation         ``5 B H L`` per layer (GELU; ``+ B H L`` with dropout)
output_linear      ``2 B L H^2 + B L H`` per layer
residual           ``B L H`` per layer
pool               ``2 B L H + B H`` (mean over valid steps), 0 for "last" / "none"
decoder            ``2 B H C + B C`` (``L`` times that for ``pool="none"``)
=================  =====================================================================

Recurrent (step) inference, per token and sequence (:meth:`S4Model.step`): encoder
``2 d_input H + H``; per layer norm ``8H``, state update :math:`s \leftarrow a s + b u`
``10 H N_i`` (complex mul, complex times real, complex add), output
:math:`\mathrm{Re}\sum_n c_n s_n` ``4 H N_i``, skip ``2H``, GELU ``5H``, output linear
``2H^2 + H``, residual ``H``; running mean ``2H``; decoder ``2HC + C``.

Examples
--------
>>> from s4dss.flops import forward_flops, train_step_flops, step_flops
>>> cfg = dict(d_input=1, d_output=10, d_model=64, n_layers=2, d_state=64)
>>> fwd = forward_flops(cfg, L=256, batch=32)
>>> fwd.total == sum(fwd.parts().values())
True
>>> train_step_flops(cfg, L=256, batch=32) > 3 * fwd.total
True
>>> step_flops(dict(cfg, d_state=8)) < step_flops(cfg)
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields

TRANSCENDENTAL = 1
COMPLEX_EXP = 2 + 3 * TRANSCENDENTAL  # exp(re), cos(im), sin(im), two products
NORM_PER_ELEMENT = 8
GELU_PER_ELEMENT = 4 + TRANSCENDENTAL
BACKWARD_FACTOR = 2.0
OPTIMIZER_PER_PARAM = 15  # AdamW (m, v, bias-corrected step, weight decay) + gradient clipping


def _config(model_or_config) -> dict:
    cfg = getattr(model_or_config, "config", model_or_config)
    if not isinstance(cfg, Mapping):
        raise TypeError(
            f"expected an S4Model or its config dict, got {type(model_or_config).__name__}"
        )
    cfg = dict(cfg)
    if cfg.get("kind") == "pair":
        raise ValueError("FLOP counts cover S4Model only, not the pair classifier")
    missing = [k for k in ("d_output", "d_model", "n_layers", "d_state") if k not in cfg]
    if missing:
        raise ValueError(f"S4Model config lacks {missing}")
    if (cfg.get("d_input") is None) == (cfg.get("vocab_size") is None):
        raise ValueError("config needs exactly one of d_input and vocab_size")
    return cfg


def layer_states(model_or_config) -> list[int]:
    """Complex states ``N_i`` of every DSS layer."""
    cfg = _config(model_or_config)
    n = int(cfg["n_layers"])
    d = cfg["d_state"]
    states = [int(d)] * n if isinstance(d, int) else [int(s) for s in d]
    if len(states) != n:
        raise ValueError(f"d_state has {len(states)} entries for {n} layers")
    return states


def _blocks(L: int) -> tuple[int, int]:
    """Taps per block and number of blocks of the DSS kernel (:func:`s4dss.dss.block_size`)."""
    b = max(1, min(L, math.ceil(math.sqrt(L))))
    return b, -(-L // b)


def fft_flops(n: int) -> float:
    """FLOPs of one real FFT (or inverse) of ``n`` points: ``2.5 n log2 n``."""
    return 2.5 * n * math.log2(n) if n > 1 else 0.0


@dataclass
class FlopCount:
    """Forward FLOPs of one batch, by component (module docstring for the formulas)."""

    encoder: float = 0.0
    norm: float = 0.0
    kernel: float = 0.0
    conv: float = 0.0
    skip: float = 0.0
    activation: float = 0.0
    output_linear: float = 0.0
    residual: float = 0.0
    pool: float = 0.0
    decoder: float = 0.0

    def parts(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def total(self) -> float:
        return float(sum(self.parts().values()))


def _check_sizes(L: int, batch: int) -> None:
    for name, v in (("L", L), ("batch", batch)):
        if isinstance(v, bool) or int(v) != v or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def forward_flops(model_or_config, L: int, batch: int = 1) -> FlopCount:
    """Forward FLOPs of ``S4Model`` on ``batch`` sequences of length ``L``, by component.

    Parameters
    ----------
    model_or_config : S4Model or dict
        The model or its ``config`` (constructor arguments).
    L, batch : int

    Returns
    -------
    FlopCount
    """
    _check_sizes(L, batch)
    cfg = _config(model_or_config)
    B, H, C = int(batch), int(cfg["d_model"]), int(cfg["d_output"])
    BLH = B * L * H
    f = FlopCount()
    if cfg.get("d_input") is not None:
        f.encoder = 2 * B * L * int(cfg["d_input"]) * H + BLH
    b, q = _blocks(L)
    per_exp = 2 + COMPLEX_EXP + (3 if cfg.get("mode", "exp") == "softmax" else 0)
    for N in layer_states(cfg):
        f.norm += NORM_PER_ELEMENT * BLH
        f.kernel += H * N * (per_exp * (b + q) + 6 * q + 4 * q * b) + 25 * H * N
        f.conv += (2 * B * H + H) * fft_flops(2 * L) + 6 * B * H * (L + 1)
        f.skip += 2 * BLH
        f.activation += GELU_PER_ELEMENT * BLH + (BLH if cfg.get("dropout", 0.0) else 0)
        f.output_linear += 2 * BLH * H + BLH
        f.residual += BLH
    pool = cfg.get("pool", "mean")
    if pool == "mean":
        f.pool = 2 * BLH + B * H
    rows = B * L if pool == "none" else B
    f.decoder = 2 * rows * H * C + rows * C
    return f


def n_params(model_or_config) -> int:
    """Trainable parameters of the ``S4Model`` a config describes (equals ``model.parameters()``).

    Per layer: ``Lambda`` (``2 N``, or ``2 H N`` per channel), ``log_dt`` ``H``, ``W`` ``2 H N``,
    ``D`` ``H``, output linear ``H^2 + H``, LayerNorm ``2H``.
    """
    cfg = _config(model_or_config)
    H, C = int(cfg["d_model"]), int(cfg["d_output"])
    if cfg.get("d_input") is not None:
        total = int(cfg["d_input"]) * H + H
    else:
        total = int(cfg["vocab_size"]) * H
    for N in layer_states(cfg):
        lam = 2 * N * (H if cfg.get("lambda_per_channel", False) else 1)
        total += lam + H + 2 * H * N + H + H * H + H + 2 * H
    return total + H * C + C


def train_step_flops(model_or_config, L: int, batch: int) -> float:
    """One optimiser step on ``batch`` sequences: ``3 x forward + 15 x parameters``."""
    fwd = forward_flops(model_or_config, L, batch).total
    return (1 + BACKWARD_FACTOR) * fwd + OPTIMIZER_PER_PARAM * n_params(model_or_config)


def epoch_flops(
    model_or_config, L: int, n_train: int, batch_size: int, n_val: int = 0, eval_batch: int = 128
) -> float:
    """One training epoch as :func:`s4dss.train.train` runs it: every step, then validation.

    Steps have ``batch_size`` sequences except a smaller last one (the counts are linear in the
    batch except for the batch-independent kernel generation, so the last batch is counted
    exactly). Validation is a forward pass over ``n_val`` sequences in ``eval_batch`` chunks.
    """
    full, rest = divmod(int(n_train), int(batch_size))
    total = full * train_step_flops(model_or_config, L, batch_size)
    if rest:
        total += train_step_flops(model_or_config, L, rest)
    full, rest = divmod(int(n_val), int(eval_batch))
    if full:
        total += full * forward_flops(model_or_config, L, eval_batch).total
    if rest:
        total += forward_flops(model_or_config, L, rest).total
    return float(total)


def step_flops(model_or_config) -> float:
    """Recurrent-mode FLOPs per token of one sequence (:meth:`S4Model.step`), batch 1."""
    cfg = _config(model_or_config)
    H, C = int(cfg["d_model"]), int(cfg["d_output"])
    total = 2 * int(cfg["d_input"]) * H + H if cfg.get("d_input") is not None else 0
    for N in layer_states(cfg):
        total += NORM_PER_ELEMENT * H + 14 * H * N + 2 * H + GELU_PER_ELEMENT * H
        total += 2 * H * H + H + H
    if cfg.get("pool", "mean") == "mean":
        total += 2 * H
    return float(total + 2 * H * C + C)


def hsv_reg_flops(model_or_config, kind: str = "tail", channels: int | None = None) -> float:
    r"""FLOPs the HSV regulariser (:mod:`s4dss.regularizers`) adds to one training step.

    Per regularised channel with ``N`` states, forward, in complex arithmetic (the
    conventions above; LAPACK operation counts for the factorisations): the pole kernel
    :math:`K_{ij} = 1/(1 - a_i \bar a_j)` ``19 N^2`` (complex product 6, subtraction 2,
    division 11); for ``"tail"`` and ``"nuclear"`` its Cholesky factor ``8 N^3 / 3`` (``N^3/3``
    complex multiply-adds), :math:`L^T D_g L` ``8 N^3 + 6 N^2`` (a full complex product, as
    torch computes it) and the singular values ``32 N^3 / 3`` (Householder bidiagonalisation,
    ``8 N^3 / 3`` real, times 4 for complex); for ``"trace"`` the sum
    :math:`\sum_{ij} g_i \bar g_j K_{ij}^2` ``14 N^2``. Backward = 2 x forward, as for the
    model. ``channels`` per layer (the random subset; all ``H`` when None).

    Examples
    --------
    >>> cfg = dict(d_input=1, d_output=10, d_model=32, n_layers=2, d_state=64)
    >>> hsv_reg_flops(cfg, channels=8) == hsv_reg_flops(cfg) / 4
    True
    """
    from s4dss.regularizers import KINDS

    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    cfg = _config(model_or_config)
    H = int(cfg["d_model"])
    h = H if channels is None else min(int(channels), H)
    total = 0.0
    for N in layer_states(cfg):
        if kind == "trace":
            per = 19 * N**2 + 14 * N**2
        else:
            per = 19 * N**2 + 8 * N**3 / 3 + 8 * N**3 + 6 * N**2 + 32 * N**3 / 3
        total += h * per
    return (1 + BACKWARD_FACTOR) * total


def state_size(model_or_config) -> int:
    """Complex states carried per sequence in step mode: ``H * sum_i N_i``."""
    cfg = _config(model_or_config)
    return int(cfg["d_model"]) * sum(layer_states(cfg))


def matmul_flops(model_or_config, L: int, batch: int, backward: bool = False) -> float:
    """The matrix products only, counted as ``torch.utils.flop_counter`` counts them.

    That counter charges ``2 m n k`` per product whatever the dtype (a complex product counts
    like a real one) and nothing for elementwise work or FFTs. Forward: the encoder and
    decoder linears, the output linears and the kernel's blocked Vandermonde product
    ``(H, q, 2N) @ (H, 2N, b)`` (``4 H N q b``). Backward (``backward=True``, forward
    included): every product twice more, except the encoder's, whose input needs no gradient
    (once more). Used to check this
    module against an independent count.
    """
    _check_sizes(L, batch)
    cfg = _config(model_or_config)
    B, H, C = int(batch), int(cfg["d_model"]), int(cfg["d_output"])
    enc = 2 * B * L * int(cfg["d_input"]) * H if cfg.get("d_input") is not None else 0
    rows = B * L if cfg.get("pool", "mean") == "none" else B
    b, q = _blocks(L)
    rest = 2 * rows * H * C + sum(2 * B * L * H * H + 4 * H * N * q * b for N in layer_states(cfg))
    if not backward:
        return float(enc + rest)
    return float(2 * enc + 3 * rest)
