"""scripts/photo_proxy.py writes a dataset that fcam's readers take, boxes and masks of the same objects."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from fcam.data import load_gt_mask, load_metadata

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "photo_proxy.py"


def test_photo_proxy_boxes_enclose_the_masks(tmp_path):
    subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), "--image-size", "48", "--per-class", "2", "1", "1"],
                   check=True, capture_output=True)
    for split, per_class in (("train", 2), ("val", 1), ("test", 1)):
        boxes = load_metadata(tmp_path / "metadata", "CUB", split)
        masks = load_metadata(tmp_path / "metadata", "OpenImages", split)
        assert len(boxes.image_ids) == len(masks.image_ids) == 5 * per_class
        assert sorted(boxes.labels) == sorted(masks.labels) == sorted(list(range(5)) * per_class)
        for box_id, mask_id in zip(boxes.image_ids, masks.image_ids):
            assert (tmp_path / "images/CUB" / box_id).read_bytes() == (tmp_path / "images/OpenImages" / mask_id).read_bytes()
            foreground, _ = load_gt_mask(tmp_path / "masks", *masks.masks[mask_id], size=48)
            ys, xs = np.nonzero(foreground)
            union = np.array(boxes.boxes[box_id])
            # The masks' union spans the boxes' union (one box and one mask per instance).
            assert [xs.min(), ys.min(), xs.max(), ys.max()] == [union[:, 0].min(), union[:, 1].min(),
                                                               union[:, 2].max(), union[:, 3].max()]
