"""Global state and parameter budgets: the allocation rule, exact budgets, clear refusals."""

import itertools
import warnings

import numpy as np
import pytest
import torch

import sysred
from s4dss import BudgetError, S4Model, reduce, to_system
from s4dss.budget import LayerOptions, allocate, layer_score

torch.set_num_threads(1)


def _options(name, scores, first=1, params_per_state=10, base=100):
    scores = np.asarray(scores, dtype=float)
    orders = np.arange(first, first + len(scores))
    return LayerOptions(name, orders, scores, base + params_per_state * orders)


def _greedy(layers, states):
    """The textbook rule: start at the smallest orders, give each next state to the layer whose
    score drops most (unit steps, no gaps)."""
    idx = [0] * len(layers)
    for _ in range(states - sum(int(o.orders[0]) for o in layers)):
        drops = [
            o.score[i] - o.score[i + 1] if i + 1 < len(o.orders) else -np.inf
            for o, i in zip(layers, idx, strict=True)
        ]
        idx[int(np.argmax(drops))] += 1
    return [int(o.orders[i]) for o, i in zip(layers, idx, strict=True)]


def _total(layers, orders):
    return sum(float(o.score[list(o.orders).index(r)]) for o, r in zip(layers, orders, strict=True))


def test_fast_decaying_layer_gets_few_states_slow_one_many():
    r = np.arange(1, 17)
    fast = _options("fast", 2.0 * 0.1**r)  # HSVs drop a decade per state
    slow = _options("slow", 2.0 / r)  # harmonic decay
    orders = allocate([fast, slow], states=16)
    # "fast" saves 0.18, 0.018, 0.0018 with its 2nd, 3rd, 4th state; "slow" saves 2/(r(r+1)):
    # 0.0128 for its 13th, 0.011 for its 14th. So the 3rd state of "fast" beats the 13th of
    # "slow", and the 14th of "slow" beats the 4th of "fast": [3, 13]
    assert orders == [3, 13] == _greedy([fast, slow], 16)


def test_dp_equals_the_greedy_rule_on_convex_scores():
    rng = np.random.default_rng(0)
    for _ in range(20):
        layers = []
        for k in range(rng.integers(2, 5)):
            hsv = np.sort(rng.random(12) ** rng.uniform(1, 8))[::-1]  # descending
            tail = 2 * np.cumsum(hsv[::-1])[::-1]  # tail[i] = bound at order i (convex)
            layers.append(_options(f"l{k}", np.append(tail[1:], 0.0) / tail[0]))
        K = int(rng.integers(len(layers), 12 * len(layers) + 1))
        dp = allocate(layers, states=K)
        assert sum(dp) == K
        assert _total(layers, dp) == pytest.approx(_total(layers, _greedy(layers, K)), abs=1e-12)


def test_dp_is_optimal_by_exhaustion_also_with_gaps_and_parameter_costs():
    rng = np.random.default_rng(1)
    for _ in range(15):
        layers = []
        for k in range(3):
            orders = np.sort(rng.choice(np.arange(1, 8), size=rng.integers(2, 6), replace=False))
            score = np.sort(rng.random(len(orders)))[::-1]  # non-increasing, not convex
            params = 50 + rng.integers(5, 30) * orders
            layers.append(LayerOptions(f"l{k}", orders, score, params))
        combos = list(itertools.product(*[o.orders for o in layers]))
        K = int(sum(rng.choice(o.orders) for o in layers))
        best = min(_total(layers, c) for c in combos if sum(c) == K)
        assert _total(layers, allocate(layers, states=K)) == pytest.approx(best, abs=1e-12)

        def cost(c, layers=layers):
            return sum(
                int(o.params[list(o.orders).index(r)]) for o, r in zip(layers, c, strict=True)
            )

        P = int(np.median([cost(c) for c in combos])) + 7
        chosen = allocate(layers, params=P, fixed=7)
        assert cost(chosen) + 7 <= P
        best = min(_total(layers, c) for c in combos if cost(c) + 7 <= P)
        assert _total(layers, chosen) == pytest.approx(best, abs=1e-12)


def test_infeasible_budgets_name_the_limits():
    a = LayerOptions("a", np.array([1, 2, 4]), np.array([3.0, 2.0, 0.5]), np.array([10, 20, 40]))
    b = LayerOptions("b", np.array([1]), np.array([1.0]), np.array([10]))
    with pytest.raises(BudgetError, match="minimum 2 .* maximum 5"):
        allocate([a, b], states=1)
    with pytest.raises(BudgetError, match="minimum 2 .* maximum 5"):
        allocate([a, b], states=6)
    with pytest.raises(BudgetError, match="sums to 4 states .* nearest reachable total below is 3"):
        allocate([a, b], states=4)
    with pytest.raises(BudgetError, match="parameter budget 24 is below the minimum 25"):
        allocate([a, b], params=24, fixed=5)
    assert allocate([a, b], params=25, fixed=5) == [1, 1]
    assert allocate([a, b], params=55, fixed=5) == [4, 1]


def test_layer_score_normalisations():
    bounds = np.array([[4.0, 2.0, 0.0], [2.0, 1.0, 0.0]])  # (H=2, n+1=3)
    gains = np.array([3.0, 4.0])
    np.testing.assert_allclose(layer_score(bounds, gains), np.sqrt([20.0, 5.0, 0.0]) / 5.0)
    np.testing.assert_allclose(layer_score(bounds, gains, "total"), [1.0, 0.5, 0.0])
    with pytest.raises(ValueError, match="normalise must be one of"):
        layer_score(bounds, gains, "max")


