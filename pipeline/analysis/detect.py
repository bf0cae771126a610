"""Task-level agreement: decode detections from float and quantized outputs and compare them.

Decoders are pluggable per model family (``model.decoder`` in params); a model without one gets
output-level metrics only. ``centerface`` follows the CenterFace / deface decoding: heatmap
peaks (3x3 local maxima) over a threshold, box size ``exp(scale) * 4`` and centre
``(index + offset + 0.5) * 4`` at stride 4, then greedy NMS at IoU 0.3.

A float detection with no quantized detection at IoU >= 0.5 is a *miss*; a quantized detection
with no float partner is *spurious*. Boxes are in input-tensor pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from pipeline.analysis.artifacts import FaceSummary

Boxes = NDArray[np.float64]  # (K, 5): x1, y1, x2, y2, score
Decoder = Callable[[Mapping[str, NDArray[np.float32]], float], Boxes]


def iou(a: Boxes, b: Boxes) -> NDArray[np.float64]:
    """(len(a), len(b)) intersection over union of x1, y1, x2, y2 boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: Boxes, threshold: float) -> Boxes:
    order = np.argsort(-boxes[:, 4], kind="stable")
    keep: list[int] = []
    for i in order:
        if all(iou(boxes[i : i + 1], boxes[j : j + 1])[0, 0] <= threshold for j in keep):
            keep.append(int(i))
    return boxes[keep]


def decode_centerface(outputs: Mapping[str, NDArray[np.float32]], threshold: float) -> Boxes:
    """One image's CenterFace outputs (batch axis removed) -> boxes."""
    heat = outputs["537"][0]  # (h, w)
    scale = outputs["538"]  # (2, h, w): log box height, width
    offset = outputs["539"]  # (2, h, w): centre offset y, x
    h, w = heat.shape
    padded = np.pad(heat, 1, constant_values=-np.inf)
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3))  # (h, w, 3, 3)
    peaks = (heat >= windows.max(axis=(2, 3))) & (heat > threshold)
    ys, xs = np.nonzero(peaks)
    if ys.size == 0:
        return np.zeros((0, 5))
    s0 = np.exp(scale[0, ys, xs].astype(np.float64)) * 4
    s1 = np.exp(scale[1, ys, xs].astype(np.float64)) * 4
    cy = (ys + offset[0, ys, xs] + 0.5) * 4
    cx = (xs + offset[1, ys, xs] + 0.5) * 4
    x1 = np.clip(cx - s1 / 2, 0, w * 4)
    y1 = np.clip(cy - s0 / 2, 0, h * 4)
    boxes = np.stack(
        [
            x1,
            y1,
            np.minimum(x1 + s1, w * 4),
            np.minimum(y1 + s0, h * 4),
            heat[ys, xs].astype(np.float64),
        ],
        axis=1,
    )
    return nms(boxes, 0.3)


DECODERS: dict[str, tuple[Decoder, tuple[str, ...]]] = {
    "centerface": (decode_centerface, ("537", "538", "539")),
}


@dataclass
class Agreement:
    """Float vs quantized detections accumulated over a scene's images."""

    float_detections: int = 0
    quant_detections: int = 0
    missed: int = 0
    spurious: int = 0
    matched_ious: list[float] = field(default_factory=list)
    images_with_miss: list[str] = field(default_factory=list)

    def add(self, ref: Boxes, got: Boxes, image: str, match_iou: float = 0.5) -> None:
        self.float_detections += len(ref)
        self.quant_detections += len(got)
        m = iou(ref, got)
        used: set[int] = set()
        missed_here = 0
        for i in np.argsort(-ref[:, 4], kind="stable") if len(ref) else []:
            candidates = [j for j in np.argsort(-m[i], kind="stable") if j not in used]
            j = candidates[0] if candidates else None
            if j is not None and m[i, j] >= match_iou:
                used.add(int(j))
                self.matched_ious.append(float(m[i, j]))
            else:
                missed_here += 1
        self.missed += missed_here
        self.spurious += len(got) - len(used)
        if missed_here:
            self.images_with_miss.append(image)

    def summary(self) -> FaceSummary:
        return FaceSummary(
            float_faces=self.float_detections,
            quantized_faces=self.quant_detections,
            missed=self.missed,
            miss_rate=self.missed / self.float_detections if self.float_detections else 0.0,
            spurious=self.spurious,
            mean_iou=float(np.mean(self.matched_ious)) if self.matched_ious else None,
            images_with_miss=sorted(set(self.images_with_miss)),
        )
