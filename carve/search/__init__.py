"""Hardware-aware architecture search. Import-light: optuna and ray load only inside the functions
that need them; the latency engine lives in ``carve.search.latency``."""
