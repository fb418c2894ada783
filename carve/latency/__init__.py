"""Latency engine: measured on the real device, cached in SQLite, predicted from block tables."""

from .cache import LatencyCache, cache_dir, default_db_path
from .comparison import Comparison, compare
from .fingerprint import device_fingerprint, fingerprint_key, physical_cores
from .measurement import LatencyResult, measure
from .protocol import PROTOCOLS, QUICK, Protocol
from .table import LatencyTable, build_table, predict

__all__ = ["PROTOCOLS", "QUICK", "Comparison", "LatencyCache", "LatencyResult", "LatencyTable", "Protocol", "build_table",
           "cache_dir", "compare", "default_db_path", "device_fingerprint", "fingerprint_key", "measure",
           "physical_cores", "predict"]
