"""Run by tests under torchrun: fit a TrainConfig read from JSON; rank 0 saves the final state dict."""

import json
import sys

import torch

from carve.train import TrainConfig, fit

if __name__ == "__main__":
    torch.set_num_threads(1)
    with open(sys.argv[1]) as f:
        cfg = TrainConfig.from_dict(json.load(f))
    result = fit(cfg)
    if torch.distributed.is_initialized():
        if torch.distributed.get_rank() == 0:
            torch.save(dict(state=result.model.state_dict(), history=result.history,
                            effective_batch_size=result.effective_batch_size), sys.argv[2])
        torch.distributed.destroy_process_group()
