"""S4Model: step mode == convolution mode, pooling with lengths, save/load, training."""

import pytest
import torch

from s4dss import S4Model, param_groups

torch.set_num_threads(1)


def run_steps(model: S4Model, x: torch.Tensor, L: int) -> torch.Tensor:
    """Feed ``x`` token by token; returns the stacked step outputs ``(B, L, d_output)``."""
    model.setup_step(L)
    state, outs = model.initial_state(x.shape[0]), []
    for t in range(L):
        out, state = model.step(x[:, t], state)
        outs.append(out)
    return torch.stack(outs, 1)


@pytest.mark.parametrize("mode", ["exp", "softmax"])
@pytest.mark.parametrize("prenorm", [False, True])
@pytest.mark.parametrize("pool", ["mean", "last", "none"])
def test_model_step_matches_convolution(mode, prenorm, pool):
    torch.manual_seed(0)
    model = S4Model(
        d_output=3, d_input=2, d_model=6, n_layers=2, d_state=[5, 3], mode=mode,
        prenorm=prenorm, pool=pool, dropout=0.1,
    ).eval()  # fmt: skip
    L = 30
    x = torch.randn(2, L, 2)
    steps = run_steps(model, x, L)
    if pool == "none":
        assert (steps - model(x)).abs().max() < 1e-5
    else:  # every step output is the model's output on the prefix seen so far (for softmax only
        # at t = L-1: its kernel is normalised over the whole length L, a prefix has another one)
        for t in (0, 7, L - 1) if mode == "exp" else (L - 1,):
            assert (steps[:, t] - model(x[:, : t + 1])).abs().max() < 1e-5, t


def test_embedding_model_step_and_lengths():
    torch.manual_seed(1)
    model = S4Model(d_output=4, vocab_size=7, d_model=5, n_layers=2, d_state=4).eval()
    x = torch.randint(0, 7, (3, 12))
    assert (run_steps(model, x, 12)[:, -1] - model(x)).abs().max() < 1e-5
    # Padding after a valid prefix must not change the pooled output (causal layers).
    lengths = torch.tensor([12, 5, 9])
    out = model(x, lengths=lengths)
    for b, n in enumerate(lengths.tolist()):
        assert (out[b] - model(x[b : b + 1, :n])[0]).abs().max() < 1e-5
    last = S4Model(d_output=4, vocab_size=7, d_model=5, n_layers=1, d_state=4, pool="last").eval()
    out = last(x, lengths=lengths)
    assert (out[1] - last(x[1:2, :5])[0]).abs().max() < 1e-5


def test_config_rebuilds_and_state_dict_round_trip():
    torch.manual_seed(2)
    model = S4Model(d_output=2, d_input=3, d_model=4, n_layers=2, d_state=[3, 2],
                    lambda_per_channel=True, mode="softmax").eval()  # fmt: skip
    clone = S4Model(**model.config).eval()
    clone.load_state_dict(model.state_dict())
    x = torch.randn(2, 10, 3)
    assert torch.equal(clone(x), model(x))


def test_model_trains_on_toy_task():
    # Classify whether the sum of a noisy sequence is positive: loss must go down.
    torch.manual_seed(3)
    model = S4Model(d_output=2, d_input=1, d_model=8, n_layers=1, d_state=4)
    x = torch.randn(32, 20, 1)
    y = (x.sum((1, 2)) > 0).long()
    opt = torch.optim.AdamW(param_groups(model, lr=1e-2, weight_decay=0.0))
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_model_bad_input():
    with pytest.raises(ValueError, match="exactly one of d_input"):
        S4Model(d_output=2, d_input=3, vocab_size=4)
    with pytest.raises(ValueError, match="exactly one of d_input"):
        S4Model(d_output=2)
    with pytest.raises(ValueError, match="pool"):
        S4Model(d_output=2, d_input=1, pool="max")
    with pytest.raises(ValueError, match="d_state has 1 entries for 2 layers"):
        S4Model(d_output=2, d_input=1, n_layers=2, d_state=[3])
    model = S4Model(d_output=2, d_input=1, d_model=4, n_layers=1, d_state=2)
    with pytest.raises(ValueError, match="lengths"):
        model(torch.randn(2, 5, 1), lengths=torch.tensor([0, 5]))