# ------------------------------------------------------------------ s4dss.reduce with budgets


def two_layer_model(seed=0, H=4, N=8):
    """Layer 0: W decays by a decade per mode (fast-decaying HSVs); layer 1: random W (slow)."""
    torch.manual_seed(seed)
    model = S4Model(d_input=2, d_output=3, d_model=H, n_layers=2, d_state=N).double().eval()
    with torch.no_grad():
        model.layers[0].kernel.W.mul_(0.1 ** torch.arange(N, dtype=torch.float64)[:, None])
    return model


def _independent_score(layer, L, r):
    """rho(r) from sysred's HSVs and certified H-inf norms (not the code under test's path)."""
    G = to_system(layer, L)
    hsv = sysred.hankel_singular_values(G)  # (H, N)
    bounds = np.stack([sysred.tail_bound(h, r) for h in hsv])  # (H,)
    skip = layer.D.detach().double().numpy()[:, None, None]
    gains = sysred.hinf_norm(sysred.DiagonalStateSpace(G.poles, G.B, G.C, G.D + skip, dt=1.0))
    return np.linalg.norm(bounds) / np.linalg.norm(gains)


def test_budget_gives_the_states_to_the_slow_layer_and_is_optimal():
    model = two_layer_model()
    L, K = 64, 8
    reduced = reduce(model, budget=K, L=L)
    orders = [layer.N for layer in reduced.layers]
    assert sum(orders) == K and orders[0] < orders[1]
    rep = reduced.reduction_report
    assert [r.order for r in rep.layers] == orders and rep.budget == K
    assert "allocation (state budget 8" in str(rep)
    # optimal among all splits, with the score recomputed independently
    total = {
        (a, K - a): _independent_score(model.layers[0], L, a)
        + _independent_score(model.layers[1], L, K - a)
        for a in range(1, K)
    }
    assert total[tuple(orders)] <= min(total.values()) * (1 + 1e-3)
    for r in rep.layers:  # the gains are grid estimates (sysred.peak_gain): within 2 %
        assert r.score == pytest.approx(
            _independent_score(model.layers[int(r.name[-1])], L, r.order), rel=2e-2
        )
    # and the reduced model rebuilds from its config
    clone = S4Model(**reduced.config).double()
    clone.load_state_dict(reduced.state_dict())


def test_identical_layers_share_the_budget_equally():
    model = two_layer_model(seed=1)
    model.layers[0].load_state_dict(model.layers[1].state_dict())
    reduced = reduce(model, budget=10, L=32)
    assert [layer.N for layer in reduced.layers] == [5, 5]


@pytest.mark.parametrize("poles", ["per-channel", "shared"])
def test_parameter_budget_is_respected_and_used(poles):
    model = two_layer_model(seed=2)
    full = sum(p.numel() for p in model.parameters())
    P = full - 60
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reduced = reduce(model, param_budget=P, L=32, poles=poles)
    n_params = sum(p.numel() for p in reduced.parameters())
    assert n_params <= P and reduced.reduction_report.params_after == n_params
    # the budget is used: one more state in any layer would exceed it
    per_state = (2 if poles == "shared" else 2 * 4) + 2 * 4
    assert n_params + per_state > P
    assert reduced.reduction_report.param_budget == P


def test_budget_refusals_are_clear():
    model = two_layer_model(seed=3)
    with pytest.raises(BudgetError, match="state budget 1 .* minimum 2"):
        reduce(model, budget=1, L=16)
    with pytest.raises(BudgetError, match="maximum 16"):
        reduce(model, budget=17, L=16)
    outside = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("layers."))
    layer_min = sum(p.numel() for n, p in model.layers[0].named_parameters()) - 8 * 4 * 2 - 8 * 2
    minimum = outside + 2 * (layer_min + 4 * 4 * 1)  # r = 1, per-channel: 2H + 2H SSM reals
    with pytest.raises(BudgetError, match=f"below the minimum {minimum}"):
        reduce(model, param_budget=minimum - 1, L=16)
    with pytest.raises(ValueError, match="exactly one of rank"):
        reduce(model, rank=2, budget=4)
    with pytest.raises(ValueError, match="budget must be a positive integer"):
        reduce(model, budget=2.5)
    with pytest.raises(ValueError, match="budgets need a-priori error bounds"):
        reduce(model, budget=4, horizon=16)


def test_budget_with_modal_and_spa():
    model = two_layer_model(seed=4)
    for method in ("modal", "spa"):
        reduced = reduce(model, budget=9, method=method, L=32)
        assert sum(layer.N for layer in reduced.layers) == 9


def test_total_normalisation_ignores_the_gain():
    # two random (slowly decaying) layers; layer 1's kernel is scaled down 1e3 next to its
    # skip: relative to its gain it hardly matters, so "gain" gives it the fewest states
    # possible; "total" (LAST-style, each layer relative to its own total) does not see that
    torch.manual_seed(5)
    model = S4Model(d_input=2, d_output=3, d_model=4, n_layers=2, d_state=8).double().eval()
    with torch.no_grad():
        model.layers[1].kernel.W.mul_(1e-3)
        model.layers[1].D.fill_(5.0)
    by_gain = reduce(model, budget=8, L=32)
    by_total = reduce(model, budget=8, L=32, normalise="total")
    assert [layer.N for layer in by_gain.layers] == [7, 1]
    assert by_total.layers[1].N > 1
