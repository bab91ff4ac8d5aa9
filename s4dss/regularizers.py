r"""Differentiable Hankel-singular-value regularisers for DSS layers (compressible training).

A direct translation into torch of sysred's closed-form Gramians of diagonal discrete-time
systems and of its square-root method (:mod:`sysred.gramians`, ``reference.md`` section 3), so
that the Hankel singular values (HSVs) of every channel of every DSS layer can be penalised
during training and differentiated by autograd. Channel ``h`` of a layer is the discrete system
of :func:`s4dss.to_system`: :math:`A = \mathrm{diag}(a)`, :math:`B = b`, :math:`C = c \odot a`
with ``(a, b, c)`` from :meth:`s4dss.DSSKernel.discrete` (computed here in complex128 whatever
the layer's ``kernel_dtype``). Its Gramians, :math:`A P A^H - P + B B^H = 0` and
:math:`A^H Q A - Q + C^H C = 0`, are Cauchy-like, scalings of one Hermitian positive
semi-definite matrix :math:`K` that depends on the poles only:

.. math::

    P_{ij} = \frac{b_i \bar b_j}{1 - a_i \bar a_j}, \quad
    Q_{ij} = \frac{\bar C_i C_j}{1 - \bar a_i a_j}, \qquad
    P = D_b K D_b^H, \quad Q = D_{\bar C} \bar K D_C, \quad K_{ij} = \frac{1}{1 - a_i \bar a_j}.

With a finite horizon ``L`` (time-limited Gramians of the first ``L`` impulse-response samples,
used for ``"softmax"`` layers, whose poles may leave the unit disc) :math:`1/(1 - z)` becomes the
geometric sum :math:`\sum_{k<L} z^k`.

HSVs by the square-root method, as in sysred: :math:`\sigma = \mathrm{sv}(S^H R)` for any
factors :math:`P = R R^H`, :math:`Q = S S^H`. With :math:`K = L L^H` (Cholesky),
:math:`R = D_b L` and :math:`S = D_{\bar C} \bar L` are such factors, so

.. math::

    S^H R = L^T D_g L, \qquad g = b \odot C,

one Cholesky per channel (``torch.linalg.cholesky``) and one SVD (``torch.linalg.svdvals``).
The sum of the squares needs no factorisation at all:

.. math::

    \sum_i \sigma_i^2 = \mathrm{tr}(PQ) = \sum_{ij} g_i \bar g_j K_{ij}^2
    = \sum_{k \ge 1} k\, |h_k|^2,

exact, O(N^2) per channel (:func:`hankel_trace`); the last form, with the Markov parameters
:math:`h_k = C A^{k-1} B`, is how the tests check it independently.

Robustness
----------
* **Numerically low-rank Gramians.** When poles cluster (small step sizes, trained layers),
  :math:`K` is a Cauchy matrix with close nodes and eigenvalues down to rounding level, and a
  plain Cholesky can fail. :math:`K` is shifted by ``jitter * max_i K_ii`` (per channel; the
  shift is a constant for autograd) before factoring, and if a factorisation still fails the
  shift grows 100x at a time up to ``1e-6`` (then a clear error). The HSVs returned are those of
  the shifted Gramians :math:`D_b (K + \delta I) D_b^H` and :math:`D_{\bar C} (\bar K + \delta
  I) D_C`: measured against sysred, the leading HSVs move by ~``jitter`` relative and the
  smallest by up to ~``sqrt(jitter) * sigma_1`` (``jitter = 0``: no shift unless needed).
* **Ties.** Only singular *values* are differentiated: the backward of ``svdvals`` is
  :math:`U \mathrm{diag}(\bar g) V^H`, with no :math:`1/(\sigma_i^2 - \sigma_j^2)` terms, so
  repeated HSVs give finite gradients. Sums over all HSVs (``"nuclear"``, ``"trace"``) are
  differentiable at ties; a tail cut between two equal HSVs is not (a kink, as for any
  sorted-value function) and gets one valid one-sided gradient.
* **Small HSVs.** The nuclear norm is not differentiable where the Hankel operator is rank
  deficient (like :math:`|x|` at 0): its derivative in the directions of tiny HSVs grows like
  :math:`1/\sigma`. The shift bounds it; gradients stay finite (tested on clustered poles).
* **Stability.** Infinite-horizon Gramians need :math:`|a| < 1`; ``"exp"`` layers always have it.
  ``"softmax"`` layers are regularised with the time-limited Gramians over their sequence length.

Penalties (per channel, then averaged over all channels of all DSS layers):

* ``"tail"``: :math:`\sum_{i>r}\sigma_i / \sum_i \sigma_i`, the fraction of the Hankel nuclear
  norm beyond the target order ``r`` (scale-free; the BT bound :math:`2\sum_{i>r}\sigma_i`
  relative to :math:`2\sum_i\sigma_i`). Default.
* ``"nuclear"``: :math:`\sum_i\sigma_i`, the Hankel nuclear norm (Forgione et al., CDC 2024;
  Schwerdtner, Berman & Peherstorfer, NeurIPS 2025 regularise the sum of HSVs). Not scale-free:
  the model can lower it by shrinking ``W`` and growing the next layer.
* ``"trace"``: :math:`\sum_i\sigma_i^2 = \mathrm{tr}(PQ)`, exact and cheapest (no SVD).

Cost: the SVD of ``H`` complex ``N x N`` matrices per layer and step (with vectors, for the
backward pass) dominates; ``channels=k`` evaluates a random subset of ``k`` channels per layer
and step (an unbiased estimate of the mean over channels).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

import torch
from torch import nn

from s4dss.callbacks import Callback
from s4dss.dss import DSS, DSSKernel

KINDS = ("tail", "nuclear", "trace")
#: Largest relative diagonal shift tried before a Gramian counts as not factorable.
MAX_JITTER = 1e-6


def _kernel(layer: DSS | DSSKernel) -> DSSKernel:
    if isinstance(layer, DSS):
        return layer.kernel
    if isinstance(layer, DSSKernel):
        return layer
    raise TypeError(f"expected an s4dss.DSS layer or DSSKernel, got {type(layer).__name__}")


def discrete64(layer: DSS | DSSKernel, L: int | None = None):
    """:meth:`~s4dss.DSSKernel.discrete` ``(a, b, c)`` computed in complex128, differentiable.

    The kernel's ``kernel_dtype`` is switched to float64 for the call: ``1 - a_i conj(a_j)`` is
    a difference of numbers near 1 for small step sizes, which float32 would not resolve.
    """
    kernel = _kernel(layer)
    saved = kernel.kernel_dtype
    kernel.kernel_dtype = torch.float64
    try:
        a, b, c = kernel.discrete(L)  # (H N)
    finally:
        kernel.kernel_dtype = saved
    return a, b, c


def _check_abc(a, b, c) -> None:
    if not (a.shape == b.shape == c.shape) or a.ndim < 1:
        raise ValueError(
            f"a, b, c must have one shape (..., N), got {tuple(a.shape)}, {tuple(b.shape)}, "
            f"{tuple(c.shape)}"
        )


def _geometric(z: torch.Tensor, horizon: int | None) -> torch.Tensor:
    r""":math:`\sum_{k<L} z^k = (1 - z^L)/(1 - z)` (``L`` = horizon), or :math:`1/(1-z)`."""
    den = 1 - z
    if horizon is None:
        return 1 / den
    tiny = den.abs() < 1e-12  # z == 1 (a pole on the unit circle paired with itself): sum = L
    safe = torch.where(tiny, torch.ones_like(den), den)
    return torch.where(tiny, torch.full_like(den, float(horizon)), (1 - z**horizon) / safe)


def pole_kernel(a: torch.Tensor, horizon: int | None = None) -> torch.Tensor:
    r"""The Hermitian positive semi-definite :math:`K_{ij} = 1/(1 - a_i \bar a_j)`, ``(..., N, N)``.

    With a horizon ``L``: :math:`K_{ij} = \sum_{k<L} (a_i \bar a_j)^k`. Both Gramians are
    scalings of it (module docstring): :math:`P = D_b K D_b^H`, :math:`Q = D_{\bar C} \bar K D_C`.

    Raises
    ------
    ValueError
        A pole with ``|a| >= 1`` and no horizon (the infinite sums diverge).
    """
    if horizon is None and bool((a.detach().abs() >= 1).any()):
        raise ValueError(
            "infinite-horizon Gramians need every |a| < 1 (max |a| = "
            f"{float(a.detach().abs().max()):.6g}); pass horizon=L for time-limited ones"
        )
    return _geometric(a[..., :, None] * a.conj()[..., None, :], horizon)  # (... N N)


def channel_gramians(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, horizon: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Controllability and observability Gramians of the channels, ``(..., N, N)`` each.

    Parameters
    ----------
    a, b, c : complex tensors ``(..., N)``
        The discrete channels ``(a, b, c)`` of :meth:`s4dss.DSSKernel.discrete`:
        :math:`A = \mathrm{diag}(a)`, :math:`B = b`, :math:`C = c \odot a`.
    horizon : int, optional
        Time-limited Gramians of the first ``horizon`` impulse-response samples (no stability
        needed); infinite-horizon Gramians (``|a| < 1`` required) when omitted.

    Returns
    -------
    P, Q : complex tensors ``(..., N, N)``
        :math:`A P A^H - P + B B^H = 0` and :math:`A^H Q A - Q + C^H C = 0` (module docstring).

    Raises
    ------
    ValueError
        Mismatched shapes, or a pole with ``|a| >= 1`` without a horizon.
    """
    _check_abc(a, b, c)
    K = pole_kernel(a, horizon)  # (... N N)
    C = c * a  # (... N)
    P = b[..., :, None] * K * b.conj()[..., None, :]  # (... N N)
    Q = C.conj()[..., :, None] * K.conj() * C[..., None, :]  # (... N N)
    return P, Q


