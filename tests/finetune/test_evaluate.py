import json
from pathlib import Path

import pytest
import torch

from carve.finetune.dataset import DetectionDataset, ImageRecord
from carve.finetune.evaluate import box_prior, coco_metrics, evaluate_detector, to_coco_results
from carve.finetune.visualise import draw_examples


def _gt() -> dict:
    images = [dict(id=1, width=200, height=200), dict(id=2, width=200, height=200)]
    anns = [dict(id=1, image_id=1, category_id=3, bbox=[10, 10, 50, 50], area=2500, iscrowd=0),
            dict(id=2, image_id=1, category_id=7, bbox=[100, 100, 80, 60], area=4800, iscrowd=0),
            dict(id=3, image_id=2, category_id=3, bbox=[20, 30, 100, 100], area=10000, iscrowd=0)]
    return dict(images=images, annotations=anns, categories=[dict(id=3, name="car"), dict(id=7, name="truck")])


def _perfect(gt: dict) -> list[dict]:
    return [dict(image_id=a["image_id"], category_id=a["category_id"], bbox=list(a["bbox"]), score=0.9)
            for a in gt["annotations"]]


def test_perfect_detections_give_ap_one() -> None:
    gt = _gt()
    m = coco_metrics(gt, _perfect(gt))
    assert m["AP"] == pytest.approx(1.0) and m["AP50"] == pytest.approx(1.0) and m["AP75"] == pytest.approx(1.0)
    assert m["per_class"] == {"car": pytest.approx(1.0), "truck": pytest.approx(1.0)}
    assert m["AP_small"] is None  # no ground truth below 32x32 px


def _shift_to_iou(bbox: list[float], iou: float) -> list[float]:
    # shifting a w x h box by d along x gives IoU (w - d) / (w + d)
    x, y, w, h = bbox
    d = w * (1 - iou) / (1 + iou)
    return [x + d, y, w, h]


@pytest.mark.parametrize("iou", [0.62, 0.83])
def test_shifted_box_counts_only_at_thresholds_below_its_iou(iou: float) -> None:
    gt = _gt()
    gt["annotations"] = gt["annotations"][:1]
    gt["images"] = gt["images"][:1]
    det = [dict(image_id=1, category_id=3, bbox=_shift_to_iou([10, 10, 50, 50], iou), score=0.9)]
    m = coco_metrics(gt, det)
    thresholds = [0.5 + 0.05 * i for i in range(10)]
    hits = sum(t <= iou + 1e-9 for t in thresholds)
    assert m["AP50"] == pytest.approx(1.0)
    assert m["AP75"] == pytest.approx(1.0 if iou >= 0.75 else 0.0)
    assert m["AP"] == pytest.approx(hits / 10)
    assert m["per_class"] == {"car": pytest.approx(hits / 10)}  # averaged over the ten IoU thresholds too


def test_per_class_ap_averages_each_class_over_the_iou_thresholds() -> None:
    """Two classes, each found once at its own IoU: per-class AP is the share of thresholds it passes."""
    gt = _gt()
    gt["annotations"], gt["images"] = gt["annotations"][:2], gt["images"][:1]
    det = [dict(image_id=1, category_id=3, bbox=_shift_to_iou([10, 10, 50, 50], 0.62), score=0.9),
           dict(image_id=1, category_id=7, bbox=_shift_to_iou([100, 100, 80, 60], 0.83), score=0.8)]
    m = coco_metrics(gt, det)
    # car passes 0.50-0.60 (3 of 10 thresholds), truck 0.50-0.80 (7 of 10); both are perfect at IoU 0.5
    assert m["per_class"] == {"car": pytest.approx(0.3), "truck": pytest.approx(0.7)}
    assert m["AP"] == pytest.approx(0.5) and m["AP50"] == pytest.approx(1.0)


def test_half_the_objects_missed_and_a_wrong_class() -> None:
    gt = _gt()
    det = _perfect(gt)
    det[2]["category_id"] = 7  # image 2's car reported as a truck: car recall halves, truck gets a false positive
    det[2]["score"] = 0.5
    m = coco_metrics(gt, det)
    assert m["per_class"]["car"] == pytest.approx(0.5, abs=0.01)
    assert m["per_class"]["truck"] == pytest.approx(1.0)  # the FP ranks below the true positive
    assert m["AP"] == pytest.approx(0.75, abs=0.01)
    assert coco_metrics(gt, [])["AP"] == 0.0


class _Oracle(torch.nn.Module):
    """Returns the ground truth of each image as detections, for the end-to-end path."""

    def __init__(self, ds: DetectionDataset):
        super().__init__()
        self.boxes = [torch.tensor(r.boxes).reshape(-1, 4) for r in ds.records]
        self.labels = [torch.tensor([ds.label_of[c] for c in r.category_ids], dtype=torch.int64) for r in ds.records]
        self.i = 0

    def forward(self, images):
        out = []
        for _ in images:
            out.append(dict(boxes=self.boxes[self.i], labels=self.labels[self.i], scores=torch.ones(len(self.labels[self.i]))))
            self.i += 1
        return out


def test_evaluate_writes_results_json_and_examples(tmp_path: Path) -> None:
    from PIL import Image

    records = []
    for i, (w, h) in enumerate([(64, 48), (40, 60)]):
        Image.new("RGB", (w, h), (i * 90, 80, 40)).save(tmp_path / f"{i}.png")
        records.append(ImageRecord(i + 10, tmp_path / f"{i}.png", w, h, [(4.0, 4.0, 30.0, 40.0)], [5 + i], [0]))
    ds = DetectionDataset(records, {5: "cat", 6: "dog"})
    metrics, preds = evaluate_detector(_Oracle(ds), ds, batch_size=1, out_dir=tmp_path / "eval")
    assert metrics["AP"] == pytest.approx(1.0)
    results = json.loads((tmp_path / "eval" / "detections.json").read_text())
    assert {(r["image_id"], r["category_id"]) for r in results} == {(10, 5), (11, 6)}
    assert results[0]["bbox"] == [4.0, 4.0, 26.0, 36.0]
    png = draw_examples(ds, preds, tmp_path / "examples.png", n=2, size=64)
    assert Image.open(png).size[0] > 64
    assert to_coco_results({}, ds) == []


def test_box_prior_scores_centred_objects_and_misses_corner_ones() -> None:
    images = [dict(id=i, width=300, height=200) for i in (1, 2)]
    centred = dict(id=1, image_id=1, category_id=5, bbox=[45, 30, 210, 140], area=29400, iscrowd=0)  # the 70 % box
    corner = dict(id=2, image_id=2, category_id=5, bbox=[0, 0, 40, 30], area=1200, iscrowd=0)
    other = dict(id=3, image_id=2, category_id=9, bbox=[100, 60, 100, 80], area=8000, iscrowd=0)
    gt = dict(images=images, annotations=[centred, corner, other],
              categories=[dict(id=5, name="raccoon"), dict(id=9, name="cat")])
    prior = box_prior(gt)
    # category 5 (the commonest): its centred object is found, its corner one never; the two top-scored
    # (90 %) boxes give one hit and one miss, so precision 0.5 up to recall 0.5: 51 of 101 recall points
    assert prior["AP50"] == pytest.approx(0.5 * 51 / 101)
    assert box_prior(dict(gt, annotations=[centred]))["AP50"] == pytest.approx(1.0)
    assert box_prior(dict(gt, annotations=[corner]))["AP50"] == pytest.approx(0.0)
