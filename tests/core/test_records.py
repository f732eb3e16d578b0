"""Job and data set records on the real Redis: atomic, one-way state transitions."""

from __future__ import annotations

import threading

import pytest

from core.records import IdempotencyKeys


def test_a_finished_job_never_runs_again(jobs):
    jobs.create("t", "j1", "queued", {"type": "select", "request": {}})
    assert jobs.transition("j1", "running") == (True, "queued")
    assert jobs.transition("j1", "succeeded", result={"rows_selected": 3}) == (True, "running")
    for status in ("running", "cancelling", "cancelled", "failed"):
        assert jobs.transition("j1", status)[0] is False
    doc = jobs.get("j1")
    assert doc["status"] == "succeeded" and doc["result"] == {"rows_selected": 3}
    assert jobs.counts() == {"queued": 0, "running": 0, "succeeded": 1}


def test_unknown_record_and_other_tenant(jobs):
    assert jobs.transition("nope", "running") == (False, "")
    jobs.create("t1", "j2", "queued", {"type": "select", "request": {}})
    assert jobs.get("j2", "t2") is None and jobs.get("j2", "t1") is not None


def test_concurrent_transitions_let_exactly_one_win(jobs):
    jobs.create("t", "j3", "queued", {"type": "select", "request": {}})
    jobs.transition("j3", "running")
    wins = []

    def attempt(status: str) -> None:
        if jobs.transition("j3", status)[0]:
            wins.append(status)

    threads = [threading.Thread(target=attempt, args=(s,))
               for s in ["succeeded", "failed"] * 10]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert sum(jobs.counts().values()) == 1


def test_idempotency_keys_remember_the_first_claim(jobs):
    keys = IdempotencyKeys(jobs.r, jobs.prefix, ttl=60)
    first = keys.claim("t", "k", "fp1", "job-a")
    again = keys.claim("t", "k", "fp2", "job-b")
    assert first == again == {"fingerprint": "fp1", "id": "job-a"}
    assert keys.claim("other-tenant", "k", "fp2", "job-c")["id"] == "job-c"
    assert 0 < jobs.r.ttl(next(jobs.r.scan_iter(f"{jobs.prefix}idem:t:*"))) <= 60


def test_a_job_claim_is_readable_by_the_gateway_version_before(jobs):
    """A rolling deploy runs both versions: the one before read a job claim's "job_id"
    (a KeyError, answered 500, on a claim holding only "id"). Job claims carry both
    names; data set claims (new with this version) need only "id"."""
    import json

    keys = IdempotencyKeys(jobs.r, jobs.prefix, ttl=60)
    assert keys.claim("t", "k", "fp", "job-a") == {"fingerprint": "fp", "id": "job-a"}
    stored = json.loads(jobs.r.get(keys.key_of("t", "k")))
    assert stored["job_id"] == stored["id"] == "job-a" and stored["fingerprint"] == "fp"
    # what the version before reads, and writes: both are understood
    jobs.r.set(keys.key_of("t", "old"), json.dumps({"fingerprint": "fp", "job_id": "job-o"}))
    assert keys.claim("t", "old", "fp", "job-b") == {"fingerprint": "fp", "id": "job-o"}
    keys.release("t", "old", "job-o")
    assert jobs.r.get(keys.key_of("t", "old")) is None
    ds_keys = IdempotencyKeys(jobs.r, jobs.prefix, ttl=60, scope="datasets")
    ds_keys.claim("t", "k", "fp", "ds_a")
    assert json.loads(jobs.r.get(ds_keys.key_of("t", "k"))) == {"fingerprint": "fp",
                                                                 "id": "ds_a"}


def test_idempotency_scopes_never_share_a_key_whatever_the_tenant_name(jobs):
    """Jobs' keys were idem:{tenant}:, data sets' idem:datasets:{tenant}:, so tenant
    "datasets:acme"'s job claims were acme's data set claims. Each scope now has a fixed
    prefix of its own ahead of any tenant name."""
    job_keys = IdempotencyKeys(jobs.r, jobs.prefix, ttl=60)
    ds_keys = IdempotencyKeys(jobs.r, jobs.prefix, ttl=60, scope="datasets")
    for tenant in ("acme", "datasets:acme", "ds:acme", "-ds:acme"):
        for other in ("acme", "datasets:acme", "ds:acme", "-ds:acme"):
            assert job_keys.key_of(tenant, "k") != ds_keys.key_of(other, "k"), (tenant, other)
    # jobs keep their layout (claims made before this change still answer)
    assert job_keys.key_of("acme", "k").startswith(f"{jobs.prefix}idem:acme:")
    assert ds_keys.key_of("acme", "k").startswith(f"{jobs.prefix}idem-ds:acme:")
    # a data set claim of acme and a job claim of "datasets:acme" under one header value
    assert ds_keys.claim("acme", "k", "fp-ds", "ds_1")["id"] == "ds_1"
    assert job_keys.claim("datasets:acme", "k", "fp-job", "job-1")["id"] == "job-1"
    assert ds_keys.peek("acme", "k") == {"fingerprint": "fp-ds", "id": "ds_1"}
    with pytest.raises(KeyError):
        IdempotencyKeys(jobs.r, jobs.prefix, ttl=60, scope="other")


