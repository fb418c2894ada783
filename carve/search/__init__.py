"""Hardware-aware architecture search: spaces, objectives, the Optuna and Ray engines, trial specs.

Import-light: optuna and ray load only inside the functions that need them; the latency engine
is ``carve.latency``.
"""

from .config import SearchConfig, SearchResult
from .objective import Objective, ObjectiveConfig
from .spaces import SearchSpace, SpaceError, get_space, list_spaces, load_space
from .study import run_search
from .trials import export_spec
from .winner import Winner, export_winner

__all__ = ["Objective", "ObjectiveConfig", "SearchConfig", "SearchResult", "SearchSpace", "SpaceError", "Winner",
           "export_spec", "export_winner", "get_space", "list_spaces", "load_space", "run_search"]
