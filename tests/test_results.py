import json
import multiprocessing as mp

from harness.evaluation.timing import StageTimer, summarize
from harness.run.results import append_record, read_records


def _writer(path, n, tag):
    for i in range(n):
        append_record(path, {"run_id": f"{tag}-{i}", "payload": "x" * 5000})


def test_concurrent_appends_never_interleave(tmp_path):
    path = tmp_path / "runs.jsonl"
    procs = [mp.get_context("fork").Process(target=_writer, args=(path, 30, t)) for t in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 60
    assert all(json.loads(line)["payload"] == "x" * 5000 for line in lines)


def test_reader_skips_bad_lines_with_line_number(tmp_path, caplog):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"run_id": "a"}\n{"run_id": "b", "trunc\n[1, 2]\n')
    append_record(path, {"run_id": "c", "value": float("nan")})
    records = read_records(tmp_path)
    assert [r["run_id"] for r in records] == ["a", "c"]
    assert records[1]["value"] is None  # strict JSON: NaN stored as null
    assert "runs.jsonl:2" in caplog.text and "runs.jsonl:3" in caplog.text


def test_append_after_torn_line_starts_a_new_line(tmp_path):
    path = tmp_path / "runs.jsonl"
    path.write_text('{"run_id": "a"}\n{"run_id": "tor')  # a writer died mid-line
    append_record(path, {"run_id": "b"})
    assert [r["run_id"] for r in read_records(path)] == ["a", "b"]


def test_summarize_median_and_p90():
    s = summarize([float(x) for x in range(1, 11)])
    assert s["median"] == 5.5 and s["p90"] == 9.0 and s["n"] == 10
    assert summarize([])["median"] is None


def test_stage_timer_discards_warmup_and_sums_stages():
    timer = StageTimer()
    timer.warmup = True
    with timer.item():
        with timer("a"):
            pass
    timer.warmup = False
    for _ in range(3):
        with timer.item():
            with timer("a"):
                pass
            with timer("a"):
                pass
    assert len(timer.samples["a"]) == 3 and len(timer.samples["total"]) == 3
    assert set(timer.medians()) == {"a"}


def test_record_carries_the_commit_the_process_loaded(monkeypatch):
    """A commit made while a long reproduce runs does not relabel its later records; a failed first look
    (git busy, say) is retried at the record instead of leaving every record without a commit."""
    import torch

    from harness.run import results

    monkeypatch.setattr(results, "_LOADED_SHA", ["a" * 40])
    monkeypatch.setattr(results, "git_sha", lambda cwd=None: "b" * 40)  # HEAD moved since the import
    assert results.record_envelope("t0", torch.device("cpu"))["git_sha"] == "a" * 40
    monkeypatch.setattr(results, "_LOADED_SHA", [None])
    assert results.record_envelope("t0", torch.device("cpu"))["git_sha"] == "b" * 40
    assert results.code_sha() == "b" * 40
