"""Region proposals on the data side: selective-search precompute, the on-disk cache, the per-detector proposal stage, external proposal files."""