def hankel_trace(
    a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, horizon: int | None = None
) -> torch.Tensor:
    r""":math:`\sum_i \sigma_i^2 = \mathrm{tr}(PQ)` per channel, ``(...)`` real, exact.

    :math:`\mathrm{tr}(PQ) = \sum_{ij} P_{ij} Q_{ji} = \sum_{ij} g_i \bar g_j K_{ij}^2` with
    :math:`g = b \odot C` (:func:`pole_kernel`): O(N^2) per channel, no factorisation. Same
    parameters as :func:`channel_gramians`.
    """
    _check_abc(a, b, c)
    K = pole_kernel(a, horizon)  # (... N N)
    g = b * c * a  # (... N)
    return torch.einsum("...i,...ij,...j->...", g, K * K, g.conj()).real  # (...)


def _cholesky(X: torch.Tensor, jitter: float) -> torch.Tensor:
    """Lower Cholesky factor of ``X + jitter * max diag(X) * I`` (the shift grows on failure)."""
    if jitter < 0:
        raise ValueError(f"jitter must be >= 0, got {jitter!r}")
    n = X.shape[-1]
    scale = X.detach().diagonal(dim1=-2, dim2=-1).real.amax(-1)  # (...)
    eye = torch.eye(n, dtype=X.dtype, device=X.device)
    shift = jitter
    while True:
        L, info = torch.linalg.cholesky_ex(X + (shift * scale)[..., None, None] * eye)
        if not bool((info > 0).any()):
            return L
        if shift >= MAX_JITTER:
            bad = torch.nonzero(info.reshape(-1) > 0).flatten()[:8].tolist()
            raise ValueError(
                f"a Gramian is not positive definite even shifted by {shift:g} * max diagonal "
                f"(batch entries {bad}): non-finite or unstable layer parameters?"
            )
        shift = max(shift * 100, 1e-14)


