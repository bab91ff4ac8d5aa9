r"""The Diagonal State Space (DSS) layer: initialisations, kernels, convolution and step modes.

Gupta, Gu & Berant (2022), "Diagonal State Spaces are as effective as Structured State Spaces".
One layer has ``H`` channels and ``N`` complex states. Parameters (per layer):

- :math:`\Lambda \in \mathbb{C}^N` shared by all channels, or :math:`\mathbb{C}^{H \times N}` per
  channel (a reduced layer is always per-channel);
- :math:`\log\Delta \in \mathbb{R}^H`, one step size per channel;
- :math:`W \in \mathbb{C}^{H \times N}` (the output matrix with the input matrix folded in);
- :math:`D \in \mathbb{R}^H`, the skip term.

With :math:`x_{hn} = \Delta_h \lambda_n` the kernel for sequence length ``L`` (``k = 0..L-1``)
is the real part of a Vandermonde product (no factor 2, no conjugate pairs):

- ``"exp"``: :math:`K_{hk} = \mathrm{Re} \sum_n W_{hn} \frac{e^{x_{hn}} - 1}{\lambda_n}
  e^{k x_{hn}}`, with :math:`\mathrm{Re}\,\lambda = -e^{\theta} < 0` (always stable);
- ``"softmax"``: :math:`K_{hk} = \mathrm{Re} \sum_n \frac{W_{hn}}{\lambda_n}
  \mathrm{softmax}_k(k x_{hn})`, the softmax over ``k = 0..L-1`` normalised in closed form by
  :math:`\frac{e^{x} - 1}{e^{L x} - 1}`; :math:`\mathrm{Re}\,\lambda` is free, so the kernel
  depends on ``L`` and poles may leave the left half-plane.

Both are one discrete-time diagonal system per channel (dt = one sequence index):
:math:`K_k = \mathrm{Re}\sum_n c_n b_n a_n^k` with :math:`a = e^{x}`,
:math:`b = (e^{x} - 1)/\lambda` and :math:`c = W` ("exp") or :math:`c = W / (e^{L x} - 1)`
("softmax"). :meth:`DSSKernel.discrete` returns ``(a, b, c)``; the step mode runs the recurrence
:math:`s_t = a s_{t-1} + b u_t`, :math:`y_t = \mathrm{Re}\sum_n c_n s_{t,n} + D u_t`, which is
the causal convolution :math:`y = K * u + D u` (``reference.md`` sections 1-2), in complex or in
real arithmetic (state ``[Re s, Im s]``, exportable: :mod:`s4dss.export`).

Speed: the kernel is one real matrix product of blocked powers (:func:`vandermonde`,
``O(H N sqrt(L))`` exponentials instead of the ``O(H N L)`` of one ``exp`` per tap), with its
gradient in closed form.

Optimiser convention: the SSM parameters (``Lambda_*``, ``log_dt``, ``W``) live in
:class:`DSSKernel`, whose ``optim`` dict (``lr`` 1e-3, ``weight_decay`` 0 by default) says how to
train them; :func:`s4dss.param_groups` turns it into optimiser groups. (A module attribute, not a
tag on each parameter: ``copy.deepcopy`` drops attributes set on parameters.)
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

MODES = ("exp", "softmax")


# ----------------------------------------------------------------------------- initialisations


def skew_hippo(N: int) -> torch.Tensor:
    r"""Skew-HiPPO initialisation: the eigenvalues of the normal part of HiPPO-LegS.

    With ``M = 2N``, :math:`H_{ij} = \sqrt{(2i+1)(2j+1)}` for ``i > j`` (else 0) and
    :math:`S = (H - H^T)/2`, take the ``N`` eigenvalues :math:`i\omega` of ``S`` with
    :math:`\omega > 0` and return :math:`\lambda_n = -1/2 + i\omega_n`, largest ``omega`` first.

    Returns
    -------
    torch.Tensor
        ``(N,)`` complex128.
    """
    M = 2 * N
    i = np.arange(M)
    Hm = np.tril(np.sqrt(np.outer(2 * i + 1, 2 * i + 1)), k=-1)
    S = (Hm - Hm.T) / 2
    # iS is Hermitian: eigvalsh is accurate and returns -omega for each eigenvalue i*omega of S.
    omega = -np.linalg.eigvalsh(1j * S)
    omega = np.sort(omega[omega > 0])[::-1][:N]
    return torch.tensor(-0.5 + 1j * omega, dtype=torch.complex128)


def s4d_lin(N: int) -> torch.Tensor:
    r"""S4D-Lin: :math:`\lambda_n = -1/2 + i\pi n`, ``n = 0..N-1``; ``(N,)`` complex128."""
    n = torch.arange(N, dtype=torch.float64)
    return torch.complex(torch.full_like(n, -0.5), math.pi * n)


def s4d_inv(N: int) -> torch.Tensor:
    r"""S4D-Inv: :math:`\lambda_n = -1/2 + i \frac{M}{\pi}\left(\frac{M}{2n+1} - 1\right)`.

    ``M = 2N`` is the real state size these ``N`` complex modes stand for (the same convention
    as :func:`skew_hippo`, whose imaginary parts it approximates). ``(N,)`` complex128.
    """
    n = torch.arange(N, dtype=torch.float64)
    M = 2 * N
    return torch.complex(torch.full_like(n, -0.5), M / math.pi * (M / (2 * n + 1) - 1))


def random_init(N: int, generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Random: :math:`\mathrm{Re}\,\lambda \sim -U[0.1, 1]`, :math:`\mathrm{Im}\,\lambda \sim
    U[0, \pi N]` (the S4D-Lin frequency range); ``(N,)`` complex128."""
    re = -(0.1 + 0.9 * torch.rand(N, generator=generator, dtype=torch.float64))  # (N)
    im = math.pi * N * torch.rand(N, generator=generator, dtype=torch.float64)  # (N)
    return torch.complex(re, im)


