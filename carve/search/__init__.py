"""Hardware-aware architecture search: spaces, objectives, the Optuna and Ray engines, export.

Import-light: optuna and ray load only inside the functions that need them; the latency engine
lives in ``carve.search.latency``.
"""

from .export import export
from .objective import Objective, ObjectiveConfig
from .spaces import SearchSpace, SpaceError, get_space, list_spaces, load_space
from .study import SearchConfig, SearchResult, run_search

__all__ = ["Objective", "ObjectiveConfig", "SearchConfig", "SearchResult", "SearchSpace", "SpaceError", "export",
           "get_space", "list_spaces", "load_space", "run_search"]
