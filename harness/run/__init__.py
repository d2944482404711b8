"""One run from config to record: model builder, runner, checkpoints, run records, atomic storage, seeding, multi-process set-up."""
