"""The baselines' mechanisms on tiny tensors, against computations by hand (issue 13, in part:
ER-ACE, A-GEM, Joint)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import build_run

from replaycli.methods.agem import AGEM, project
from replaycli.methods.base import Batch
from replaycli.methods.erace import ERACE


class FixedMemory:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def sample(self):
        return self.x, self.y, torch.zeros(len(self.y), dtype=torch.long), {}


def test_agem_projection_is_orthogonal_when_it_conflicts_and_unchanged_when_not():
    ref = torch.tensor([1.0, 0.0, 2.0])
    agree = torch.tensor([1.0, 5.0, 0.5])
    assert torch.equal(project(agree, ref), agree)
    conflict = torch.tensor([-3.0, 1.0, 0.5])  # . ref = -2
    p = project(conflict, ref)
    assert torch.dot(p, ref).abs() < 1e-6
    assert torch.allclose(p, conflict - (-2.0 / 5.0) * ref)  # by hand: g - (g.ref / ref.ref) ref


def test_agem_step_applies_the_projected_gradient_of_the_current_batch():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    x, y = torch.randn(6, 4), torch.tensor([2, 2, 2, 2, 2, 2])
    mx, my = torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 0])
    twin = torch.nn.Linear(4, 3)
    twin.load_state_dict(model.state_dict())

    def flat_grad(loss):
        twin.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in twin.parameters()])

    g = flat_grad(F.cross_entropy(twin(x), y))  # by hand, on a copy
    ref = flat_grad(F.cross_entropy(twin(mx), my))
    assert torch.dot(g, ref) < 0  # the constructed case conflicts
    expected = g - torch.dot(g, ref) / torch.dot(ref, ref) * ref

    loss, out = AGEM(model, torch.optim.SGD(model.parameters(), lr=0.1)).step(
        Batch(x, y, torch.zeros(6, dtype=torch.long), 1), FixedMemory(mx, my)
    )
    assert loss.item() == pytest.approx(F.cross_entropy(out, y).item())  # the value: the current loss
    loss.backward()
    got = torch.cat([p.grad.flatten() for p in model.parameters()])
    assert torch.allclose(got, expected, atol=1e-6) and torch.dot(got, ref).abs() < 1e-5


def test_er_ace_current_loss_ignores_absent_classes_and_memory_counts_seen_ones():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 5)
    method = ERACE(model, torch.optim.SGD(model.parameters(), lr=0.1))
    x0, y0 = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    method.step(Batch(x0, y0, torch.zeros(4, dtype=torch.long), 0), None)  # classes 0, 1 seen
    x, y = torch.randn(4, 3), torch.tensor([2, 3, 3, 2])
    mx, my = torch.randn(3, 3), torch.tensor([0, 1, 1])
    loss, out = method.step(Batch(x, y, torch.zeros(4, dtype=torch.long), 1), FixedMemory(mx, my))
    with torch.no_grad():
        cur = F.cross_entropy(out[:, [2, 3]], y - 2)  # by hand: only the classes present, 2 and 3
        mem = F.cross_entropy(model(mx)[:, [0, 1, 2, 3]], my)  # by hand: the classes seen, 0-3 (4 never)
    assert loss.item() == pytest.approx((cur + mem).item(), rel=1e-6)
    loss.backward()
    assert model.weight.grad[4].abs().max() == 0  # class 4 (never seen, never present): untouched
    assert method.seen.tolist() == [True, True, True, True, False]


def test_joint_trains_on_every_sample_seen_so_far(tmp_path):
    from replaycli.run.loop import train_experience

    run = build_run(
        ["strategy=joint", "buffer=reservoir", "buffer.max_size=100000", "epochs=1", "device=cpu", "progress=none"]
    )
    seen = 0
    for exp in run.bench.train_stream[:3]:
        train_experience(run, exp, lambda *a: None)
        seen += len(exp.dataset)
        assert len(run.buffer) == seen  # every sample kept
        assert sorted(run.buffer.buffer.ids.tolist()) == sorted(
            torch.cat([e.dataset.ids for e in run.bench.train_stream[: exp.current_experience + 1]]).tolist()
        )


def test_gem_solution_satisfies_every_constraint_and_is_the_closest_such_gradient():
    pytest.importorskip("quadprog")
    from scipy.optimize import minimize

    from replaycli.methods.gem import project_to_cone

    g = torch.tensor([1.0, -2.0, 0.5, 1.0])
    past = torch.tensor([[0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, -1.0], [-1.0, 0.0, 2.0, 0.0]])
    assert (past @ g < 0).sum() == 2  # two of the three constraints are violated
    z = project_to_cone(g, past, margin=0.0, eps=1e-9)
    assert (past @ z >= -1e-6).all()  # every past experience's loss does not increase (first order)
    g64, past64 = g.double().numpy(), past.double().numpy()
    primal = minimize(
        lambda v: 0.5 * ((v - g64) ** 2).sum(),
        g64,
        method="SLSQP",
        constraints=[{"type": "ineq", "fun": lambda v, r=r: r @ v} for r in past64],
    )
    assert torch.allclose(z, torch.from_numpy(primal.x).float(), atol=1e-4)  # the QP's answer, by another solver
    margin = project_to_cone(g, past, margin=0.5, eps=1e-9)  # the reference's eps (1e-3) relaxes each by ~eps * v
    assert (past @ margin >= -1e-6).all()
    assert torch.equal(
        project_to_cone(torch.tensor([0.0, 1.0, 1.0, 0.0]), past[:1], 0.0, 1e-9).round(decimals=5),
        torch.tensor([0.0, 1.0, 1.0, 0.0]),
    )  # no conflict: unchanged (v = 0)


def test_gem_step_takes_the_projection_only_on_a_conflict(tmp_path):
    pytest.importorskip("quadprog")
    run = build_run(
        [
            "strategy=gem",
            "buffer=experience_balanced",
            "optimizer=sgd",
            "optimizer.momentum=0.0",
            "epochs=1",
            "device=cpu",
        ]
    )
    from replaycli.methods.base import Memory
    from replaycli.run.loop import train_experience, update_memory

    first = run.bench.train_stream[0]
    train_experience(run, first, lambda *a: None)
    update_memory(run, first)
    x, y, t = run.bench.train_stream[1].dataset.train().batch(torch.arange(32))
    memory = Memory(run.buffer, 32)
    loss, _out = run.method.step(Batch(x, y, t, 1), memory)
    run.model.zero_grad()
    loss.backward()
    got = torch.cat([p.grad.flatten() for p in run.model.parameters()])
    data = run.buffer.groups()[0][0].train()
    px, py, pt = data.batch(torch.arange(len(data)))
    past = run.method.flat_grad(run.method.ce(run.model(px), py, pt))
    raw = run.method.flat_grad(run.method.ce(run.model(x), y, t))
    assert torch.dot(raw, past) < 0  # the plain gradient would increase experience 0's loss
    # the step's does not (up to the reference code's eps = 1e-3 on the QP's diagonal)
    assert torch.dot(got, past) >= -1e-3 * raw.norm() * past.norm()
    assert torch.dot(got, past) > torch.dot(raw, past)


def test_mir_retrieves_the_candidates_whose_loss_a_virtual_step_raises_most():
    import copy

    from replaycli.methods.mir import MIR

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(6, 4), torch.full((6,), 2)
    cx, cy = torch.randn(12, 4), torch.randint(0, 3, (12,))
    zeros = lambda n: torch.zeros(n, dtype=torch.long)  # noqa: E731
    # by brute force, on a copy: the loss of each candidate before and after one SGD step on the batch
    twin = copy.deepcopy(model)
    before = [F.cross_entropy(twin(cx[i : i + 1]), cy[i : i + 1]).item() for i in range(12)]
    twin.zero_grad()
    F.cross_entropy(twin(x), y).backward()
    with torch.no_grad():
        for p in twin.parameters():
            p -= 0.5 * p.grad
    after = [F.cross_entropy(twin(cx[i : i + 1]), cy[i : i + 1]).item() for i in range(12)]
    increase = torch.tensor(after) - torch.tensor(before)
    method = MIR(model, opt, n_candidates=12)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    got = method.interference(Batch(x, y, zeros(6), 1), cx, cy, zeros(12))
    assert torch.allclose(got, increase, atol=1e-5)
    assert set(got.topk(4).indices.tolist()) == set(increase.topk(4).indices.tolist())
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())  # the step was only virtual

    class Buffer:  # the candidates, as the live buffer would hand them
        def sample(self, n, generator):
            return cx, cy, zeros(12), {}

    class Mem:
        buffer, batch_size, generator = Buffer(), 4, None

    loss, out = method.step(Batch(x, y, zeros(6), 1), Mem())
    chosen = increase.topk(4).indices
    joined_x, joined_y = torch.cat([x, cx[chosen]]), torch.cat([y, cy[chosen]])
    assert loss.item() == pytest.approx(F.cross_entropy(model(joined_x), joined_y).item(), rel=1e-6)
    assert out.shape == (6, 3)
