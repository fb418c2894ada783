"""Run by tests under torchrun: ``ddp_worker.py CONFIG OUT [CONFIG OUT ...]`` fits each TrainConfig
(JSON) in turn in one process group; rank 0 saves each final state dict to its OUT."""

import json
import os
import sys

import torch

from carve.train import TrainConfig, fit

if __name__ == "__main__":
    torch.set_num_threads(1)
    poison_rank = int(os.environ.get("CARVE_TEST_NAN_RANK", "-1"))
    if poison_rank == int(os.environ["RANK"]):  # this rank's 3rd batch turns to NaN
        from carve.train import loop

        real, calls = loop.BatchMixer.__call__, [0]

        def poisoned(self, images, targets):
            calls[0] += 1
            return real(self, images * float("nan") if calls[0] == 3 else images, targets)

        loop.BatchMixer.__call__ = poisoned
    pairs = sys.argv[1:]
    for config_path, out_path in zip(pairs[::2], pairs[1::2]):
        with open(config_path) as f:
            cfg = TrainConfig.from_dict(json.load(f))
        result = fit(cfg)
        if torch.distributed.is_initialized() and torch.distributed.get_rank() == 0:
            torch.save(dict(state=result.model.state_dict(), history=result.history,
                            effective_batch_size=result.effective_batch_size), out_path)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
