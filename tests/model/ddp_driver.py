"""Run the group level's training on the toy cohort, as one process or as one of torchrun's.

    python tests/model/ddp_driver.py ROOT NORM [NORM ...]
    python -m torch.distributed.run --nproc-per-node 2 ... tests/model/ddp_driver.py ROOT NORM ...

``ROOT/records.tsv`` (written by the test) lists the GM maps; for each NORM the outputs go to
``ROOT/<NORM>/out`` and the work dir to ``ROOT/<NORM>/work``.  Process 0 writes ``ROOT/<NORM>/done.json``
with what it returned; every process writes ``ROOT/<NORM>/rank-<r>.json`` with what it saw.

Under torchrun give one NORM per launch: like ``latentbids group``, a launched process joins one
process group.  A second ``init_process_group`` in the same process, after the first was destroyed,
restarts torch's group counter and so reuses the first group's keys in torchrun's store: a process can
read its peer's stale rendezvous entry and the two deadlock (seen: one in ``init_process_group``, the
other in its first broadcast).
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from model_testdata import sloppy_config, toy_atlas, toy_template  # noqa: E402

from latentbids.settings import group_settings
from latentbids.workflows.group.training import train_and_encode  # noqa: E402


def main(root: Path, norms: list[str]) -> int:
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    records = pd.read_csv(root / "records.tsv", sep="\t", dtype=str, keep_default_na=False)
    tpl = toy_template()
    atlas = toy_atlas(tpl)
    rank = int(os.environ.get("RANK", "0"))
    for norm in norms:
        folder = root / norm
        config = sloppy_config(folder, norm=norm, n_folds=2, max_epochs=3, batch_size=4,
                               stem=os.environ.get("DRIVER_STEM", "conv"))
        result = train_and_encode(group_settings(config), records, tpl, atlas)
        (folder / f"rank-{rank}.json").write_text(json.dumps({"returned": result is not None,
                                                              "world": os.environ.get("WORLD_SIZE", "1")}))
        if result is not None:
            (folder / "done.json").write_text(json.dumps({"model_dir": str(result.model_dir),
                                                          "curves": str(result.curves_tsv)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))
