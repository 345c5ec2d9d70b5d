"""Under `torchrun`: each rank writes the training-split positions its training loader (epochs 0
and 1) and its held-out loader yield, as `<out>/rank<r>.json` (torch backend: a batch's
`indices` are positions in the whole training split). `tests/data/test_holdout.py` checks that no
position is both trained on and held out, and that the held-out shards split the held-out set.

    python -m torch.distributed.run --nproc_per_node=2 -m tests.support.dump_positions RECIPE OUT
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from harness.config import load_recipe
from harness.data import build_data
from harness.runtime import distributed
from harness.runtime.runtime import Runtime


def main(recipe_path: str, out: str) -> None:
    recipe = load_recipe(recipe_path)
    runtime = Runtime.start(recipe.runtime, recipe.seed)
    world = runtime.world
    data = build_data(
        recipe.data, device=runtime.device, seed=recipe.seed, rank=world.rank, world_size=world.world_size
    )
    assert data.holdout is not None
    trained = []
    for epoch in (0, 1):
        data.train.set_epoch(epoch)
        trained += [i for batch in data.train for i in batch.indices.tolist()]
    data.holdout.set_epoch(0)
    held_out = [i for batch in data.holdout for i in batch.indices.tolist()]
    data.close()
    record = {
        "world_size": world.world_size,
        "trained": trained,
        "held_out": held_out,
        "digest": data.holdout_digest,
    }
    (Path(out) / f"rank{world.rank}.json").write_text(json.dumps(record))
    distributed.barrier()
    distributed.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
