"""CRD against mdistiller's code.

Reference: megvii-research/mdistiller, mdistiller/distillers/CRD.py (`Embed`, `ContrastMemory.forward`
with given contrast indices, `ContrastLoss`, `crd_loss`; CE weight 1, feat weight 0.8, momentum 0.5,
T 0.07; the same as HobbitLong/RepDistiller crd/memory.py and crd/criterion.py), re-implemented
below in float64 on the strategy's own heads and banks. The contrast indices are the strategy's
draw (own index first, then uniform), reproduced from the same seed.
"""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from harness import strategies
from harness.runtime import distributed

B, N_DATA, K, D_S, D_T, DIM = 4, 20, 7, 10, 12, 8


def embed(x, linear):
    x = F.linear(x, linear.weight.double(), linear.bias.double())
    return x.div(x.pow(2).sum(1, keepdim=True).pow(0.5))


def contrast_loss(x, num_data):
    eps = 1e-7
    bsz, m = x.shape[0], x.size(1) - 1
    pn = 1 / float(num_data)
    p_pos = x.select(1, 0)
    log_d1 = torch.div(p_pos, p_pos.add(m * pn + eps)).log_()
    p_neg = x.narrow(1, 1, m)
    log_d0 = torch.div(p_neg.clone().fill_(m * pn), p_neg.add(m * pn + eps)).log_()
    return (-(log_d1.sum(0) + log_d0.view(-1, 1).sum(0)) / bsz)[0]


def contrast_memory(v1, v2, y, idx, memory_v1, memory_v2, z, temperature, momentum):
    """ContrastMemory.forward with idx given; returns (out_v1, out_v2, z) and updates the banks."""
    batch, size = v1.size(0), memory_v1.size(1)
    w1 = torch.index_select(memory_v1, 0, idx.view(-1)).detach().view(batch, K + 1, size)
    out_v2 = torch.exp(torch.div(torch.bmm(w1, v2.view(batch, size, 1)), temperature))
    w2 = torch.index_select(memory_v2, 0, idx.view(-1)).detach().view(batch, K + 1, size)
    out_v1 = torch.exp(torch.div(torch.bmm(w2, v1.view(batch, size, 1)), temperature))
    if z[0] < 0:
        z = [out_v1.mean().item() * memory_v1.size(0), out_v2.mean().item() * memory_v1.size(0)]
    out_v1, out_v2 = torch.div(out_v1, z[0]).contiguous(), torch.div(out_v2, z[1]).contiguous()
    with torch.no_grad():
        for memory, v in ((memory_v1, v1), (memory_v2, v2)):
            pos = torch.index_select(memory, 0, y.view(-1)).mul_(momentum).add_(torch.mul(v, 1 - momentum))
            memory.index_copy_(0, y, pos.div(pos.pow(2).sum(1, keepdim=True).pow(0.5)))
    return out_v1, out_v2, z


