"""The backbone zoo: architecture spec, blocks, families, registry and weights."""

from .factory import create_model, pretrained_cfg, resolve_spec
from .model import CarveFeatures, CarveNet, FeatureInfo, feature_points
from .counting import Profile, count_params, profile
from .listing import best_imagenet_top1, zoo_table
from .mobileone import deployed, reparameterize
from .registry import ModelEntry, PublishedWeights, get_entry, list_models
from .spec import ArchSpec, BlockSpec, HeadSpec, NormSpec, SESpec, SpecError, StageSpec, StemSpec, make_divisible
from .validation import check_input_size, load_spec, parse_spec, validate
from .variants import for_small_images
from .elastic import ElasticSpace, ElasticStage, elastic_space
from .supernet import Supernet, extract, load_supernet, save_supernet
from .channel_order import sort_channels
from .timm_compat import register_with_timm
from .weights import (PretrainedUnavailable, WeightsError, convert_weights, load_state_dict_strict,
                      read_weights_file, save_weights)

register_with_timm()

__all__ = [
    "ArchSpec", "BlockSpec", "ElasticSpace", "ElasticStage", "Supernet", "elastic_space", "extract", "load_supernet",
    "save_supernet", "sort_channels", "CarveFeatures", "CarveNet", "FeatureInfo", "HeadSpec", "ModelEntry", "NormSpec",
    "Profile", "PretrainedUnavailable", "PublishedWeights", "SESpec", "SpecError", "StageSpec", "StemSpec",
    "WeightsError", "convert_weights", "count_params", "create_model", "feature_points", "for_small_images",
    "get_entry", "list_models", "load_spec", "load_state_dict_strict", "make_divisible", "parse_spec",
    "pretrained_cfg", "profile", "read_weights_file", "resolve_spec", "save_weights", "validate", "zoo_table",
    "best_imagenet_top1", "check_input_size", "deployed", "reparameterize",
]
