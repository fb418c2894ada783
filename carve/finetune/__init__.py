"""Detection and classification transfer of zoo backbones (torchvision detectors, carve.train recipe)."""

from .classification import ClassifyResult, classify
from .config import ClassifyConfig, DetectConfig
from .dataset import AnnotationError, DetectionDataset, ImageRecord
from .detection import DetectResult, detect, evaluate_checkpoint, load_detector
from .evaluate import coco_metrics, evaluate_detector
from .heads import HEADS, build_detector
from .sources import open_dataset

__all__ = [
    "AnnotationError", "ClassifyConfig", "ClassifyResult", "DetectConfig", "DetectResult", "DetectionDataset", "HEADS",
    "ImageRecord", "build_detector", "classify", "coco_metrics", "detect", "evaluate_checkpoint", "evaluate_detector",
    "load_detector", "open_dataset",
]
