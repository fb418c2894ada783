"""Detection and classification transfer of zoo backbones (torchvision detectors, carve.train recipe, LoRA/adapters)."""

from .classification import ClassifyResult, classify
from .config import ClassifyConfig, DetectConfig
from .dataset import AnnotationError, DetectionDataset, ImageRecord
from .detection import DetectResult, detect, evaluate_checkpoint, load_detector
from .evaluate import coco_metrics, evaluate_detector
from .heads import HEADS, build_detector
from .parameter_efficient import PeftInfo, add_peft, merge_peft, peft_info
from .peft_files import load_peft, read_peft_metadata, save_peft
from .peft_options import PeftSettings, parse_peft
from .sources import open_dataset

__all__ = [
    "AnnotationError", "ClassifyConfig", "ClassifyResult", "DetectConfig", "DetectResult", "DetectionDataset", "HEADS",
    "ImageRecord", "PeftInfo", "PeftSettings", "add_peft", "build_detector", "classify", "coco_metrics", "detect",
    "evaluate_checkpoint", "evaluate_detector", "load_detector", "load_peft", "merge_peft", "open_dataset",
    "parse_peft", "peft_info", "read_peft_metadata", "save_peft",
]
