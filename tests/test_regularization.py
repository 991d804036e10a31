"""oEWC, SI and LwF (methods/regularization.py), CLS-ER (methods/clser.py), FDR (methods/fdr.py)
and SCR (methods/scr.py): each mechanism on a tiny model against a hand computation, and each run
alone by `replay run strategy=<m>`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import run_cli
from torch import nn

from replaycli.data.dataset import StreamDataset
from replaycli.data.pool import Pool
from replaycli.methods.base import Batch
from replaycli.methods.regularization import SI, LwF, OnlineEWC


def tiny(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 3))


def data(n: int = 7, seed: int = 1) -> StreamDataset:
    g = torch.Generator().manual_seed(seed)
    pool = Pool(torch.randn(n, 3, generator=g), torch.randint(0, 3, (n,), generator=g))
    return StreamDataset(pool, torch.arange(n), torch.zeros(n, dtype=torch.int64))


def test_ewc_fisher_is_the_mean_of_p_times_the_squared_log_likelihood_gradient_and_folds_with_gamma():
    model = tiny()
    ewc = OnlineEWC(model, torch.optim.SGD(model.parameters(), 0.1), e_lambda=2.0, gamma=0.5, fisher_mb_size=3)
    d = data()
    hand = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for i in range(len(d)):  # one sample at a time, as the reference code
        x, y = d.pool.x[i : i + 1], d.pool.y[i : i + 1]
        model.zero_grad()
        ll = -F.cross_entropy(model(x), y)
        ll.backward()
        for n, p in model.named_parameters():
            hand[n] += ll.exp().detach() * p.grad.pow(2)
    fisher = ewc.fisher_of(d)
    for n in hand:
        assert torch.allclose(fisher[n], hand[n] / len(d), atol=1e-6), n
    ewc.begin_experience(0, d)
    ewc.end_experience(0, None)
    first = {n: v.clone() for n, v in ewc.fisher.items()}
    with torch.no_grad():
        model[0].weight.add_(0.3)  # moved away from the anchor
    ewc.begin_experience(1, d)
    ewc.end_experience(1, None)
    second = ewc.fisher_of(d)
    for n in first:
        assert torch.allclose(ewc.fisher[n], 0.5 * first[n] + second[n], atol=1e-6)  # F* <- gamma F* + F
    with torch.no_grad():
        model[2].bias.add_(0.1)
    batch = Batch(d.pool.x[:4], d.pool.y[:4], torch.zeros(4, dtype=torch.int64), 2)
    loss, out = ewc.step(batch, None)
    penalty = sum((ewc.fisher[n] * (p - ewc.anchor[n]).pow(2)).sum() for n, p in model.named_parameters())
    assert loss.item() == pytest.approx((F.cross_entropy(out, batch.y) + 2.0 * penalty).item(), rel=1e-6)


def test_si_omega_is_the_path_integral_which_is_lr_g_squared_under_plain_sgd():
    model = tiny()
    lr = 0.05
    opt = torch.optim.SGD(model.parameters(), lr)
    si = SI(model, opt, c=3.0, xi=0.1)
    d = data(12)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    hand = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for s in range(0, 12, 4):
        batch = Batch(d.pool.x[s : s + 4], d.pool.y[s : s + 4], torch.zeros(4, dtype=torch.int64), 0)
        loss, _ = si.step(batch, None)
        opt.zero_grad()
        loss.backward()
        for n, p in model.named_parameters():
            hand[n] += lr * p.grad.pow(2)  # Mammoth's form: -g * (-lr g)
        opt.step()
    omega = {}
    si.fold()  # what end_experience folds first
    for n in hand:
        assert torch.allclose(si.omega[n], hand[n], atol=1e-7), n
        omega[n] = si.omega[n].clone()
    si.before = {}
    si.end_experience(0, None)
    for n, p in model.named_parameters():
        expected = omega[n] / ((p.detach() - start[n]).pow(2) + 0.1)
        assert torch.allclose(si.big_omega[n], expected, atol=1e-6)
        assert torch.equal(si.anchor[n], p.detach())
    with torch.no_grad():
        model[0].bias.add_(0.2)
    batch = Batch(d.pool.x[:4], d.pool.y[:4], torch.zeros(4, dtype=torch.int64), 1)
    loss, out = si.step(batch, None)
    penalty = sum((si.big_omega[n] * (p - si.anchor[n]).pow(2)).sum() for n, p in model.named_parameters())
    assert loss.item() == pytest.approx((F.cross_entropy(out, batch.y) + 3.0 * penalty).item(), rel=1e-6)


def test_lwf_adds_t_squared_kl_of_the_old_models_softened_outputs_on_the_old_classes():
    model = tiny()
    lwf = LwF(model, torch.optim.SGD(model.parameters(), 0.1), alpha=0.7, temperature=2.0)
    d = data()
    first = Batch(d.pool.x[:4], torch.tensor([0, 1, 0, 1]), torch.zeros(4, dtype=torch.int64), 0)
    loss, out = lwf.step(first, None)
    assert loss.item() == pytest.approx(F.cross_entropy(out, first.y).item())  # nothing to distil yet
    lwf.end_experience(0, None)
    old = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        model[2].weight.mul_(1.5)
    batch = Batch(d.pool.x[3:7], torch.tensor([2, 2, 2, 2]), torch.zeros(4, dtype=torch.int64), 1)
    loss, out = lwf.step(batch, None)
    frozen = tiny()
    with torch.no_grad():
        for p, v in zip(frozen.parameters(), old, strict=True):
            p.copy_(v)
    q = F.softmax(frozen(batch.x)[:, :2] / 2.0, 1)  # the old classes 0 and 1
    log_p = F.log_softmax(out[:, :2] / 2.0, 1)
    kl = (q * (q.log() - log_p)).sum(1).mean()
    assert loss.item() == pytest.approx((F.cross_entropy(out, batch.y) + 0.7 * 4.0 * kl).item(), rel=1e-5)
    assert not any(p.requires_grad for p in lwf.old_model.parameters())


@pytest.mark.parametrize("strategy", ["ewc_on", "si", "lwf", "clser", "fdr", "scr"])
def test_each_runs_alone_and_resumes_to_the_same_tables(strategy, tmp_path):
    from conftest import stopping_at

    args = ["epochs=1", "progress=none", "device=cpu", f"strategy={strategy}"]
    assert run_cli("run", *args, f"hydra.run.dir={tmp_path / 'whole'}").returncode == 0
    if strategy not in ("clser", "fdr", "scr"):
        assert "max_size: 0" in (tmp_path / "whole" / "config.yaml").read_text()  # buffer=none, brought by its YAML
    with stopping_at(2):
        assert run_cli("run", *args, f"hydra.run.dir={tmp_path / 'cut'}").returncode == 130
    assert run_cli("resume", str(tmp_path / "cut")).returncode == 0
    assert (tmp_path / "whole" / "accuracy.csv").read_bytes() == (tmp_path / "cut" / "accuracy.csv").read_bytes()


# --- CLS-ER (methods/clser.py) ----------------------------------------------------------------
def test_clser_loss_is_ce_on_the_joined_batch_plus_mse_to_the_more_confident_semantic_memory():
    from replaycli.memory.buffer import Buffer
    from replaycli.methods.base import Memory
    from replaycli.methods.clser import CLSER

    model = tiny()
    cls = CLSER(model, torch.optim.SGD(model.parameters(), 0.1), reg_weight=0.3)
    d = data(12)
    buffer = Buffer(12)
    buffer.add(d, 0)
    cls.semantic()  # the semantic memories are born as copies of the model
    with torch.no_grad():  # make them differ: the stable one scaled up, the plastic one shifted
        cls.stable[2].weight.mul_(2.0)
        cls.plastic[2].bias.add_(torch.tensor([0.5, -0.5, 0.0]))
    g = torch.Generator().manual_seed(5)
    memory = Memory(buffer, 4, g)
    batch = Batch(d.pool.x[:3], d.pool.y[:3], torch.zeros(3, dtype=torch.int64), 0)
    twin = torch.Generator().manual_seed(5)
    mx, my, _, _ = buffer.sample(4, twin)  # the draw the step makes
    loss, out = cls.step(batch, memory)
    joined = model(torch.cat([batch.x, mx]))
    s, p = cls.stable(mx), cls.plastic(mx)
    rows = torch.arange(4)
    pick = F.softmax(s, 1)[rows, my] > F.softmax(p, 1)[rows, my]
    target = torch.where(pick.unsqueeze(1), s, p)
    expected = F.cross_entropy(joined, torch.cat([batch.y, my])) + 0.3 * F.mse_loss(joined[3:], target)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.allclose(out, joined[:3])
    assert torch.equal(cls.predict(batch.x), cls.stable(batch.x))  # the stable model answers


def test_clser_semantic_memories_average_after_each_descent_with_their_probability():
    from replaycli.methods.clser import CLSER

    model = tiny()
    opt = torch.optim.SGD(model.parameters(), 0.5)
    cls = CLSER(model, opt, plastic_update_freq=1.0, plastic_alpha=0.6, stable_update_freq=0.0, stable_alpha=0.6)
    d = data(12)
    start = [p.detach().clone() for p in model.parameters()]
    plastic = [p.clone() for p in start]
    for k in range(3):
        batch = Batch(d.pool.x[4 * k : 4 * k + 4], d.pool.y[4 * k : 4 * k + 4], torch.zeros(4, dtype=torch.int64), 0)
        loss, _ = cls.step(batch, None)  # takes the previous descent first
        opt.zero_grad()
        loss.backward()
        opt.step()
        a = min(1 - 1 / (k + 2), 0.6)  # the k+1-th descent: 0.5, then 0.6 (capped)
        plastic = [a * e + (1 - a) * p.detach() for e, p in zip(plastic, model.parameters(), strict=True)]
    cls.end_experience(0, None)  # the last descent
    assert cls.descents == 3
    for e, want in zip(cls.plastic.parameters(), plastic, strict=True):
        assert torch.allclose(e, want, atol=1e-6)
    for e, first in zip(cls.stable.parameters(), start, strict=True):  # probability 0: never moved
        assert torch.equal(e, first)


# --- FDR (methods/fdr.py) ---------------------------------------------------------------------
def test_fdr_descends_on_the_batch_then_returns_the_function_distance_on_a_memory_batch():
    from replaycli.memory.buffer import Buffer
    from replaycli.methods.base import Memory
    from replaycli.methods.fdr import FDR

    model = tiny()
    lr = 0.2
    fdr = FDR(model, torch.optim.SGD(model.parameters(), lr))
    d = data(12)
    stored = torch.randn(12, 3, generator=torch.Generator().manual_seed(3))
    buffer = Buffer(12)
    buffer.add(d, 0, {"logits": stored})
    batch = Batch(d.pool.x[:4], d.pool.y[:4], torch.zeros(4, dtype=torch.int64), 1)
    twin = tiny()  # the same weights: the first descent by hand
    ce = F.cross_entropy(twin(batch.x), batch.y)
    grads = torch.autograd.grad(ce, list(twin.parameters()))
    with torch.no_grad():
        for p, g in zip(twin.parameters(), grads, strict=True):
            p.sub_(lr * g)
    draw = torch.Generator().manual_seed(9)
    mx, _, _, extras = buffer.sample(5, torch.Generator().manual_seed(9))
    loss, out = fdr.step(batch, Memory(buffer, 5, draw))
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):  # the CE descent was taken
        assert torch.allclose(p, q, atol=1e-6)
    hand = (F.softmax(twin(mx), 1) - F.softmax(extras["logits"], 1)).norm(dim=1).mean()
    assert loss.item() == pytest.approx(hand.item(), rel=1e-6)
    assert not out.requires_grad
    first, _ = FDR(tiny(), torch.optim.SGD(tiny().parameters(), lr)).step(batch, None)  # no memory: CE only
    assert first.item() == pytest.approx(F.cross_entropy(tiny()(batch.x), batch.y).item(), rel=1e-6)


# --- SCR (methods/scr.py) ---------------------------------------------------------------------
class Images(nn.Module):
    """A tiny image model with replaycli's layout: a `features` body and a linear `classifier`."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(16, 6), nn.ReLU())
        self.classifier = nn.Linear(6, 3)

    def forward(self, x):
        return self.classifier(self.features(x))


