"""What deleting removes: a data set and everything derived from it, or everything a
tenant owns. One place, so the route that deletes one data set and the one that deletes
them all cannot drift apart.

Deleting a job record first makes a worker still running it stop (a missing record reads
as a cancel) and write nothing back (record writes need the record); its files, the
score-cache entry it filled and its Idempotency-Key go after. A cached score file is
content-addressed: another tenant holding the same file recomputes it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.artifacts import Keys
from core.imports import query_key
from core.records import DatasetStore, IdempotencyKeys, JobStore


@dataclass
class Deletion:
    tenant: str
    datasets: DatasetStore
    jobs: JobStore
    artifacts: Any  # core.artifacts.ArtifactStore
    idem: IdempotencyKeys  # any scope: claims are released by the key a record keeps

    def dataset(self, doc: dict[str, Any], *, keep_results: bool = False) -> int:
        """Delete the data set ``doc``; unless ``keep_results``, its jobs too. Returns how
        many jobs were deleted."""
        dataset_id = doc["id"]
        self.datasets.delete(dataset_id, self.tenant)
        deleted = 0
        if not keep_results:
            for job_id in self.jobs.of_dataset(dataset_id):
                deleted += self.job(job_id)
        self.jobs.forget_dataset(dataset_id)
        # an import deleted before a worker read it: its presigned query goes too
        self.datasets.r.delete(query_key(self.datasets.prefix, dataset_id))
        self.artifacts.delete_prefix(Keys.dataset(dataset_id))
        if doc.get("idempotency_claim"):
            self.idem.release_key(doc["idempotency_claim"], dataset_id)
        return deleted

    def job(self, job_id: str) -> int:
        """Delete one of the tenant's jobs with its files, cached scores and key (1), or
        nothing if it is not the tenant's (0)."""
        doc = self.jobs.get(job_id, self.tenant)
        if doc is None:
            return 0
        self.jobs.delete(job_id, self.tenant)
        self.artifacts.delete_prefix(Keys.job(job_id))
        cached = doc.get("score_cache")
        if cached:
            self.jobs.r.delete(cached["index"])
            self.artifacts.delete_prefix(cached["artifact"])
        if doc.get("idempotency_claim"):
            self.idem.release_key(doc["idempotency_claim"], job_id)
        return 1

    def everything(self) -> dict[str, int]:
        """Every data set and job of the tenant, page by page (newest first)."""
        counts = {"deleted_datasets": 0, "deleted_jobs": 0}
        seen: set[str] = set()  # a record its delete could not unlist ends the loop
        while page := [d for d in self.datasets.list(self.tenant, limit=200).records
                       if d["id"] not in seen]:
            for doc in page:
                seen.add(doc["id"])
                counts["deleted_jobs"] += self.dataset(doc)
                counts["deleted_datasets"] += 1
        while page := [j for j in self.jobs.list(self.tenant, limit=200).records
                       if j["id"] not in seen]:  # the jobs kept with keep_results
            for doc in page:
                seen.add(doc["id"])
                counts["deleted_jobs"] += self.job(doc["id"])
        return counts
