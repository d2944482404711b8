"""Benchmarks: ours vs torchvision (faster), R-CNN's CNN stage (rcnn), scaling curves (scaling), selective-search precompute (proposals)."""
