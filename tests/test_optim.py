import pytest
import torch

from seglit.optim import PolyLR, default_sgd, fused_supported


def _lrs(scheduler: PolyLR, steps: int) -> list[float]:
    values = []
    for _ in range(steps):
        values.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return values


def test_poly_lr_values_at_known_steps():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    lrs = _lrs(PolyLR(opt, total_iters=100, power=0.9), 101)
    assert lrs[0] == pytest.approx(0.01)
    assert lrs[50] == pytest.approx(0.01 * 0.5**0.9)
    assert lrs[90] == pytest.approx(0.01 * 0.1**0.9)
    assert lrs[100] == pytest.approx(0.0)


def test_poly_lr_warmup_then_decay_and_min_lr():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = PolyLR(opt, total_iters=10, power=1.0, warmup_iters=4, warmup_ratio=0.2, min_lr=0.1)
    lrs = _lrs(sched, 11)
    assert lrs[0] == pytest.approx(0.1 + 0.9 * 0.2)
    assert lrs[2] == pytest.approx(0.1 + 0.9 * 0.6)
    assert lrs[5] == pytest.approx(0.1 + 0.9 * 0.5)
    assert lrs[10] == pytest.approx(0.1)


def test_poly_lr_param_groups_keep_their_ratio():
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p1]}, {"params": [p2], "lr": 0.1}], lr=0.01)
    sched = PolyLR(opt, total_iters=10)
    for _ in range(3):
        opt.step()
        sched.step()
    lr1, lr2 = (g["lr"] for g in opt.param_groups)
    assert lr2 / lr1 == pytest.approx(10.0)


def test_default_sgd_writes_weight_decay_and_momentum():
    opt = default_sgd([torch.nn.Parameter(torch.zeros(1))])
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 1e-4


def test_default_sgd_is_fused_on_cpu_parameters_and_groups():
    p1, p2 = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    assert default_sgd([p1, p2]).defaults["fused"] is True
    assert default_sgd([{"params": [p1]}, {"params": [p2]}]).defaults["fused"] is True


def test_fused_supported_refuses_unsupported_devices_and_empty_params():
    assert not fused_supported([torch.nn.Parameter(torch.zeros(2, device="meta"))])
    assert not fused_supported([])
    assert fused_supported([{"params": [torch.nn.Parameter(torch.zeros(2))]}])
    on_meta = default_sgd([torch.nn.Parameter(torch.zeros(2, device="meta"))])
    assert on_meta.defaults["fused"] is None


def test_fused_default_sgd_matches_torch_default_sgd_update():
    torch.manual_seed(0)
    start = [torch.randn(5, 4), torch.randn(7)]
    grads = [[torch.randn_like(t) for t in start] for _ in range(3)]
    results = []
    for fused in (True, False):
        params = [torch.nn.Parameter(t.clone()) for t in start]
        opt = (
            default_sgd(params)
            if fused
            else torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
        )
        assert opt.defaults["fused"] is (True if fused else None)
        for step_grads in grads:
            for p, g in zip(params, step_grads):
                p.grad = g.clone()
            opt.step()
        results.append([p.detach() for p in params])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_poly_lr_rejects_bad_total_iters():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    with pytest.raises(ValueError, match="total_iters"):
        PolyLR(opt, total_iters=0)