def test_two_steps_match_mdistiller():
    torch.manual_seed(0)
    crd = strategies.build("crd", feat_dim=DIM, negatives=K)
    crd.setup(
        strategies.SetupInfo(
            num_classes=5,
            train_size=N_DATA,
            student_shapes={"pre_logits": (D_S,)},
            teacher_shapes={"pre_logits": (D_T,)},
        )
    )
    memory_v1, memory_v2 = crd.memory_s.double().clone(), crd.memory_t.double().clone()
    z_ref = [-1.0, -1.0]
    g = torch.Generator().manual_seed(11)
    for step_no in range(2):
        z = torch.randn(B, 5, generator=g, dtype=torch.float64) * 3
        y = torch.randint(0, 5, (B,), generator=g)
        f_s = torch.randn(B, D_S, generator=g, dtype=torch.float64)
        f_t = torch.relu(torch.randn(B, D_T, generator=g, dtype=torch.float64))
        index = torch.randperm(N_DATA, generator=g)[:B]

        fs_ref, z_leaf = f_s.clone().requires_grad_(), z.clone().requires_grad_()
        torch.manual_seed(100 + step_no)
        idx = torch.randint(0, N_DATA, (B, K + 1))
        idx[:, 0] = index
        v1, v2 = embed(fs_ref, crd.embed_s.linear), embed(f_t, crd.embed_t.linear)
        out_s, out_t, z_ref = contrast_memory(v1, v2, index, idx, memory_v1, memory_v2, z_ref, 0.07, 0.5)
        expected = F.cross_entropy(z_leaf, y) + 0.8 * (
            contrast_loss(out_s, N_DATA) + contrast_loss(out_t, N_DATA)
        )
        expected.backward()

        torch.manual_seed(100 + step_no)
        fs_ours, z_ours = f_s.float().requires_grad_(), z.float().requires_grad_()
        crd.zero_grad()
        out = crd(
            strategies.StepInputs(
                student_logits=z_ours,
                targets=y,
                teacher_logits=torch.zeros(B, 5),
                indices=index,
                student_features={"pre_logits": fs_ours},
                teacher_features={"pre_logits": f_t.float()},
            )
        )
        out["loss"].backward()
        assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5), step_no
        torch.testing.assert_close(z_ours.grad.double(), z_leaf.grad)
        torch.testing.assert_close(fs_ours.grad.double(), fs_ref.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(crd.memory_s.double(), memory_v1, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(crd.memory_t.double(), memory_v2, rtol=1e-5, atol=1e-6)
        assert crd.z.tolist() == pytest.approx(z_ref, rel=1e-5)
        assert crd.embed_t.linear.weight.grad is not None  # the teacher's head learns too


def test_needs_sample_indices():
    crd = strategies.build("crd", feat_dim=DIM, negatives=K)
    crd.setup(
        strategies.SetupInfo(
            num_classes=5,
            train_size=N_DATA,
            student_shapes={"pre_logits": (D_S,)},
            teacher_shapes={"pre_logits": (D_T,)},
        )
    )
    step = strategies.StepInputs(
        student_logits=torch.zeros(B, 5),
        targets=torch.zeros(B, dtype=torch.long),
        teacher_logits=torch.zeros(B, 5),
        student_features={"pre_logits": torch.zeros(B, D_S)},
        teacher_features={"pre_logits": torch.zeros(B, D_T)},
    )
    with pytest.raises(Exception, match="sample indices"):
        crd(step)


def _features(rank_sizes=(3, 2)):
    g = torch.Generator().manual_seed(21)
    n = sum(rank_sizes)
    return (
        torch.randn(n, 5, generator=g),
        torch.randint(0, 5, (n,), generator=g),
        torch.randn(n, D_S, generator=g),
        torch.randn(n, D_T, generator=g),
        torch.randperm(N_DATA, generator=g)[:n],
    )


def _built(rank: int = 0, world_size: int = 1):
    torch.manual_seed(0)  # the same heads and banks on every rank, as the runner's seeding gives
    crd = strategies.build("crd", feat_dim=DIM, negatives=K)
    crd.setup(
        strategies.SetupInfo(
            num_classes=5,
            train_size=N_DATA,
            student_shapes={"pre_logits": (D_S,)},
            teacher_shapes={"pre_logits": (D_T,)},
            rank=rank,
            world_size=world_size,
            reduce=distributed.all_reduce_sum,  # as the runner hands it
        )
    )
    return crd


def _rank(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        crd = _built(rank, world_size=2)
        z, y, f_s, f_t, index = _features()
        part = slice(0, 3) if rank == 0 else slice(3, 5)  # unequal batches on the two ranks
        step = strategies.StepInputs(
            student_logits=z[part],
            targets=y[part],
            teacher_logits=z[part],
            indices=index[part],
            student_features={"pre_logits": f_s[part]},
            teacher_features={"pre_logits": f_t[part]},
        )
        crd(step)
        out[rank] = (crd.memory_s.clone(), crd.memory_t.clone(), crd.z.clone())
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_two_ranks_keep_identical_banks_holding_both_batches():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_rank, args=(port, out), nprocs=2, join=True)
        results = dict(out)
    for a, b in zip(results[0], results[1], strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    single = _built()
    _, _, f_s, f_t, index = _features()
    with torch.no_grad():
        single._update_memory(single.embed_s(f_s), single.embed_t(f_t), index)
    torch.testing.assert_close(results[0][0], single.memory_s)
    torch.testing.assert_close(results[0][1], single.memory_t)
