"""Hand-made run records for the report tests (imported by conftest.py and the tests).

Seven records: R-CNN, Fast R-CNN and three Faster R-CNN runs (two seeds of
``model.box_weight = 1.0``, one of ``10.0``) that finished, one failed
Faster R-CNN run and one interrupted R-CNN run with almost every field null.
One class is named ``<script>alert(1)</script>`` to check escaping.
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.config import build_config, to_dict

EVIL = "<script>alert(1)</script>"
DEVICE = {"type": "cpu", "name": "AMD EPYC 7B13", "threads": 2}
VERSIONS = {"python": "3.11.7", "torch": "2.14.1", "torchvision": "0.29.1", "opencv": "4.10",
            "numpy": "2.4.6"}


def _record(run_id, detector, seed, *, map07, test_s, train_s, stages, disk=0, extra_cfg=None,
            status="ok", reason=None, per_class=None, proposal_recall=None, extrapolated=None):
    # the real resolved config of the detector (so a renamed config key fails these tests), seed as given
    config = to_dict(build_config(detector=detector, overrides={"seed": seed, **(extra_cfg or {})}))
    per_class = per_class or {"disc": 0.7, EVIL: 0.3}
    rec = {
        "schema_version": 1, "run_id": run_id, "status": status, "reason": reason,
        "detector": detector, "dataset": "synthetic", "backbone": "tiny", "seed": seed,
        "init": "random", "profile": "cpu", "config": config,
        "git_sha": "0123456789abcdef0123456789abcdef01234567", "versions": VERSIONS,
        "device": DEVICE,
        "metrics": {
            "map50_voc07": map07, "map50_area": map07 + 0.02, "coco_ap": map07 / 2,
            "coco_ap50": map07, "coco_ap75": map07 / 2, "coco_ap_small": None,
            "coco_ap_medium": 0.4, "coco_ap_large": 0.5,
            "per_class": {c: {"ap50_voc07": ap, "ap50_area": ap + 0.01, "num_gt": 40,
                              "num_det": 300} for c, ap in per_class.items()},
            "pr_curves": {c: {"recall": [0.0, 0.3, 0.6, ap], "precision": [1.0, 0.9, 0.7, 0.5]}
                          for c, ap in per_class.items()},
        },
        "timing": {"train_s": train_s, "train_iters": 960, "test_images": 80,
                   "test_s_per_img": {"median": test_s, "p90": test_s * 1.3},
                   "stages": stages},
        "memory": {"peak_rss_bytes": 1_500_000_000, "cuda_max_allocated_bytes": None},
        "disk": {"bytes": disk, "items": {"feature_cache": disk}},
        "started": "2026-11-25T12:15:00+00:00", "finished": "2026-11-25T12:17:00+00:00",
    }
    if proposal_recall:
        rec["metrics"]["proposal_recall"] = proposal_recall
    if extrapolated:
        rec["disk"]["extrapolated"] = extrapolated
    return rec


def make_records() -> list[dict]:
    ns = [10, 50, 100, 300, 1000, 2000]
    rcnn = _record("r-rcnn-0", "rcnn", 0, map07=0.512, test_s=2.5, train_s=600.0,
                   stages={"proposals": 1.2, "warp": 0.3, "cnn": 0.9, "classifier": 0.05,
                           "nms": 0.01},
                   disk=123_456_789,
                   extrapolated={"bytes": 250_000_000_000,
                                 "to": "VOC07 trainval: 5011 images x 2000 proposals"})
    rcnn["timing"]["train_stages"] = {"finetune": 300.0, "features": 200.0, "svm": 80.0,
                                      "bbox_reg": 20.0}
    fast = _record("r-fast-0", "fast", 0, map07=0.634, test_s=0.05, train_s=60.0,
                   stages={"proposals": 0.03, "backbone": 0.012, "head": 0.006,
                           "postprocess": 0.001},
                   proposal_recall={"selective_search": {
                       "num_proposals": ns, "recall@0.5": [0.2, 0.5, 0.7, 0.85, 0.93, 0.95],
                       "recall@0.7": [0.1, 0.3, 0.45, 0.6, 0.75, 0.8]}})
    fast["timing"]["test_s_per_img_without_proposals"] = {"median": 0.02, "p90": 0.025}
    faster_stages = {"backbone": 0.012, "proposals": 0.004, "head": 0.003, "postprocess": 0.001}
    rpn = {"rpn": {"num_proposals": ns, "recall@0.5": [0.4, 0.7, 0.85, 0.93, 0.96, 0.97],
                   "recall@0.7": [0.2, 0.45, 0.6, 0.72, 0.8, 0.82]}}
    faster0 = _record("r-faster-0", "faster", 0, map07=0.80, test_s=0.02, train_s=80.0,
                      stages=faster_stages, proposal_recall=rpn)
    faster1 = _record("r-faster-1", "faster", 1, map07=0.82, test_s=0.021, train_s=82.0,
                      stages=faster_stages, proposal_recall=rpn)
    faster10 = _record("r-faster-lbw10", "faster", 0, map07=0.78, test_s=0.019, train_s=79.0,
                       stages=faster_stages, extra_cfg={"model.box_weight": 10.0})
    failed = _record("r-faster-failed", "faster", 2, map07=0.0, test_s=0.0, train_s=None,
                     stages={}, status="failed", reason="CUDA <b>out</b> of memory & more")
    failed["metrics"] = None
    failed["timing"] = None
    interrupted = {"schema_version": 1, "run_id": "r-rcnn-interrupted", "status": "interrupted",
                   "reason": "KeyboardInterrupt", "detector": "rcnn", "dataset": "synthetic",
                   "backbone": "tiny", "seed": 1, "init": None, "profile": "cpu", "config": None,
                   "git_sha": None, "versions": None, "device": None, "metrics": None,
                   "timing": None, "memory": None, "disk": None,
                   "started": "2026-11-25T13:00:00+00:00", "finished": None}
    return [rcnn, fast, faster0, faster1, faster10, failed, interrupted]


def write_runs(directory: Path, records: list[dict],
               extra_lines: dict[int, str] | None = None) -> Path:
    """Write ``runs.jsonl``; ``extra_lines`` inserts raw text lines at given 0-based positions."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(r) for r in records]
    for pos, text in sorted((extra_lines or {}).items()):
        lines.insert(pos, text)
    path = directory / "runs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