INITS = {"skew-hippo": skew_hippo, "s4d-lin": s4d_lin, "s4d-inv": s4d_inv, "random": random_init}


# ----------------------------------------------------------------------------- kernel


class DSSKernel(nn.Module):
    r"""The SSM part of a DSS layer: parameters and the length-``L`` convolution kernel.

    Parameters
    ----------
    H, N : int
        Channels and complex states per channel.
    mode : {"exp", "softmax"}
        Kernel parameterisation (module docstring).
    init : {"skew-hippo", "s4d-lin", "s4d-inv", "random"}
        Initialisation of :math:`\Lambda`; for ``"exp"`` the real parts must be negative.
    per_channel : bool
        ``Lambda`` of shape ``(H, N)`` (initialised with the same values in every channel)
        instead of ``(N,)`` shared by all channels.
    dt_min, dt_max : float
        :math:`\Delta_h` is initialised log-uniform in ``[dt_min, dt_max]``.
    lr : float
        Learning rate attached to the SSM parameters (their weight decay is 0).
    kernel_dtype : torch.dtype
        dtype of the kernel's matrix product and result (``torch.float64`` by default). The
        phases :math:`k \Delta\,\mathrm{Im}\lambda` (up to ~1e5) are always formed in float64
        (:func:`vandermonde`); float32 then gives kernels within ~3e-7 of :math:`\max|K|` of
        the float64 ones, at about the same speed on a CPU (``benchmarks/s4dss_speed.py``). The
        kernel is cast to the input's dtype before the convolution. The step mode's complex
        state (:meth:`DSS.initial_state`) is complex64 with float32.

    Notes
    -----
    Stored parameters: ``Lambda_log_neg_re`` (``"exp"``, :math:`\mathrm{Re}\lambda =
    -e^{\theta}`) or ``Lambda_re`` (``"softmax"``), ``Lambda_im``, ``log_dt`` ``(H,)`` and ``W``
    as a real view ``(H, N, 2)`` (plain real tensors keep every optimiser and ``state_dict``
    tool working).
    """

    def __init__(
        self,
        H: int,
        N: int = 64,
        mode: str = "exp",
        init: str = "skew-hippo",
        per_channel: bool = False,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        lr: float = 1e-3,
        kernel_dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        if int(H) < 1 or int(N) < 1:
            raise ValueError(f"DSSKernel needs H >= 1 and N >= 1, got H={H}, N={N}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if init not in INITS:
            raise ValueError(f"init must be one of {tuple(INITS)}, got {init!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if kernel_dtype not in (torch.float32, torch.float64):
            raise ValueError(f"kernel_dtype must be torch.float32 or float64, got {kernel_dtype}")
        self.H, self.N, self.mode, self.kernel_dtype = int(H), int(N), mode, kernel_dtype
        Lambda = INITS[init](self.N)  # (N)
        if per_channel:
            Lambda = Lambda.expand(self.H, self.N).clone()  # (H N)
        log_dt = torch.rand(self.H, dtype=torch.float64) * (
            math.log(dt_max) - math.log(dt_min)
        ) + math.log(dt_min)  # (H)
        # Complex normal with unit-variance real and imaginary parts, as in the DSS code.
        W = torch.randn(self.H, self.N, dtype=torch.complex128) * math.sqrt(2)  # (H N)
        self._set(Lambda, W, log_dt, lr)

    @classmethod
    def from_params(
        cls,
        Lambda: torch.Tensor,
        W: torch.Tensor,
        log_dt: torch.Tensor,
        mode: str = "exp",
        lr: float = 1e-3,
        kernel_dtype: torch.dtype = torch.float64,
        param_dtype: torch.dtype | None = None,
    ) -> DSSKernel:
        r"""Build a kernel from explicit parameters (used for reduced layers).

        Parameters
        ----------
        Lambda : complex tensor, ``(N,)`` or ``(H, N)``
        W : complex tensor, ``(H, N)``
        log_dt : real tensor, ``(H,)``
        mode : {"exp", "softmax"}
            ``"exp"`` needs :math:`\mathrm{Re}\,\Lambda < 0` everywhere.
        lr, kernel_dtype
            As in the constructor.
        param_dtype : torch.dtype, optional
            dtype of the stored real parameters (default: torch's default dtype).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        Lambda, W = torch.as_tensor(Lambda), torch.as_tensor(W)
        log_dt = torch.as_tensor(log_dt, dtype=torch.float64)
        if W.ndim != 2 or log_dt.shape != W.shape[:1] or Lambda.shape not in (W.shape, W.shape[1:]):
            raise ValueError(
                "from_params needs W (H, N), log_dt (H,) and Lambda (N,) or (H, N); got "
                f"Lambda {tuple(Lambda.shape)}, W {tuple(W.shape)}, log_dt {tuple(log_dt.shape)}"
            )
        for name, t in (("Lambda", Lambda), ("W", W), ("log_dt", log_dt)):
            if not torch.isfinite(torch.view_as_real(t) if t.is_complex() else t).all():
                raise ValueError(f"from_params: {name} has non-finite entries")
        if mode == "exp" and not (Lambda.real < 0).all():
            raise ValueError(
                "mode 'exp' needs Re(Lambda) < 0 everywhere (Re Lambda = -exp(theta)); "
                f"max Re(Lambda) = {Lambda.real.max().item():.3g}"
            )
        self = cls.__new__(cls)
        nn.Module.__init__(self)
        H, N = W.shape
        self.H, self.N, self.mode, self.kernel_dtype = int(H), int(N), mode, kernel_dtype
        self._set(Lambda.to(torch.complex128), W.to(torch.complex128), log_dt, lr, param_dtype)
        return self

    def _set(self, Lambda, W, log_dt, lr: float, dtype: torch.dtype | None = None) -> None:
        dtype = dtype or torch.get_default_dtype()
        self.optim = {"lr": lr, "weight_decay": 0.0}
        if self.mode == "exp":
            self.Lambda_log_neg_re = nn.Parameter((-Lambda.real).log().to(dtype))
        else:
            self.Lambda_re = nn.Parameter(Lambda.real.to(dtype))
        self.Lambda_im = nn.Parameter(Lambda.imag.to(dtype))
        self.log_dt = nn.Parameter(log_dt.to(dtype))
        self.W = nn.Parameter(torch.view_as_real(W).to(dtype).contiguous())

    @property
    def per_channel(self) -> bool:
        """Whether ``Lambda`` is ``(H, N)`` (one set of poles per channel)."""
        return self.Lambda_im.ndim == 2

    def Lambda(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        r""":math:`\Lambda`, ``(N,)`` or ``(H, N)`` complex in ``dtype`` (``kernel_dtype``)."""
        dt = dtype or self.kernel_dtype
        re = -self.Lambda_log_neg_re.to(dt).exp() if self.mode == "exp" else self.Lambda_re.to(dt)
        return torch.complex(re, self.Lambda_im.to(dt))

    def _x(self, dtype: torch.dtype | None = None):
        r"""``(Lambda, x, W)`` broadcast to ``(H, N)``, with :math:`x = \Delta_h \lambda`, in
        ``dtype`` (default ``kernel_dtype``)."""
        dt = dtype or self.kernel_dtype
        Lambda = self.Lambda(dt).expand(self.H, self.N)  # (H N)
        delta = self.log_dt.to(dt).exp()  # (H)
        W = torch.view_as_complex(self.W.to(dt))  # (H N)
        return Lambda, delta[:, None] * Lambda, W  # (H N)

    def discrete(self, L: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r"""The channels as discrete diagonal systems: ``(a, b, c)``, each ``(H, N)`` complex.

        :math:`K_k = \mathrm{Re} \sum_n c_n b_n a_n^k` with :math:`a = e^{\Delta\lambda}`,
        :math:`b = (e^{\Delta\lambda} - 1)/\lambda`, :math:`c = W` (``"exp"``) or
        :math:`c = W / (e^{L\Delta\lambda} - 1)` (``"softmax"``, which needs ``L``).
        """
        Lambda, x, W = self._x()  # (H N)
        a = x.exp()  # (H N)
        b = torch.expm1(x) / Lambda  # (H N)
        if self.mode == "exp":
            return a, b, W
        L = _check_length(L, "the softmax kernel is normalised over L, so its C depends on L")
        return a, b, W / torch.expm1(L * x)  # (H N)

    def forward(self, L: int) -> torch.Tensor:
        r"""The kernel :math:`K`, ``(H, L)`` real in ``kernel_dtype`` (module docstring).

        Computed by :func:`vandermonde` (blocked powers, one real matrix product); the poles
        and coefficients in float64 whatever ``kernel_dtype`` is.
        """
        L = _check_length(L, "kernel length")
        Lambda, x, W = self._x(torch.float64)  # (H N)
        if self.mode == "exp":
            coef = W * torch.expm1(x) / Lambda  # (H N)
            return vandermonde(coef, x, L, dtype=self.kernel_dtype)  # (H L)
        # softmax_k(k x) = e^{kx} (e^x - 1)/(e^{Lx} - 1). For Re x > 0 this overflows, so those
        # modes use the shifted form e^{(k-L+1)x} (1 - e^{-x})/(1 - e^{-Lx}), the same number.
        pos = x.real > 0  # (H N)
        xs = torch.where(pos, -x, x)  # (H N)
        norm = torch.expm1(xs) / torch.expm1(L * xs)  # (H N)
        return vandermonde(W / Lambda * norm, x, L, shifted=pos, dtype=self.kernel_dtype)


def block_size(L: int) -> int:
    """Taps per block of :func:`vandermonde`: about ``sqrt(L)``, balancing the powers computed
    within a block against the number of blocks."""
    return max(1, min(L, math.ceil(math.sqrt(L))))


def _cexp(xr: torch.Tensor, xi: torch.Tensor, e: torch.Tensor):
    r""":math:`e^{x e}` for real exponents ``e`` (last axis) in real arithmetic: ``(re, im)``.

    ``exp``/``cos``/``sin`` of real tensors are vectorised; torch's complex ``exp`` is not
    (measured ~20x slower).
    """
    mag = torch.exp(xr[..., None] * e)  # (H N k)
    ph = xi[..., None] * e  # (H N k)
    return mag * torch.cos(ph), mag * torch.sin(ph)  # (H N k)


class _Blocks:
    """The block layout of :func:`vandermonde` for ``L`` taps: starts ``t_q``, offsets ``j``."""

    def __init__(self, L: int, device):
        self.L, self.b = L, block_size(L)
        self.nq = -(-L // self.b)
        f64 = dict(dtype=torch.float64, device=device)
        self.starts = torch.arange(self.nq, **f64) * self.b  # (nq)
        self.starts[-1] = L - self.b  # the last block overlaps the one before: no tap >= L
        self.j = torch.arange(self.b, **f64)  # (b)
        self.new = (self.nq - 1) * self.b - (L - self.b)  # first new tap in the last block

    def gather(self, R: torch.Tensor) -> torch.Tensor:
        """``(H, nq, b)`` block values -> ``(H, L)`` taps."""
        tail = R[:, -1, self.new :]  # (H L-(nq-1)b)
        return torch.cat([R[:, :-1].reshape(R.shape[0], -1), tail], dim=-1)  # (H L)

    def scatter(self, G: torch.Tensor) -> torch.Tensor:
        """The adjoint of :meth:`gather`: ``(H, L)`` -> ``(H, nq, b)`` (zero on the overlap)."""
        Gb = G.new_zeros(G.shape[0], self.nq, self.b)  # (H nq b)
        cut = (self.nq - 1) * self.b
        Gb[:, :-1] = G[:, :cut].reshape(G.shape[0], self.nq - 1, self.b)
        Gb[:, -1, self.new :] = G[:, cut:]
        return Gb  # (H nq b)


class _Vandermonde(torch.autograd.Function):
    r"""``K = Re sum_n c_n e^{(l - s_n) x_n}`` by blocks, with the gradient in closed form.

    With :math:`V_{nl} = e^{(l - s_n) x_n}` and the incoming gradient :math:`G_l`:
    :math:`\partial/\partial c_n = \sum_l G_l \overline{V_{nl}}` and
    :math:`\partial/\partial x_n = \overline{c_n} \sum_l G_l (l - s_n)
    \overline{V_{nl}}` (torch's convention for complex gradients: the conjugate Wirtinger
    derivative, times 2). Both sums are the transposed blocked product: one real matrix
    product ``[G; G j] @ [Re P; Im P]^T`` and ``O(H N L/b)`` work to apply :math:`E`. Autograd
    through the forward would instead keep and differentiate every ``(H, N, b)`` and
    ``(H, N, L/b)`` intermediate (measured ~2x slower).
    """

    @staticmethod
    def forward(ctx, coef, x, L, shifted, dtype):
        blocks = _Blocks(L, x.device)
        b = blocks.b
        N = x.shape[-1]
        sh = torch.zeros_like(x.real) if shifted is None else shifted.to(torch.float64)  # (H N)
        gamma, shift = sh * (b - 1), sh * (L - 1)  # (H N)
        Pr, Pi = _cexp(x.real, x.imag, blocks.j - gamma[..., None])  # (H N b)
        Er, Ei = _cexp(x.real, x.imag, blocks.starts + (gamma - shift)[..., None])  # (H N nq)
        cr, ci = coef.real[..., None], coef.imag[..., None]  # (H N 1)
        A = torch.cat([cr * Er - ci * Ei, ci * Er + cr * Ei], dim=1)  # (H 2N nq) [Re Q; Im Q]
        A[:, N:] *= -1  # [Re Q; -Im Q]: Re(Q^T P) = Re Q^T Re P - Im Q^T Im P
        V = torch.cat([Pr, Pi], dim=1).to(dtype)  # (H 2N b)
        R = A.transpose(-1, -2).to(dtype) @ V  # (H nq b) row q: taps starts[q] + j
        ctx.save_for_backward(coef, V, Er, Ei, shift)
        ctx.blocks = blocks
        return blocks.gather(R)  # (H L)

    @staticmethod
    def backward(ctx, G):
        if torch.is_grad_enabled():  # create_graph=True: a second derivative would be wrong
            raise RuntimeError(
                "the DSS kernel's closed-form gradient is not differentiable again "
                "(create_graph=True / double backward through s4dss.dss.vandermonde)"
            )
        coef, V, Er, Ei, shift = ctx.saved_tensors
        blocks = ctx.blocks
        N = coef.shape[-1]
        Gb = blocks.scatter(G.to(V.dtype))  # (H nq b)
        # T[q, n] = sum_j G[q, j] conj(P[n, j]), and the same with G[q, j] * j
        T = torch.cat([Gb, Gb * blocks.j.to(V.dtype)], dim=1) @ V.transpose(-1, -2)  # (H 2nq 2N)
        T = T.to(torch.float64)  # (H 2nq 2N)
        Tr, Ti = T[..., :N], -T[..., N:]  # (H 2nq N) conj(P): imaginary part negated
        Er_t, Ei_t = Er.transpose(-1, -2).repeat(1, 2, 1), Ei.transpose(-1, -2).repeat(1, 2, 1)
        Ur = Er_t * Tr + Ei_t * Ti  # (H 2nq N) conj(E) T
        Ui = Er_t * Ti - Ei_t * Tr  # (H 2nq N)
        U = torch.complex(Ur, Ui)  # (H 2nq N)
        nq = blocks.nq
        S0 = U[:, :nq].sum(1)  # (H N) sum_l G_l conj(V_nl)
        # sum_l G_l l conj(V_nl) with l = t_q + j: the start part and the j-weighted rows
        Sl = (blocks.starts[:, None] * U[:, :nq]).sum(1) + U[:, nq:].sum(1)  # (H N)
        grad_coef = S0 if ctx.needs_input_grad[0] else None
        grad_x = None
        if ctx.needs_input_grad[1]:
            grad_x = coef.conj() * (Sl - shift * S0)  # (H N)
        return grad_coef, grad_x, None, None, None


def vandermonde(
    coef: torch.Tensor,
    x: torch.Tensor,
    L: int,
    shifted: torch.Tensor | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    r"""The real Vandermonde product :math:`K_l = \mathrm{Re}\sum_n c_n e^{(l - s_n) x_n}`.

    ``l = 0..L-1``; :math:`s_n = L - 1` where ``shifted`` (modes with :math:`\mathrm{Re}\,x >
    0`, so every power has modulus <= 1), else 0. Instead of one complex ``exp`` per tap and
    mode (``O(H N L)`` transcendental functions, as in the S4D reference), write
    :math:`l = t_q + j` with block starts :math:`t_q` and offsets ``j < b``, ``b`` =
    :func:`block_size`:

    .. math::

        K_{t_q + j} = \mathrm{Re} \sum_n \underbrace{c_n e^{(t_q + \gamma_n - s_n) x_n}}_{Q_{nq}}
        \underbrace{e^{(j - \gamma_n) x_n}}_{P_{nj}}
        = \left[\mathrm{Re}\,Q^T,\ -\mathrm{Im}\,Q^T\right]
          \begin{bmatrix}\mathrm{Re}\,P \\ \mathrm{Im}\,P\end{bmatrix},

    with :math:`\gamma_n = b - 1` for shifted modes, else 0 (both factors then have modulus
    <= 1). That is ``O(H N (b + L/b))`` exponentials in float64 (exact phases even where
    :math:`L\,\mathrm{Im}\,x` reaches 1e5) and one real batched matrix product
    ``(H, L/b, 2N) @ (H, 2N, b)`` in ``dtype``. The last block starts at ``L - b`` (it overlaps
    the one before), so no power beyond ``L - 1`` is ever formed. Differentiable in ``coef``
    and ``x``, with the gradient in closed form (:class:`_Vandermonde`; first derivatives
    only: ``create_graph=True`` raises).

    Parameters
    ----------
    coef, x : complex128 tensors ``(H, N)``
        Coefficients :math:`c` and exponents :math:`x`.
    L : int
        Number of taps.
    shifted : bool tensor ``(H, N)``, optional
    dtype : torch.float32 or torch.float64
        dtype of the matrix products and of the result. float32 is accurate to ~3e-7 of
        :math:`\max|K|` (``benchmarks/s4dss_speed.py``); float64 to ~1e-15.

    Returns
    -------
    torch.Tensor
        ``(H, L)`` real, ``dtype``.
    """
    return _Vandermonde.apply(coef, x, int(L), shifted, dtype)


def _check_length(L, what: str) -> int:
    if L is None or isinstance(L, bool) or int(L) != L or int(L) < 1:
        raise ValueError(f"need a sequence length L >= 1 ({what}), got {L!r}")
    return int(L)


# ----------------------------------------------------------------------------- layer


def causal_conv(u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    r"""Causal convolution :math:`y_t = \sum_{j \le t} K_{t-j} u_j` by FFT.

    Zero-padding to ``2L`` makes the FFT's circular convolution equal the linear one on the first
    ``L`` outputs, so nothing wraps around from the end of the sequence.

    Parameters
    ----------
    u : ``(B, H, L)`` real
    K : ``(H, L)`` real (cast to ``u``'s dtype)
    """
    L = u.shape[-1]
    u_f = torch.fft.rfft(u, n=2 * L)  # (B H L+1)
    K_f = torch.fft.rfft(K.to(u.dtype), n=2 * L)  # (H L+1)
    return torch.fft.irfft(u_f * K_f, n=2 * L)[..., :L]  # (B H L)


class DSS(nn.Module):
    r"""One DSS layer: :math:`y = \mathrm{Linear}(\mathrm{Dropout}(\mathrm{GELU}(K * u + D u)))`.

    Parameters
    ----------
    d_model : int
        Channels ``H``.
    d_state : int
        Complex states ``N`` per channel.
    mode, init, per_channel, dt_min, dt_max, lr, kernel_dtype
        Passed to :class:`DSSKernel`.
    dropout : float
        Dropout after the activation.

    Shapes: :meth:`forward` maps ``(B, H, L) -> (B, H, L)``; :meth:`step` maps one time step
    ``(B, H) -> (B, H)`` with a state ``(B, H, N)`` complex or ``(B, H, 2N)`` real (real
    arithmetic), after :meth:`setup_step`.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        mode: str = "exp",
        init: str = "skew-hippo",
        per_channel: bool = False,
        dropout: float = 0.0,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        lr: float = 1e-3,
        kernel_dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        self.H = int(d_model)
        self.kernel = DSSKernel(
            d_model, d_state, mode, init, per_channel, dt_min, dt_max, lr, kernel_dtype
        )
        self.D = nn.Parameter(torch.randn(self.H))
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.output_linear = nn.Linear(self.H, self.H)
        self._step_params = None
        self._real_step_params = None

    @property
    def N(self) -> int:
        """State dimension (complex states per channel)."""
        return self.kernel.N

    def _check_input(self, u: torch.Tensor, ndim: int, what: str) -> None:
        if u.ndim != ndim or u.shape[1] != self.H:
            raise ValueError(f"DSS expects {what} with H={self.H}, got shape {tuple(u.shape)}")

    def _mix(self, y: torch.Tensor) -> torch.Tensor:
        """Activation, dropout and the output linear over channels; ``(B H ...)`` in and out."""
        y = self.dropout(self.activation(y))  # (B H ...)
        return self.output_linear(y.movedim(1, -1)).movedim(-1, 1)  # (B H ...)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Convolution mode: ``u`` ``(B, H, L)`` -> ``(B, H, L)``."""
        self._check_input(u, 3, "u of shape (B, H, L)")
        K = self.kernel(u.shape[-1])  # (H L)
        y = causal_conv(u, K) + self.D[:, None] * u  # (B H L)
        return self._mix(y)  # (B H L)

    def setup_step(self, L: int | None = None) -> None:
        """Cache the discrete ``(a, b, c)`` for :meth:`step` (call again after any update).

        ``L`` is required for ``"softmax"`` (its kernel is normalised over the whole length).
        Also caches their real and imaginary parts, in the layer's dtype, for the real step.
        """
        with torch.no_grad():
            self._step_params = tuple(t.detach() for t in self.kernel.discrete(L))
            a, b, c = self._step_params  # (H N)
            dtype = self.D.dtype
            # real step (see step): S' = A_re * S + A_im * swap(S) + B u, y = sum(C * S') + D u
            # on S = [Re s, Im s] (last axis, 2N); swap(S) = [Im s, Re s]
            self._real_step_params = tuple(
                t.to(dtype)
                for t in (
                    torch.cat([a.real, a.real], -1),  # (H 2N)
                    torch.cat([-a.imag, a.imag], -1),  # (H 2N)
                    torch.cat([b.real, b.imag], -1),  # (H 2N)
                    torch.cat([c.real, -c.imag], -1),  # (H 2N)
                )
            )

    def initial_state(self, batch_size: int, real: bool = False) -> torch.Tensor:
        """Zero state: ``(B, H, N)`` complex, or ``(B, H, 2N)`` real (``[Re s, Im s]``) for the
        real-arithmetic step (``real=True``); ``O(H N)`` memory per sequence."""
        if real:
            return torch.zeros(
                batch_size, self.H, 2 * self.N, dtype=self.D.dtype, device=self.D.device
            )
        dtype = torch.complex128 if self.kernel.kernel_dtype == torch.float64 else torch.complex64
        return torch.zeros(batch_size, self.H, self.N, dtype=dtype, device=self.D.device)

    def step(self, u: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r"""Recurrent mode, one time step: :math:`s_t = a s_{t-1} + b u_t`,
        :math:`y_t = \mathrm{Re}\sum_n c_n s_{t,n} + D u_t`, then activation and output linear.

        With a real state ``S = [Re s, Im s]`` ``(B, H, 2N)`` (from ``initial_state(B,
        real=True)``) the same recurrence runs in real arithmetic, in the layer's dtype:
        :math:`S_t = [\mathrm{Re}\,a, \mathrm{Re}\,a] \odot S_{t-1} + [-\mathrm{Im}\,a,
        \mathrm{Im}\,a] \odot [\mathrm{Im}\,s, \mathrm{Re}\,s] + [\mathrm{Re}\,b,
        \mathrm{Im}\,b]\, u_t` and :math:`y_t = \sum [\mathrm{Re}\,c, -\mathrm{Im}\,c]
        \odot S_t + D u_t` - elementwise products and sums only, no complex tensor (exportable,
        :mod:`s4dss.export`).

        Parameters
        ----------
        u : ``(B, H)`` input at time t.
        state : ``(B, H, N)`` complex or ``(B, H, 2N)`` real, from :meth:`initial_state` or the
            previous step.

        Returns
        -------
        y : ``(B, H)``, new state (same form as ``state``).
        """
        if self._step_params is None:
            raise RuntimeError("call setup_step() (or S4Model.setup_step()) before step()")
        self._check_input(u, 2, "u of shape (B, H)")
        real = not state.is_complex()
        n = 2 * self.N if real else self.N
        if state.shape != (u.shape[0], self.H, n):
            raise ValueError(
                f"state must have shape (B, H, {'2N' if real else 'N'}) = "
                f"{(u.shape[0], self.H, n)}, got {tuple(state.shape)}"
            )
        if real:
            y, state = self._step_real(u, state)  # (B H)
        else:
            a, b, c = self._step_params  # (H N)
            state = a * state + b * u[..., None].to(a.dtype)  # (B H N)
            y = (c * state).sum(-1).real.to(u.dtype) + self.D * u  # (B H)
        return self._mix(y), state  # (B H)

    def _step_real(self, u: torch.Tensor, S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The SSM part of the real step (:meth:`step`): ``(B, H)``, ``(B, H, 2N)`` real."""
        A_re, A_im, B, C = self._real_step_params  # (H 2N)
        swapped = torch.cat([S[..., self.N :], S[..., : self.N]], -1)  # (B H 2N) [Im s, Re s]
        S = A_re * S + A_im * swapped + B * u[..., None]  # (B H 2N)
        return (C * S).sum(-1) + self.D * u, S  # (B H)
