"""Run by tests under torchrun: fit a TrainConfig read from JSON; rank 0 saves the final state dict."""

import json
import os
import sys

import torch

from carve.train import TrainConfig, fit

if __name__ == "__main__":
    torch.set_num_threads(1)
    with open(sys.argv[1]) as f:
        cfg = TrainConfig.from_dict(json.load(f))
    poison_rank = int(os.environ.get("CARVE_TEST_NAN_RANK", "-1"))
    if poison_rank == int(os.environ["RANK"]):  # this rank's 3rd batch turns to NaN
        from carve.train import loop

        real, calls = loop.BatchMixer.__call__, [0]

        def poisoned(self, images, targets):
            calls[0] += 1
            return real(self, images * float("nan") if calls[0] == 3 else images, targets)

        loop.BatchMixer.__call__ = poisoned
    result = fit(cfg)
    if torch.distributed.is_initialized():
        if torch.distributed.get_rank() == 0:
            torch.save(dict(state=result.model.state_dict(), history=result.history,
                            effective_batch_size=result.effective_batch_size), sys.argv[2])
        torch.distributed.destroy_process_group()
