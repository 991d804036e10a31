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
        Batch(x, y, torch.zeros(6, dtype=torch.long), 1), FixedMemory(mx, my))
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

    run = build_run(["strategy=joint", "buffer=reservoir", "buffer.max_size=100000", "epochs=1", "device=cpu",
                     "progress=none"])
    seen = 0
    for exp in run.bench.train_stream[:3]:
        train_experience(run, exp, lambda *a: None)
        seen += len(exp.dataset)
        assert len(run.buffer) == seen  # every sample kept
        assert sorted(run.buffer.buffer.ids.tolist()) == sorted(
            torch.cat([e.dataset.ids for e in run.bench.train_stream[:exp.current_experience + 1]]).tolist())