def hankel_product(
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    horizon: int | None = None,
    jitter: float = 1e-12,
) -> torch.Tensor:
    r"""The square-root method's :math:`S^H R`, ``(..., N, N)``: its singular values are the HSVs.

    With :math:`K = L L^H` (Cholesky of :func:`pole_kernel`), :math:`R = D_b L` and
    :math:`S = D_{\bar C} \bar L` are square-root factors of :math:`P` and :math:`Q`, so
    :math:`S^H R = L^T D_g L` with :math:`g = b \odot C` (complex symmetric). One Cholesky per
    channel, of a matrix that depends on the poles only. ``K`` is shifted by ``jitter * max_i
    K_ii`` before factoring (module docstring).
    """
    _check_abc(a, b, c)
    L = _cholesky(pole_kernel(a, horizon), jitter)  # (... N N)
    g = b * c * a  # (... N)
    return L.transpose(-1, -2) @ (g[..., :, None] * L)  # (... N N)


def hankel_singular_values(
    a: torch.Tensor,
    b: torch.Tensor,
    c: torch.Tensor,
    horizon: int | None = None,
    jitter: float = 1e-12,
) -> torch.Tensor:
    r"""Hankel singular values of the channels, ``(..., N)`` descending, differentiable.

    :math:`\sigma = \mathrm{sv}(S^H R)` (:func:`hankel_product`); see the module docstring for
    the accuracy and why.

    Parameters
    ----------
    a, b, c : complex tensors ``(..., N)``
        As in :func:`channel_gramians`.
    horizon : int, optional
        Time-limited HSVs (as ``sysred.hankel_singular_values(sys, horizon=...)``).
    jitter : float
        Relative diagonal shift of ``K`` before factoring (0: none unless the factorisation
        fails).

    Examples
    --------
    >>> import torch, s4dss, sysred
    >>> from s4dss.regularizers import discrete64, hankel_singular_values
    >>> layer = s4dss.DSS(4, 8, init="s4d-lin", dt_min=0.05, dt_max=0.1)
    >>> sigma = hankel_singular_values(*discrete64(layer), jitter=0.0)
    >>> ref = sysred.hankel_singular_values(s4dss.to_system(layer))
    >>> bool(abs(sigma.detach().numpy() - ref).max() < 1e-9 * ref.max())
    True
    """
    return torch.linalg.svdvals(hankel_product(a, b, c, horizon, jitter))  # (... N)