def test_writes_to_a_deleted_record_write_nothing(jobs):
    # a worker still busy with a deleted job (or data set) must not write it back
    from core.records import DatasetStore

    jobs.create("t", "gone", "queued", {"type": "select", "request": {}})
    jobs.transition("gone", "running")
    assert jobs.update("gone", stage="embedding") is True
    jobs.delete("gone", "t")
    assert jobs.update("gone", stage="scoring", progress_done=5) is False
    jobs.set_progress("gone", "embedding", 10, 100)
    jobs.add_progress("gone", 3, embedded=3)
    assert jobs.transition("gone", "succeeded")[0] is False
    assert not jobs.r.exists(jobs.key("gone")) and jobs.get("gone") is None
    datasets = DatasetStore(jobs.r, jobs.prefix)
    datasets.create("t", "ds", "uploaded", {"size_bytes": 0})
    datasets.set_size("ds", "t", 1000)
    assert datasets.stored_bytes("t") == 1000
    datasets.delete("ds", "t")
    datasets.set_size("ds", "t", 5000)  # the import's read ends after the delete
    assert datasets.update("ds", status="ready", rows_valid=3) is False
    assert datasets.stored_bytes("t") == 0 and not jobs.r.exists(datasets.key("ds"))


def test_jobs_are_linked_to_the_data_sets_they_read(jobs):
    jobs.create("t", "j1", "queued", {"type": "evaluate", "request": {}})
    jobs.link_datasets("j1", ["ds-a", "ds-b"])
    jobs.create("t", "j2", "queued", {"type": "select", "request": {}})
    jobs.link_datasets("j2", ["ds-a"])
    assert jobs.of_dataset("ds-a") == ["j1", "j2"] and jobs.of_dataset("ds-b") == ["j1"]
    jobs.forget_dataset("ds-a")
    assert jobs.of_dataset("ds-a") == []


def test_progress_writes_the_stage_and_its_first_time_in_one_step(jobs):
    jobs.create("t", "j9", "running", {"type": "select", "request": {}})
    for stage, done in (("reading", 5), ("embedding", 10), ("reading", 7), ("scoring", 1)):
        jobs.set_progress("j9", stage, done, 20)
    doc = jobs.get("j9")
    assert (doc["stage"], doc["progress_done"], doc["progress_total"]) == ("scoring", 1, 20)
    # the order the stages were first reached in; a stage seen again keeps its place
    assert jobs.stages("j9") == ["reading", "embedding", "scoring"]
    assert 0 < jobs.r.ttl(f"{jobs.key('j9')}:stages") <= 7 * 86400
    # a deleted (or never created) job gets neither its fields nor a history
    jobs.set_progress("gone", "reading", 1, 2)
    assert not jobs.r.exists(jobs.key("gone")) and jobs.stages("gone") == []


def test_a_resent_part_adds_only_what_passes_its_lost_copys_count(jobs):
    jobs.create("t", "j10", "running", {"type": "select", "request": {}})
    jobs.set_progress("j10", "embedding", 0, 30)
    assert jobs.add_part_progress("j10", "1:0", 8, embedded=8) == 8
    assert jobs.add_part_progress("j10", "1:1", 10, embedded=10) == 10
    # part 0's worker dies; its copy finds 5 of the 8 checkpointed and starts from there
    assert jobs.add_part_progress("j10", "1:0", 5, embedded=0) == 0
    assert jobs.add_part_progress("j10", "1:0", 7, embedded=2) == 0
    assert jobs.add_part_progress("j10", "1:0", 15, embedded=8) == 7
    doc = jobs.get("j10")
    assert doc["progress_done"] == 25 and doc["embedded_new"] == 28  # work, not progress
    # never past the total, and a deleted job takes nothing
    assert jobs.add_part_progress("j10", "1:1", 40) == 30
    assert jobs.get("j10")["progress_done"] == 30
    jobs.delete("j10", "t")
    assert not jobs.r.exists(f"{jobs.key('j10')}:part-progress")
    assert jobs.add_part_progress("j10", "1:1", 50) == -1