# --------------------------------------------------------------------------- #
# bench.jsonl and reproduce.jsonl
# --------------------------------------------------------------------------- #
GPU = {"type": "cuda", "name": "NVIDIA H100", "threads": 16, "cuda": "13.0"}


def make_bench_records() -> list[dict]:
    """One record of each bench kind on the CPU, an older R-CNN record with only ``bench``
    (superseded by the later one with ``kind``), and a Faster R-CNN bench on a GPU."""
    faster = {
        "kind": "faster_vs_torchvision", "image_size": [223, 192],
        "config": {"model": {"backbone": "tiny", "weights": None}},
        "speed": {"ours": {"infer_s_per_img": 0.04, "train_s_per_iter": 0.1},
                  "torchvision": {"infer_s_per_img": 0.05, "train_s_per_iter": 0.2},
                  "backbone_only": {"infer_s_per_img": 0.005}, "ours_svd": {"infer_s_per_img": 0.03}},
        "ratios": {"inference_throughput_ours_over_torchvision": 1.25,
                   "training_throughput_ours_over_torchvision": 2.0,
                   "eval_time_over_backbone_time": 8.0, "eval_time_over_backbone_time_svd": 6.0},
        "svd_ranks": [64, 16],
        "targets": {"inference_throughput_ours_over_torchvision": ">= 1.2",
                    "training_throughput_ours_over_torchvision": ">= 1.1",
                    "eval_time_over_backbone_time": "<= 1.25"},
        "flops_per_image": {"total": 2_078_919_168}, "device": DEVICE,
        "finished": "2026-11-25T14:08:35+00:00"}
    faster_gpu = {**faster, "device": GPU,
                  "config": {"model": {"backbone": "resnet50", "weights": "/w/r50.pth"}},
                  "ratios": {"inference_throughput_ours_over_torchvision": 1.1}}
    old_rcnn = {"bench": "rcnn_cnn_stage", "backbone": "tiny", "target": 0.9, "fraction": 0.85,
                "raw_crops_per_s": 1400.0, "rcnn_crops_per_s": 1190.0, "crop_size": 64,
                "batch_size": 256, "device": DEVICE, "finished": "2026-11-25T13:26:59+00:00"}
    new_rcnn = {**old_rcnn, "kind": "rcnn_cnn_stage", "fraction": 0.95,
                "rcnn_crops_per_s": 1330.0, "finished": "2026-11-25T13:27:39+00:00"}
    proposals = {
        "kind": "selective_search_proposals", "datasets": ["voc:bccd/trainval"], "images": 172,
        "workers": 2, "passes": {"in_process": [{"images_per_s": 4.5}],
                                 "workers_1": [{"images_per_s": 4.8}, {"images_per_s": 4.84}],
                                 "workers_2": [{"images_per_s": 8.4}, {"images_per_s": 8.2}]},
        "cache_hit_s_per_image_median": 0.00066, "search_s_per_image_median": 0.203,
        "ratios": {"parallel_speedup": 1.735, "hit_vs_recompute": 310.0},
        "targets": {"parallel_speedup": 1.8, "hit_vs_recompute": 100.0},
        "met": {"parallel_speedup": False, "hit_vs_recompute": True}, "device": DEVICE,
        "finished": "2026-11-25T13:47:43+00:00"}
    return [faster, old_rcnn, new_rcnn, proposals, make_scaling_record(), faster_gpu]