def layer_penalty(
    layer: DSS | DSSKernel,
    kind: str = "tail",
    order: int | None = None,
    L: int | None = None,
    jitter: float = 1e-12,
    channels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-channel penalty of one layer, ``(H,)`` (or ``(len(channels),)``).

    Parameters
    ----------
    layer : DSS or DSSKernel
    kind : {"tail", "nuclear", "trace"}
        Module docstring.
    order : int, optional
        Target order r of ``"tail"``.
    L : int, optional
        Sequence length: ``"softmax"`` layers need it (their ``C`` depends on it) and use
        time-limited Gramians over ``L`` samples; ``"exp"`` layers use infinite-horizon ones.
    jitter : float
        See :func:`hankel_singular_values`.
    channels : LongTensor, optional
        Only these channels (a random subset per step keeps the cost down).
    """
    _check_kind(kind, order)
    kernel = _kernel(layer)
    horizon = None
    if kernel.mode == "softmax":
        if L is None:
            raise ValueError("a 'softmax' layer's HSVs need the sequence length L")
        horizon = int(L)
    a, b, c = discrete64(kernel, L)  # (H N)
    if channels is not None:
        a, b, c = a[channels], b[channels], c[channels]  # (h N)
    if kind == "trace":
        return hankel_trace(a, b, c, horizon)  # (H)
    sigma = hankel_singular_values(a, b, c, horizon, jitter)  # (H N)
    total = sigma.sum(-1)  # (H)
    if kind == "nuclear":
        return total
    tail = sigma[..., order:].sum(-1)  # (H)
    return tail / total.clamp_min(torch.finfo(total.dtype).tiny)


def _check_kind(kind, order) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind == "tail" and (isinstance(order, bool) or not isinstance(order, int) or order < 0):
        raise ValueError(f"kind 'tail' needs the target order: an integer >= 0, got {order!r}")


def hsv_penalty(
    model: nn.Module,
    kind: str = "tail",
    order: int | None = None,
    L: int | None = None,
    jitter: float = 1e-12,
    channels: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean of :func:`layer_penalty` over the channels of every DSS layer of ``model``.

    Parameters
    ----------
    model : nn.Module
    kind, order, L, jitter
        See :func:`layer_penalty`.
    channels : int, optional
        Per layer, only this many channels drawn without replacement (by ``generator``): an
        unbiased estimate of the mean at ``channels / H`` of the cost.
    generator : torch.Generator, optional
        For the channel draw (default: torch's global generator).

    Returns
    -------
    torch.Tensor
        A float64 scalar with autograd history (add ``weight * penalty`` to the loss).

    Raises
    ------
    ValueError
        ``model`` has no DSS layer, or ``kind``/``order``/``channels`` invalid.
    """
    layers = [m for m in model.modules() if isinstance(m, DSS)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no s4dss.DSS layer to regularise")
    if channels is not None and (isinstance(channels, bool) or not isinstance(channels, int)
                                 or channels < 1):  # fmt: skip
        raise ValueError(f"channels must be a positive integer, got {channels!r}")
    values = []
    for layer in layers:
        pick = None
        if channels is not None and channels < layer.H:
            pick = torch.randperm(layer.H, generator=generator)[:channels]  # (channels)
        values.append(layer_penalty(layer, kind, order, L, jitter, pick))  # (h)
    return torch.cat(values).mean()


@dataclass
class HSVRegConfig:
    """The ``train.hsv_reg`` section: ``loss += weight * hsv_penalty(model, kind, order)``.

    Attributes
    ----------
    weight : float
        Non-negative factor of the penalty in the loss.
    kind : {"tail", "nuclear", "trace"}
        See :mod:`s4dss.regularizers`.
    order : int or None
        Target order r of ``"tail"`` (required there, ignored otherwise).
    channels : int or None
        Channels per layer and step (a random subset, drawn from a generator seeded by
        ``(train.seed, step)``, so runs and resumes are reproducible); all when None.
    jitter : float
        Relative shift of the pole kernel before factoring (:func:`hankel_singular_values`).
    """

    weight: float
    kind: str = "tail"
    order: int | None = None
    channels: int | None = None
    jitter: float = 1e-12

    def __post_init__(self):
        w = self.weight
        if isinstance(w, bool) or not isinstance(w, int | float) or not 0 <= w < float("inf"):
            raise ValueError(f"weight must be a finite number >= 0, got {w!r}")
        _check_kind(self.kind, self.order)
        ch = self.channels
        if ch is not None and (isinstance(ch, bool) or not isinstance(ch, int) or ch < 1):
            raise ValueError(f"channels must be a positive integer or null, got {ch!r}")
        j = self.jitter
        if isinstance(j, bool) or not isinstance(j, int | float) or not 0 <= j <= MAX_JITTER:
            raise ValueError(f"jitter must be in [0, {MAX_JITTER}], got {j!r}")

    @classmethod
    def from_dict(cls, d: dict) -> HSVRegConfig:
        """Validate a config section (unknown keys, types, ranges) with clear messages."""
        if not isinstance(d, dict):
            raise ValueError(f"train.hsv_reg must be a mapping, got {d!r}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown keys {unknown} in train.hsv_reg; known: {known}")
        if "weight" not in d:
            raise ValueError("train.hsv_reg needs a weight (e.g. {weight: 0.1, order: 16})")
        try:
            return cls(**d)
        except ValueError as e:
            raise ValueError(f"train.hsv_reg: {e}") from None


class HSVRegularizer(Callback):
    """Adds ``weight * hsv_penalty(model, kind, order)`` to every training step's loss.

    Logs the penalty (``hsv_reg``) and the seconds its forward computation took
    (``hsv_reg_seconds``, wall-clock) in the ``train`` records; the summary gets the mean of
    the latter (``hsv_reg_seconds_per_step``). The penalty's backward pass is part of the
    step's single backward pass (``benchmarks/compressibility.py`` times whole steps with and
    without). With ``channels``, the subset of step ``s`` is drawn from a generator seeded by
    ``(seed, s)``: independent of the global RNG (dropout streams are untouched) and the same
    after a resume.
    """

    def __init__(
        self,
        weight: float,
        kind: str = "tail",
        order: int | None = None,
        L: int | None = None,
        jitter: float = 1e-12,
        channels: int | None = None,
        seed: int = 0,
    ):
        cfg = HSVRegConfig(weight, kind, order, channels, jitter)
        self.weight, self.kind, self.order = cfg.weight, cfg.kind, cfg.order
        self.jitter, self.channels, self.L, self.seed = cfg.jitter, cfg.channels, L, int(seed)
        self._seconds = 0.0
        self._steps = 0

    @classmethod
    def from_config(cls, section: dict, task, seed: int = 0) -> HSVRegularizer:
        c = HSVRegConfig.from_dict(section)
        L = getattr(task, "seq_len", None)
        return cls(c.weight, c.kind, c.order, L, c.jitter, c.channels, seed)

    def extra_loss(self, loop) -> torch.Tensor | None:
        if not self.weight:
            return None
        t0 = time.perf_counter()
        gen = None
        if self.channels is not None:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + loop.global_step)
        value = hsv_penalty(
            loop.model, self.kind, self.order, self.L, self.jitter, self.channels, gen
        )
        seconds = time.perf_counter() - t0
        self._seconds += seconds
        self._steps += 1
        loop.log_step(hsv_reg=float(value.detach()), hsv_reg_seconds=seconds)
        return self.weight * value.to(torch.get_default_dtype())

    def on_train_end(self, loop, summary: dict) -> None:
        if self._steps:
            summary["hsv_reg_seconds_per_step"] = self._seconds / self._steps