def test_scr_loss_is_supcon_of_the_samples_and_their_views_and_it_predicts_by_the_nearest_class_mean():
    from replaycli.memory.buffer import Buffer
    from replaycli.methods.base import Memory
    from replaycli.methods.scr import SCR

    model = Images()
    opt = torch.optim.SGD(model.parameters(), 0.1)
    scr = SCR(model, opt, temperature=0.5, head_size=4, padding=1)
    assert len(opt.param_groups) == 2 and opt.param_groups[1]["params"][0] is scr.head[0].weight  # the head trains
    g = torch.Generator().manual_seed(2)
    pool = Pool(torch.randn(10, 1, 4, 4, generator=g), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0]))
    d = StreamDataset(pool, torch.arange(10), torch.zeros(10, dtype=torch.int64))
    buffer = Buffer(10)
    buffer.add(d, 0)
    batch = Batch(pool.x[:3], pool.y[:3], torch.zeros(3, dtype=torch.int64), 1)
    twin = torch.Generator().manual_seed(4)
    mx, my, _, _ = buffer.sample(2, twin)
    views = scr.augment(torch.cat([batch.x, mx]), twin)  # the draws the step makes, in its order
    loss, out = scr.step(batch, Memory(buffer, 2, torch.Generator().manual_seed(4)))
    x, y = torch.cat([batch.x, mx]), torch.cat([batch.y, my])
    z = F.normalize(scr.head(model.features(torch.cat([x, views]))), dim=1)
    n = len(x)
    anchors = torch.cat([z[:n], z[n:]])  # every view an anchor; positives: the other views of its label
    labels = torch.cat([y, y])
    sim = anchors @ anchors.T / 0.5
    hand = 0.0
    for i in range(2 * n):
        others = [j for j in range(2 * n) if j != i]
        log_den = torch.logsumexp(sim[i, others], 0)
        pos = [j for j in others if labels[j] == labels[i]]
        hand += -sum(sim[i, j] - log_den for j in pos) / len(pos)
    assert loss.item() == pytest.approx(hand.item() / (2 * n), rel=1e-5)
    assert out.shape == (3, 3) and not out.requires_grad
    scr.end_experience(1, Memory(buffer, 2))
    feats = F.normalize(model.features(pool.x), dim=1)
    means = torch.stack([F.normalize(feats[pool.y == c].mean(0), dim=0) for c in range(3)])
    want = -torch.cdist(F.normalize(model.features(batch.x), dim=1), means).pow(2)
    assert torch.allclose(scr.predict(batch.x), want, atol=1e-5)