def make_scaling_record() -> dict:
    def timed(n: int, s: float) -> dict:
        return {"proposals": n, "s_per_img": s, "stages": {"cnn": s}}

    return {
        "kind": "scaling", "backbone": "tiny", "init": "random", "dataset": "synthetic",
        "images_per_point": 3, "repeats": 2,
        "notes": {"test_time_vs_proposals": "random boxes; selective search excluded"},
        "test_time_vs_proposals": {
            "fast": [timed(100, 0.010), timed(300, 0.012), timed(1000, 0.020)],
            "rcnn": [timed(100, 0.15), timed(300, 0.40), timed(1000, 1.30)]},
        "faster_time_vs_image_size": [
            {"min_size": 128, "image_size": [128, 149], "s_per_img": 0.02, "stages": {}},
            {"min_size": 192, "image_size": [192, 223], "s_per_img": 0.035, "stages": {}},
            {"min_size": 600, "image_size": [600, 698], "s_per_img": 0.30, "stages": {}}],
        "rcnn_disk_vs_images": [
            {"train_images": 20, "feature_cache_bytes": 25_000_000,
             "peak_rss_bytes": 900 * 2 ** 20},
            {"train_images": 80, "feature_cache_bytes": 100_000_000,
             "peak_rss_bytes": 910 * 2 ** 20}],
        "rcnn_growth": {"images_ratio": 4.0, "disk_ratio": 4.0, "peak_rss_ratio": 1.011},
        "device": DEVICE, "finished": "2026-11-25T15:00:00+00:00"}


def make_reproduce_records() -> list[dict]:
    """faster-table9 at cpu scale twice (the later invocation reused 3 of 4 rows) and
    fast-table4 once, complete but slower than stated, then again with every row already done; faster-table8
    interrupted."""
    base = {"kind": "reproduce", "scale": "cpu", "seeds": 1, "device": DEVICE,
            "dataset": "synthetic"}
    return [
        {**base, "preset": "faster-table9", "runs": 4, "ran": 4, "skipped": 0, "failed": 0,
         "complete": True, "wall_minutes": 9.0, "stated_minutes": 10.0, "within_stated": True,
         "finished": "2026-11-25T14:30:00+00:00"},
        {**base, "preset": "fast-table4", "runs": 3, "ran": 3, "skipped": 0, "failed": 0,
         "complete": True, "wall_minutes": 12.0, "stated_minutes": 8.0, "within_stated": False,
         "finished": "2026-11-25T14:40:00+00:00"},
        {**base, "preset": "faster-table9", "runs": 4, "ran": 1, "skipped": 3, "failed": 0,
         "complete": False, "wall_minutes": 2.5, "stated_minutes": 10.0, "within_stated": True,
         "finished": "2026-11-25T15:30:00+00:00"},
        # a later reproduce --all pass that found every fast-table4 row done: it must not hide the one above
        {**base, "preset": "fast-table4", "runs": 3, "ran": 0, "skipped": 3, "failed": 0,
         "complete": False, "wall_minutes": 0.5, "stated_minutes": 8.0, "within_stated": None,
         "finished": "2026-11-25T16:00:00+00:00"},
        # stopped with Ctrl-C after 12 of its 18 runs: its minutes count in the folder's total
        {**base, "preset": "faster-table8", "runs": 18, "ran": 12, "skipped": 0, "failed": 0,
         "interrupted": True, "complete": False, "wall_minutes": 12.0, "stated_minutes": 16.0,
         "within_stated": None, "finished": "2026-11-25T16:30:00+00:00"},
    ]


