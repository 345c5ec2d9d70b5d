"""Online label smoothing against the reference code, its epoch-boundary table update, and the
reduction of its statistics across DDP ranks.

Reference: zhangchbin/OnlineLabelSmoothing, cifar/scripts/train_cifar_all_methods.py
(`update_loss_lams`: sum the softmax of correctly classified samples per class;
`soft_cross_entropy`; the table update after each epoch, 1/K for a class never right;
`loss = 0.5 * CE + 0.5 * soft_cross_entropy`; the table starts at zeros).
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

K = 4


def batches():
    g = torch.Generator().manual_seed(5)
    return [
        (torch.randn(8, K, generator=g, dtype=torch.float64) * 2, torch.randint(0, K, (8,), generator=g))
        for _ in range(3)
    ]


class ReferenceOLS:
    """The official code's bookkeeping, loop for loop."""

    def __init__(self):
        self.loss_lams = torch.zeros(K, K, dtype=torch.float64)
        self.new_epoch()

    def new_epoch(self):
        self.cur_epoch_lams = torch.zeros(K, K, dtype=torch.float64)
        self.cur_epoch_cnt = torch.zeros(K, dtype=torch.float64)

    def update_loss_lams(self, output, target):
        with torch.no_grad():
            logits = torch.softmax(output, dim=1)
            sort_args = torch.argsort(logits, dim=1, descending=True)
            for k in range(output.shape[0]):
                if target[k] != sort_args[k, 0]:
                    continue
                self.cur_epoch_lams[target[k]] += logits[k]
                self.cur_epoch_cnt[target[k]] += 1

    def soft_cross_entropy(self, output, target):
        target_prob = torch.zeros_like(output)
        for k in range(output.shape[0]):
            target_prob[k] = self.loss_lams[target[k]]
        return torch.sum(-F.log_softmax(output, dim=1) * target_prob) / output.shape[0]

    def loss(self, output, target):
        self.update_loss_lams(output, target)
        return 0.5 * F.cross_entropy(output, target) + 0.5 * self.soft_cross_entropy(output, target)

    def end_epoch(self):
        for cls in range(K):
            if self.cur_epoch_cnt[cls].max() < 0.5:
                self.loss_lams[cls] = 1.0 / K
            else:
                self.loss_lams[cls] = self.cur_epoch_lams[cls] / self.cur_epoch_cnt[cls]
        self.new_epoch()


def test_loss_gradient_and_table_match_the_reference_over_two_epochs():
    ref, ols = ReferenceOLS(), strategies.build("online_label_smoothing")
    ols.setup(strategies.SetupInfo(num_classes=K))
    for epoch in range(2):
        for z, y in batches():
            z_ref, z32 = z.clone().requires_grad_(), z.float().requires_grad_()
            expected = ref.loss(z_ref, y)
            expected.backward()
            out = ols(z32, y, epoch=epoch)
            out["loss"].backward()
            assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
            torch.testing.assert_close(z32.grad.double(), z_ref.grad, rtol=1e-4, atol=1e-6)
        ref.end_epoch()
        ols.end_epoch(lambda tensors: None)
        torch.testing.assert_close(ols.table.double(), ref.loss_lams, rtol=1e-5, atol=1e-7)
    assert (ols.table.sum(dim=1) - 1).abs().max() < 1e-5  # each row a distribution
    assert ols.epoch_counts.sum() == 0  # the epoch's statistics start again


def test_uniform_start_is_the_fine_grained_code():
    ols = strategies.build("online_label_smoothing", initial="uniform")
    z, y = batches()[0]
    out = ols(z.float(), y)
    assert out["soft"].item() == pytest.approx(-F.log_softmax(z, 1).mean().item(), rel=1e-5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        ols = strategies.build("online_label_smoothing")
        ols.setup(strategies.SetupInfo(num_classes=K))
        for i, (z, y) in enumerate(batches()):
            half = slice(0, 4) if rank == 0 else slice(4, 8)
            ols(z[half].float(), y[half])
            if i == 1:  # a mid-epoch checkpoint: rank 0 keeps the sums of both ranks
                ols.merge_partial_sums(distributed.all_reduce_sum, keep=rank == 0)
        ols.end_epoch(distributed.all_reduce_sum)
        out[rank] = ols.table.clone()
    finally:
        dist.destroy_process_group()


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_two_ranks_build_the_table_of_the_whole_batch():
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_rank, args=(_free_port(), out), nprocs=2, join=True)
        tables = dict(out)
    single = strategies.build("online_label_smoothing")
    single.setup(strategies.SetupInfo(num_classes=K))
    for z, y in batches():
        single(z.float(), y)
    single.end_epoch(lambda tensors: None)
    torch.testing.assert_close(tables[0], tables[1], rtol=0, atol=0)
    torch.testing.assert_close(tables[0], single.table, rtol=1e-6, atol=1e-7)
