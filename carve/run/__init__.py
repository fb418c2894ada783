"""``carve run``: the whole job (zoo, search, train, finetune, compress, report) in one run folder."""

from .config import ConfigError, RunConfig, load_config
from .pipeline import RunOutcome, run_pipeline
from .state import STEPS, RunState, parse_steps

__all__ = ["ConfigError", "RunConfig", "RunOutcome", "RunState", "STEPS", "load_config", "parse_steps",
           "run_pipeline"]