def write_jsonl(path: Path, records: list[dict], extra_lines: dict[int, str] | None = None) -> Path:
    """Write records one a line; ``extra_lines`` inserts raw lines at 0-based positions."""
    lines = [json.dumps(r) for r in records]
    for pos, text in sorted((extra_lines or {}).items()):
        lines.insert(pos, text)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --------------------------------------------------------------------------- #
# run folders: gallery.json and train_log.jsonl, written by the harness's own writers
# --------------------------------------------------------------------------- #
GALLERY_RUNS = {"r-rcnn-0": ("rcnn", 12.0), "r-fast-0": ("fast", 3.0), "r-faster-0": ("faster", 0.0)}


class Pictures:
    """Ten 240x320 test images with two boxes each (classes ``disc`` and :data:`EVIL`), no files."""

    class_names = ("__background__", "disc", EVIL)

    def __len__(self) -> int:
        return 10

    def load_image(self, i: int):
        import numpy as np

        rng = np.random.default_rng(i)
        image = np.full((240, 320, 3), 40 + 15 * i, dtype=np.uint8)
        image[..., 1] = rng.integers(0, 255, size=(240, 320), dtype=np.uint8) // 4
        for (x1, y1, x2, y2), colour in zip(self.boxes(i), ((220, 80, 40), (40, 80, 220))):
            image[y1:y2, x1:x2] = colour
        return image

    @staticmethod
    def boxes(i: int) -> list[tuple[int, int, int, int]]:
        return [(20 + 10 * i, 30, 120 + 10 * i, 130), (180, 60 + 5 * i, 300, 200)]

    def annotation(self, i: int) -> dict:
        import torch

        return {"boxes": torch.tensor(self.boxes(i), dtype=torch.float32), "labels": torch.tensor([1, 2]),
                "image_id": i}


def _predictions(ds: Pictures, shift: float) -> list[dict]:
    """Each image: the first gt box shifted by ``shift`` px (a true positive while IoU >= 0.5), one false
    positive of the wrong class, a low-score box (not shown); the second gt box is missed."""
    import torch

    out = []
    for i in range(len(ds)):
        first = torch.tensor(ds.boxes(i)[0], dtype=torch.float32) + shift * (1 + i % 3)
        boxes = torch.stack([first, torch.tensor([200.0, 10.0, 260.0, 50.0]), torch.tensor([5.0, 5.0, 40.0, 40.0])])
        out.append({"boxes": boxes, "labels": torch.tensor([1, 1, 2]),
                    "scores": torch.tensor([0.9 - 0.01 * i, 0.7, 0.2])})
    return out


def write_run_files(results: Path, run_ids: dict[str, tuple[str, float]] | None = None) -> None:
    """A gallery and a training log for each run of ``run_ids`` (default :data:`GALLERY_RUNS`)."""
    from harness.evaluation.gallery import write_gallery
    from harness.train.train_log import TRAIN_LOG_FILE, TrainLog

    ds = Pictures()
    truth = [ds.annotation(i) for i in range(len(ds))]
    for run_id, (detector, shift) in (run_ids or GALLERY_RUNS).items():
        run_dir = results / run_id
        write_gallery(run_dir, ds, _predictions(ds, shift), truth, count=8, seed=0)
        log = TrainLog(run_dir / TRAIN_LOG_FILE, 10)
        terms = ("loss_cls", "loss_box") + (("loss_rpn_cls", "loss_rpn_box") if detector == "faster" else ())
        for step in range(1, 121):
            log(step, {t: (1.0 + k) / (1 + step / 30) for k, t in enumerate(terms)}, lr=0.02, images=2,
                epoch=1 + step // 40, epoch_end=step % 40 == 0)
        log.close()
