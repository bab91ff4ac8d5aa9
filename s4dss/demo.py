"""``python -m s4dss demo``: train a small S4/DSS model on a toy task, reduce it, report.

The task (built here, no data files): classify which of four frequencies a noisy, randomly
phased sine wave has. A 2-layer model with N = 32 states learns it in a few seconds on a CPU;
then every layer is reduced by balanced truncation to several orders r, and for each the demo
prints per-layer Hankel singular values, the a-priori bound, the measured kernel error, the
condition number of the re-diagonalisation, parameter counts, accuracy and the output change,
and checks the reduced model's step (recurrent) mode against its convolution mode.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

import sysred
from s4dss.model import S4Model, param_groups
from s4dss.reduce import kernel_errors, reduce

L = 128
FREQS = (3.0, 4.0, 5.0, 6.0)  # periods per sequence, one class each
NOISE = 1.0
L_LONG = 4096  # taps for the kernel error against the infinite-horizon bound


def toy_data(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``(n, L, 1)`` noisy sines, ``y`` ``(n,)`` the index of their frequency."""
    y = torch.randint(0, len(FREQS), (n,), generator=generator)  # (n)
    phase = 2 * math.pi * torch.rand(n, 1, generator=generator)  # (n 1)
    t = torch.arange(L) / L  # (L)
    f = torch.tensor(FREQS)[y][:, None]  # (n 1)
    x = torch.sin(2 * math.pi * f * t + phase) + NOISE * torch.randn(n, L, generator=generator)
    return x[..., None], y  # (n L 1), (n)


def accuracy(model: S4Model, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(-1) == y).float().mean().item()


def train(model: S4Model, x: torch.Tensor, y: torch.Tensor, steps: int, seed: int) -> float:
    """A few AdamW steps (SSM parameters in their own group); returns the last loss."""
    opt = torch.optim.AdamW(param_groups(model, lr=5e-3, weight_decay=0.01))
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return loss.item()


def _fmt(values) -> str:
    return " ".join(f"{v:.3g}" for v in values)


def plot_hsv(hsvs: list[np.ndarray], path: Path) -> None:
    """HSV decay per layer: one line per channel, normalised by its largest HSV."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(hsvs), figsize=(4 * len(hsvs), 3.2), squeeze=False)
    for i, (ax, hsv) in enumerate(zip(axes[0], hsvs, strict=True)):
        k = np.arange(1, hsv.shape[-1] + 1)
        for row in hsv:
            ax.semilogy(k, row / row[0], color="C0", alpha=0.3, lw=0.8)
        ax.set(title=f"layer {i}", xlabel="i", ylabel="sigma_i / sigma_1")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(
    seed: int = 0,
    out_dir: str | Path = "runs/demo",
    ranks=(16, 8, 4, 2),
    retrain_ranks=(8, 4),
    steps: int = 150,
    retrain_steps: int = 100,
) -> int:
    """Run the demo; returns 0 (the CLI exit code). Writes ``out_dir/hsv.png``.

    ``steps`` trains the N = 32 model. For ``r`` in ``retrain_ranks`` the paper's comparison
    (section 7 of reference.md) in miniature: the reduced model trained ``retrain_steps`` more
    steps, against a fresh Skew-HiPPO model with N = r trained as many steps.
    """
    start = time.perf_counter()
    threads = torch.get_num_threads()
    # Tiny tensors: one thread avoids the thread-pool overhead that dominates on shared cores.
    torch.set_num_threads(1)
    try:
        return _run(seed, Path(out_dir), ranks, retrain_ranks, steps, retrain_steps, start)
    finally:
        torch.set_num_threads(threads)


def _run(seed, out_dir: Path, ranks, retrain_ranks, steps, retrain_steps, start) -> int:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    x_train, y_train = toy_data(2048, g)
    x_test, y_test = toy_data(512, g)
    config = dict(d_output=len(FREQS), d_input=1, d_model=16, n_layers=2, d_state=32)
    model = S4Model(**config)
    loss = train(model, x_train, y_train, steps, seed)
    model.eval()
    acc = accuracy(model, x_test, y_test)
    print(f"trained S4/DSS model: H=16, N=32, 2 layers; final loss {loss:.3f}, test acc {acc:.3f}")
    with torch.no_grad():
        out = model(x_test)
    hsvs = None
    for r in ranks:
        print(f"\n=== balanced truncation to r = {r} ===")
        try:
            reduced = reduce(model, rank=r, L=L_LONG)
        except sysred.SysredError as err:
            print(f"  refused by sysred: {err}")
            continue
        rep = reduced.reduction_report
        hsvs = hsvs or [lr.hsv for lr in rep.layers]
        for lr, old, new in zip(rep.layers, model.layers, reduced.layers, strict=True):
            ratio = lr.kernel_error / lr.bound
            short = kernel_errors(old, new, L)
            print(f"  {lr.name}: HSVs (channel 0, first 6) {_fmt(lr.hsv[0, :6])}")
            print(
                f"    bound max {lr.bound.max():.3e} median {np.median(lr.bound):.3e} | "
                f"kernel error ({L_LONG} taps) max {lr.kernel_error.max():.3e} "
                f"(rel. {np.max(lr.kernel_error / lr.kernel_norm):.2e}), error/bound max "
                f"{ratio.max():.3f} | kernel error ({L} taps) max {short.max():.3e} | "
                f"cond(V) max {lr.cond.max():.3g}"
            )
        with torch.no_grad():
            out_r = reduced(x_test)
        change = (out_r - out).abs().max().item() / out.abs().max().item()
        acc_r = accuracy(reduced, x_test, y_test)
        print(
            f"  parameters {rep.params_before} -> {rep.params_after}; test acc {acc:.3f} -> "
            f"{acc_r:.3f}; max logit change {change:.2e} (relative to max |logit|)"
        )
        reduced.setup_step()
        state = reduced.initial_state(4)
        for t in range(L):
            step_out, state = reduced.step(x_test[:4, t], state)
        gap = (step_out - out_r[:4]).abs().max().item()
        size = sum(s[0].numel() for s in state.layers)
        print(f"  step mode: {size} complex states per sequence; |step - conv| = {gap:.1e}")
        if r in retrain_ranks:
            train(reduced, x_train, y_train, retrain_steps, seed + 1)
            torch.manual_seed(seed + 1)
            fresh = S4Model(**{**config, "d_state": r})
            train(fresh, x_train, y_train, retrain_steps, seed + 1)
            acc_bt = accuracy(reduced.eval(), x_test, y_test)
            acc_fresh = accuracy(fresh.eval(), x_test, y_test)
            print(
                f"  after {retrain_steps} more steps: BT-initialised {acc_bt:.3f} vs "
                f"Skew-HiPPO N={r} from scratch {acc_fresh:.3f} (the BT model also had the N=32 "
                "pretraining, as in the paper's pipeline)"
            )
    if hsvs is not None:
        path = out_dir / "hsv.png"
        plot_hsv(hsvs, path)
        print(f"\nHSV decay per layer: {path}")
    print(f"demo done in {time.perf_counter() - start:.1f} s")
    return 0
