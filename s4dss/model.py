r"""An S4 model made of DSS layers, its step (recurrent) mode, and the optimiser groups.

``S4Model``: encoder (embedding or linear) -> ``n_layers`` x (norm, :class:`~s4dss.dss.DSS`,
residual) -> pooling (mean / last / none) -> decoder, as in the reference LRA configs
(``d_model``, ``n_layers``, ``d_state``, ``prenorm``, ``dropout``). Each DSS layer already holds
its activation, dropout and output projection.

Step mode runs a model token by token with an ``O(n_layers H N)`` state::

    model.eval(); model.setup_step(L)          # L needed only for mode="softmax"
    state = model.initial_state(batch_size)    # real=True: real arithmetic, exportable
    for t in range(L):
        out, state = model.step(x[:, t], state)  # out == model(x[:, :t+1]) (pooling so far)

Optimiser groups: SSM parameters (``Lambda``, ``log_dt``, ``W``) want their own learning rate
(1e-3) and no weight decay; ``torch.optim.AdamW(param_groups(model, lr, weight_decay))``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from s4dss.dss import DSS, DSSKernel

POOLS = ("mean", "last", "none")
KERNEL_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def param_groups(model: nn.Module, lr: float = 1e-3, weight_decay: float = 0.0) -> list[dict]:
    """Optimiser parameter groups: one base group, plus one per distinct SSM setting.

    The parameters of every :class:`~s4dss.dss.DSSKernel` (``Lambda``, ``log_dt``, ``W``) get
    that kernel's ``optim`` dict (lr ``ssm_lr`` = 1e-3, weight decay 0 by default, as in the DSS
    reference code); all other parameters get ``lr`` and ``weight_decay``. Pass the result to any
    ``torch.optim`` optimiser, e.g. ``AdamW(param_groups(model, lr=4e-3, weight_decay=0.05))``.
    """
    special: dict[int, tuple] = {}
    for module in model.modules():
        if isinstance(module, DSSKernel):
            hp = tuple(sorted(module.optim.items()))
            special.update({id(p): hp for p in module.parameters()})
    base, tagged = [], {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if id(p) in special:
            tagged.setdefault(special[id(p)], []).append(p)
        else:
            base.append(p)
    groups = [{"params": base, "lr": lr, "weight_decay": weight_decay}] if base else []
    return groups + [{"params": ps, **dict(hp)} for hp, ps in tagged.items()]


@dataclass
class S4State:
    """Step-mode state: one ``(B, H, N_i)`` complex (or ``(B, H, 2 N_i)`` real) state per layer,
    and the pooling memory."""

    layers: list[torch.Tensor]
    total: torch.Tensor  # (B H) running sum of the last layer's features, for mean pooling
    t: int = 0


class S4Model(nn.Module):
    r"""S4 model with DSS layers.

    Parameters
    ----------
    d_output : int
        Output size (classes).
    d_input : int, optional
        Input features per time step; the encoder is ``Linear(d_input, d_model)``. Exactly one of
        ``d_input`` and ``vocab_size`` must be given.
    vocab_size : int, optional
        Token vocabulary; the encoder is ``Embedding(vocab_size, d_model)``.
    d_model : int
        Channels ``H`` of every DSS layer.
    n_layers : int
    d_state : int or sequence of int
        Complex states ``N`` per channel, one value for all layers or one per layer (a reduced
        model may have a different order in each layer).
    mode : {"exp", "softmax"}
    init : {"skew-hippo", "s4d-lin", "s4d-inv", "random"}
    lambda_per_channel : bool
        ``Lambda`` ``(H, N)`` per channel instead of ``(N,)`` shared (reduced models use it).
    prenorm : bool
        ``x + layer(norm(x))`` if True, else ``norm(x + layer(x))``.
    dropout : float
    pool : {"mean", "last", "none"}
        Pooling over time before the decoder; ``"none"`` gives per-step outputs.
    dt_min, dt_max, ssm_lr
        Step-size initialisation range and the SSM parameters' learning rate.
    kernel_dtype : {"float64", "float32"}
        Precision of the kernel computation (see :class:`~s4dss.dss.DSSKernel`).

    ``model.config`` holds these arguments, so ``S4Model(**model.config)`` rebuilds the
    architecture (for ``load_state_dict``), reduced models included.
    """

    def __init__(
        self,
        d_output: int,
        d_input: int | None = None,
        vocab_size: int | None = None,
        d_model: int = 64,
        n_layers: int = 4,
        d_state: int | Sequence[int] = 64,
        mode: str = "exp",
        init: str = "skew-hippo",
        lambda_per_channel: bool = False,
        prenorm: bool = False,
        dropout: float = 0.0,
        pool: str = "mean",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        ssm_lr: float = 1e-3,
        kernel_dtype: str = "float64",
    ):
        super().__init__()
        if (d_input is None) == (vocab_size is None):
            raise ValueError("give exactly one of d_input (linear encoder) and vocab_size")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if kernel_dtype not in KERNEL_DTYPES:
            raise ValueError(f"kernel_dtype must be one of {tuple(KERNEL_DTYPES)}")
        if int(n_layers) < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        states = [d_state] * n_layers if isinstance(d_state, int) else list(d_state)
        if len(states) != n_layers:
            raise ValueError(f"d_state has {len(states)} entries for {n_layers} layers")
        self.config = dict(
            d_output=d_output, d_input=d_input, vocab_size=vocab_size, d_model=d_model,
            n_layers=n_layers, d_state=d_state if isinstance(d_state, int) else states,
            mode=mode, init=init, lambda_per_channel=lambda_per_channel, prenorm=prenorm,
            dropout=dropout, pool=pool, dt_min=dt_min, dt_max=dt_max, ssm_lr=ssm_lr,
            kernel_dtype=kernel_dtype,
        )  # fmt: skip
        self.prenorm, self.pool = prenorm, pool
        if vocab_size is not None:
            self.encoder = nn.Embedding(vocab_size, d_model)
        else:
            self.encoder = nn.Linear(d_input, d_model)
        self.layers = nn.ModuleList(
            DSS(d_model, N, mode, init, lambda_per_channel, dropout, dt_min, dt_max, ssm_lr,
                KERNEL_DTYPES[kernel_dtype])
            for N in states
        )  # fmt: skip
        self.norms = nn.ModuleList(nn.LayerNorm(d_model) for _ in states)
        self.decoder = nn.Linear(d_model, d_output)

    def _pre(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Input of layer ``i``: ``norm(x)`` for pre-norm, else ``x``; ``(B ... H)``."""
        return self.norms[i](x) if self.prenorm else x

    def _post(self, i: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Residual ``x + y`` of block ``i``, then the norm for post-norm; ``(B ... H)``."""
        x = x + y  # (B ... H)
        return x if self.prenorm else self.norms[i](x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Encoder and layers: ``(B, L)`` tokens or ``(B, L, d_input)`` -> ``(B, L, H)``."""
        x = self.encoder(x)  # (B L H)
        for i, layer in enumerate(self.layers):
            y = layer(self._pre(i, x).transpose(-1, -2)).transpose(-1, -2)  # (B L H)
            x = self._post(i, x, y)  # (B L H)
        return x  # (B L H)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Logits ``(B, d_output)`` (``(B, L, d_output)`` for ``pool="none"``).

        ``lengths`` ``(B,)``, optional: valid prefix length of each padded sequence. The layers
        are causal, so padding at the end never reaches the valid positions; pooling then uses
        only those positions.
        """
        x = self.features(x)  # (B L H)
        if self.pool == "none":
            return self.decoder(x)  # (B L d_output)
        B, L, _ = x.shape
        if lengths is None:
            lengths = torch.full((B,), L, dtype=torch.long)
        lengths = torch.as_tensor(lengths, device=x.device)
        if lengths.shape != (B,) or (lengths < 1).any() or (lengths > L).any():
            raise ValueError(f"lengths must be (B,) = ({B},) with entries in [1, {L}]")
        if self.pool == "last":
            x = x[torch.arange(B, device=x.device), lengths - 1]  # (B H)
        else:
            mask = torch.arange(L, device=x.device) < lengths[:, None]  # (B L)
            x = (x * mask[..., None]).sum(1) / lengths[:, None].to(x.dtype)  # (B H)
        return self.decoder(x)  # (B d_output)

    # ------------------------------------------------------------------ step mode

    def setup_step(self, L: int | None = None) -> None:
        """Prepare every layer for :meth:`step` (``L`` required for ``mode="softmax"``)."""
        for layer in self.layers:
            layer.setup_step(L)

    def initial_state(self, batch_size: int, real: bool = False) -> S4State:
        """Zero step-mode state for ``batch_size`` sequences: complex layer states, or real
        ``[Re s, Im s]`` ones for the real-arithmetic step (``real=True``, see
        :meth:`~s4dss.dss.DSS.step`; what :mod:`s4dss.export` exports)."""
        H = self.config["d_model"]
        dtype = self.decoder.weight.dtype
        return S4State(
            [layer.initial_state(batch_size, real) for layer in self.layers],
            torch.zeros(batch_size, H, dtype=dtype, device=self.decoder.weight.device),
        )

    def step(self, x: torch.Tensor, state: S4State) -> tuple[torch.Tensor, S4State]:
        """One time step: ``x`` ``(B,)`` tokens or ``(B, d_input)`` -> output ``(B, d_output)``.

        The output is what :meth:`forward` gives for the sequence seen so far: the decoder of the
        running mean (``"mean"``), of the current features (``"last"``, ``"none"``).
        """
        z = self.encoder(x)  # (B H)
        new_states = []
        for i, layer in enumerate(self.layers):
            y, s_i = layer.step(self._pre(i, z), state.layers[i])  # (B H)
            z = self._post(i, z, y)  # (B H)
            new_states.append(s_i)
        total = state.total + z  # (B H)
        pooled = total / (state.t + 1) if self.pool == "mean" else z  # (B H)
        return self.decoder(pooled), S4State(new_states, total, state.t + 1)
