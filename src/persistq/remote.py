"""The queue over HTTP: ``persistq.connect("http://host:8000", token=...)``.

:class:`RemoteQueue` has the local :class:`~persistq.queue.Queue`'s methods for producers,
workers and operators, and raises the same exceptions: the API's error JSON carries a
``code`` (``lease_lost``, ``job_not_found``, ...) mapped back to the library's class, so a
stale lease is ``LeaseLost`` here too. ``persistq worker --url http://…`` runs on it.

Network failures raise ``StorageUnavailable`` (a ``QueueError``: the worker backs off and
retries, as it does when a local database is unwell), after retrying within a bound where a
retry cannot do harm:

- when the connection could not be made at all, for every call (nothing was sent);
- when the request was sent but no answer came, only for reads, heartbeats, and writes that
  are idempotent: ``enqueue`` with a ``key``, pause, resume, create_queue, worker presence.
  ``enqueue`` without a key, claims, complete, fail, release, cancel and resubmit are not
  resent: the first try may have taken effect, and a second could duplicate the job or
  report a ``LeaseLost`` for a job that was in fact completed. Give ``enqueue`` a ``key`` to
  make it safe to retry (yourself, or here).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from persistq.config import API_TOKEN_ENV, Settings, api_tokens
from persistq.errors import (
    ERRORS,
    InvalidJob,
    LeaseLost,
    QueueError,
    StorageUnavailable,
    Unrecoverable,
)
from persistq.model import (
    BULK_BATCH,
    JSON,
    MAX_BATCH,
    MAX_BULK,
    MAX_BULK_BATCH,
    MAX_PAGE,
    TERMINAL,
    BulkResult,
    Event,
    EventKind,
    FailureEvent,
    FinishedCount,
    Job,
    JobFilter,
    JobOptions,
    JobPage,
    QueueInfo,
    State,
    StorageInfo,
    Timing,
    WorkerInfo,
    answered,
    encode_json,
    error_text,
    owned_results,
    validate_claim_limit,
    validate_int,
    validate_key,
    validate_page,
    validate_queue_list,
    validate_queue_name,
    validate_run_at,
    validate_seconds,
    validate_state,
    validate_timeout,
    validate_worker,
)

#: The server bounds a long poll to 30 s; longer waits are several polls.
MAX_POLL_SECONDS = 30.0
#: Batches one bulk request asks for: a few seconds of work, well inside the timeout.
BULK_REQUEST_BATCHES = 20


class Unauthorized(QueueError):
    """The API refused the token (or none was given): HTTP 401."""


#: ``code`` of the API's error JSON -> the class the local library raises.
ERROR_CODES: dict[str, type[QueueError]] = {
    **{kind.code: kind for kind in ERRORS},
    "too_large": InvalidJob,
    "unauthorized": Unauthorized,
}


class RemoteQueue:
    """The SPEC's queue API over the REST API. Thread-safe (one keep-alive pool)."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        settings: Settings | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        token = token or next(iter(api_tokens()), None)
        if not token:
            raise Unauthorized(f"no API token: pass token= or set {API_TOKEN_ENV}")
        self.base_url = url.rstrip("/")
        self.settings = settings or Settings.from_env(url=self.base_url)
        self.timeout = timeout
        self.retries = retries
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}", "User-Agent": "persistq-remote"},
            timeout=timeout,
            transport=transport,
        )

    @property
    def url(self) -> str:
        return self.base_url

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RemoteQueue:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- producing ---------------------------------------------------------------------

    def enqueue(
        self,
        payload: JSON,
        *,
        queue: str = "default",
        priority: int = 0,
        delay: float = 0,
        run_at: datetime | None = None,
        max_attempts: int = 3,
        key: str | None = None,
        timeout: float | None = None,
    ) -> Job:
        # Checked here as the local queue checks it: the same refusal, in the same words,
        # without a round trip (the server checks again).
        JobOptions.check(
            queue=queue, priority=priority, delay=delay, max_attempts=max_attempts, key=key
        )
        validate_run_at(run_at, delay)
        validate_timeout(timeout)
        encode_json(payload, what="payload", max_bytes=self.settings.max_payload_bytes)
        body = {
            "payload": payload,
            "priority": priority,
            "delay": delay,
            "run_at": _iso(run_at),
            "max_attempts": max_attempts,
            "key": key,
            "timeout": timeout,
        }
        data = self._call("POST", f"/queues/{_name(queue)}/jobs", body, safe=key is not None)
        return job_from_json(data)

    def enqueue_many(
        self,
        payloads: Iterable[JSON],
        *,
        queue: str = "default",
        priority: int = 0,
        delay: float = 0,
        run_at: datetime | None = None,
        max_attempts: int = 3,
        keys: Sequence[str | None] | None = None,
        timeout: float | None = None,
    ) -> list[Job]:
        payloads = list(payloads)
        if keys is not None and len(keys) != len(payloads):
            raise InvalidJob(f"{len(keys)} keys for {len(payloads)} payloads")
        key_list = list(keys) if keys is not None else [None] * len(payloads)
        JobOptions.check(
            queue=queue, priority=priority, delay=delay, max_attempts=max_attempts, key=None
        )
        validate_run_at(run_at, delay)
        validate_timeout(timeout)
        limit = self.settings.max_payload_bytes
        for i, (p, k) in enumerate(zip(payloads, key_list, strict=True)):
            encode_json(p, what=f"payload {i}", max_bytes=limit)
            validate_key(k)
        if not payloads:
            return []
        body = {
            "jobs": [{"payload": p, "key": k} for p, k in zip(payloads, key_list, strict=True)],
            "priority": priority,
            "delay": delay,
            "run_at": _iso(run_at),
            "max_attempts": max_attempts,
            "timeout": timeout,
        }
        safe = all(k is not None for k in key_list)
        data = self._call("POST", f"/queues/{_name(queue)}/jobs/batch", body, safe=safe)
        return [job_from_json(row) for row in data]

    # -- consuming ---------------------------------------------------------------------

    def claim(
        self,
        *,
        queue: str | Sequence[str] = "default",
        worker: str,
        lease: float | None = None,
        wait: float = 0,
    ) -> Job | None:
        jobs = self.claim_many(queue=queue, worker=worker, limit=1, lease=lease, wait=wait)
        return jobs[0] if jobs else None

    @property
    def completes_with_next_claim(self) -> bool:
        return True  # one request (POST /jobs/complete with a claim)

    def claim_many(
        self,
        *,
        queue: str | Sequence[str] = "default",
        worker: str,
        limit: int,
        lease: float | None = None,
        wait: float = 0,
    ) -> list[Job]:
        names = validate_queue_list(queue)
        validate_worker(worker)
        if isinstance(wait, bool) or not isinstance(wait, int | float) or not wait >= 0:
            raise InvalidJob(f"wait must be a number of seconds, got {wait!r}")
        deadline = time.monotonic() + wait
        while True:  # a long wait is several long polls of at most 30 s
            poll = min(MAX_POLL_SECONDS, max(0.0, deadline - time.monotonic()))
            body = {
                "worker": worker,
                "lease": lease,
                "wait": poll,
                "more_queues": names[1:],
                "limit": limit,
            }
            data = self._call(
                "POST",
                f"/queues/{_name(names[0])}/claim/batch",
                body,
                safe=False,
                timeout=self.timeout + poll,
            )
            if data or deadline - time.monotonic() <= 0:
                return [job_from_json(row) for row in data]

    def heartbeat(self, job: Job) -> Job:
        data = self._call("POST", f"/jobs/{job.id}/heartbeat", _lease(job), safe=True)
        return job_from_json(data)

    def heartbeat_many(self, jobs: Sequence[Job]) -> list[Job | LeaseLost]:
        held = [job for job in jobs if job.lease_token]
        beats: list[Job | LeaseLost] = []
        for start in range(0, len(held), MAX_BATCH):  # the server's bound per request
            chunk = held[start : start + MAX_BATCH]
            body = {"leases": [{"id": job.id, **_lease(job)} for job in chunk]}
            data = self._call("POST", "/jobs/heartbeat", body, safe=True)
            beats += [
                LeaseLost.restore(row["detail"], row) if "code" in row else job_from_json(row)
                for row in data
            ]
        answers = iter(beats)
        return [next(answers) if job.lease_token else LeaseLost(job.id) for job in jobs]

    def complete(self, job: Job, result: JSON = None) -> Job:
        encode_json(result, what="result")
        body = {**_lease(job), "result": result}
        return job_from_json(self._call("POST", f"/jobs/{job.id}/complete", body, safe=False))

    def complete_many(self, items: Sequence[tuple[Job, JSON]]) -> list[Job | QueueError]:
        """As ``Queue.complete_many``: one request per MAX_BATCH items; an item's own
        refusal is its answer, any other error raises."""
        return self._complete(items, None)[0]

    def complete_and_claim(
        self,
        items: Sequence[tuple[Job, JSON]],
        *,
        queue: str | Sequence[str] = "default",
        worker: str,
        limit: int,
        lease: float | None = None,
    ) -> tuple[list[Job | QueueError], list[Job]]:
        """As ``Queue.complete_and_claim``: one request (``POST /jobs/complete`` with its
        ``claim``), in one transaction where the server's storage allows."""
        names = validate_queue_list(queue)  # a bad claim refuses the call before anything is sent
        claim = {
            "queue": names[0],
            "more_queues": names[1:],
            "worker": validate_worker(worker),
            "limit": validate_claim_limit(limit),
            "lease": lease,
        }
        return self._complete(items, claim)

    def _complete(
        self, items: Sequence[tuple[Job, JSON]], claim: dict[str, Any] | None
    ) -> tuple[list[Job | QueueError], list[Job]]:
        """The completions of ``items`` (refused here as the library refuses them), in
        requests of at most MAX_BATCH, the last one carrying ``claim``."""
        answers, _ = owned_results(items)
        sent = [
            {"id": job.id, "lease_token": job.lease_token, "result": result}
            for (job, result), answer in zip(items, answers, strict=True)
            if answer is None
        ]
        done: list[Job | QueueError] = []
        claimed: list[Job] = []
        if not sent and claim is not None:
            names = [claim["queue"], *claim["more_queues"]]
            claimed = self.claim_many(
                queue=names, worker=claim["worker"], limit=claim["limit"], lease=claim["lease"]
            )
        for start in range(0, len(sent), MAX_BATCH):
            last = start + MAX_BATCH >= len(sent)
            body: dict[str, Any] = {"completions": sent[start : start + MAX_BATCH]}
            if last and claim is not None:
                body["claim"] = claim
            data = self._call("POST", "/jobs/complete", body, safe=False)
            done += [_answer(row) for row in data["completed"]]
            claimed = [job_from_json(row) for row in data["claimed"]]
        return answered(answers, done), claimed

    def fail(
        self,
        job: Job | int,
        error: str | BaseException,
        *,
        retry: bool = True,
        backoff_base: float | None = None,
        backoff_max: float | None = None,
        timed_out: str | None = None,
    ) -> Job:
        """As ``Queue.fail``; given a job id, an operator fails the job at once."""
        if isinstance(error, Unrecoverable):
            retry = False
        body: dict[str, Any] = {"error": error_text(error), "retry": retry}
        if backoff_base is not None:
            body["backoff_base"] = backoff_base
        if backoff_max is not None:
            body["backoff_max"] = backoff_max
        if timed_out is not None:
            body["timed_out"] = timed_out
        if isinstance(job, Job):
            body.update(_lease(job))
            job_id = job.id
        else:
            job_id = job
        return job_from_json(self._call("POST", f"/jobs/{job_id}/fail", body, safe=False))

    def crashed(self, job: Job, detail: str) -> Job:
        body = {**_lease(job), "detail": detail}
        return job_from_json(self._call("POST", f"/jobs/{job.id}/crashed", body, safe=False))

    def release(self, job: Job, *, delay: float = 0, reason: str | None = None) -> Job:
        body: dict[str, Any] = dict(_lease(job))
        if delay:
            body["delay"] = delay
        if reason is not None:
            body["reason"] = reason
        return job_from_json(self._call("POST", f"/jobs/{job.id}/release", body, safe=False))

    def wait(self, id: int, *, timeout: float | None = None) -> Job:  # noqa: A002
        """As ``Queue.wait``: long polls of ``GET /jobs/{id}?wait=S`` (at most 30 s each)."""
        job_id = _id(id)
        if timeout is not None:
            validate_seconds(timeout, what="timeout")
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            poll = MAX_POLL_SECONDS
            if deadline is not None:
                poll = min(poll, max(0.0, deadline - time.monotonic()))
            data = self._call(
                "GET", f"/jobs/{job_id}", params={"wait": poll}, timeout=self.timeout + poll
            )
            job = job_from_json(data)
            if job.status in TERMINAL or (deadline is not None and time.monotonic() >= deadline):
                return job

    def recover_stalled(self) -> int:
        """Sweep on the server; safe to repeat (an expiry is recovered once)."""
        return int(self._call("POST", "/recover", None, safe=True)["recovered"])

    # -- managing ----------------------------------------------------------------------

    def get(self, id: int) -> Job:  # noqa: A002 - the SPEC's name
        return job_from_json(self._call("GET", f"/jobs/{_id(id)}"))

    def jobs(
        self,
        *,
        status: State | str | None = None,
        queue: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[Job]:
        limit, offset = validate_page(limit, offset)
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            params["status"] = validate_state(status).value
        if queue is not None:
            params["queue"] = validate_queue_name(queue)
        return [job_from_json(row) for row in self._call("GET", "/jobs", params=params)]

    def search(
        self,
        where: JobFilter | None = None,
        *,
        after: int | None = None,
        limit: int = 50,
        oldest_first: bool = False,
    ) -> JobPage:
        body = {
            "filter": _filter_json(where),
            "after": None if after is None else validate_int(after, what="after", minimum=0),
            "limit": validate_int(limit, what="limit", minimum=1, maximum=MAX_PAGE),
            "oldest_first": bool(oldest_first),
        }
        data = self._call("POST", "/jobs/search", body, safe=True)
        return JobPage([job_from_json(row) for row in data["jobs"]], data["next"])

    def count(self, where: JobFilter | None = None) -> int:
        data = self._call("POST", "/jobs/count", {"filter": _filter_json(where)}, safe=True)
        return int(data["count"])

    def resubmit_matching(
        self,
        where: JobFilter | None = None,
        *,
        after: int | None = None,
        limit: int = MAX_BULK,
        batch: int = BULK_BATCH,
    ) -> BulkResult:
        return self._bulk("/jobs/resubmit", where, after, limit, batch)

    def cancel_matching(
        self,
        where: JobFilter | None = None,
        *,
        after: int | None = None,
        limit: int = MAX_BULK,
        batch: int = BULK_BATCH,
    ) -> BulkResult:
        return self._bulk("/jobs/cancel", where, after, limit, batch)

    def _bulk(
        self, path: str, where: JobFilter | None, after: int | None, limit: int, batch: int
    ) -> BulkResult:
        """Requests of at most BULK_REQUEST_BATCHES batches each, so none outlasts the
        timeout; not resent (a batch may have been committed)."""
        flt = _filter_json(where)
        cursor = None if after is None else validate_int(after, what="after", minimum=0)
        left = validate_int(limit, what="limit", minimum=1, maximum=MAX_BULK)
        size = validate_int(batch, what="batch", minimum=1, maximum=MAX_BULK_BATCH)
        done = 0
        while left > 0:
            step = min(left, size * BULK_REQUEST_BATCHES)
            body = {"filter": flt, "after": cursor, "limit": step, "batch": size}
            data = self._call("POST", path, body, safe=False)
            done += int(data["done"])
            cursor = data["next"]
            left -= step
            if cursor is None:
                return BulkResult(done, None)
        return BulkResult(done, cursor)

    def events(self, id: int) -> list[Event]:  # noqa: A002
        return [event_from_json(row) for row in self._call("GET", f"/jobs/{_id(id)}/events")]

    def resubmit(self, id: int) -> Job:  # noqa: A002
        return job_from_json(self._call("POST", f"/jobs/{_id(id)}/resubmit", None, safe=False))

    def cancel(self, id: int) -> Job:  # noqa: A002
        return job_from_json(self._call("POST", f"/jobs/{_id(id)}/cancel", None, safe=False))

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = self._call("GET", "/stats")
        return data

    def queues(self) -> list[QueueInfo]:
        return [queue_from_json(row) for row in self._call("GET", "/queues")]

    def create_queue(self, name: str) -> QueueInfo:
        body = {"name": validate_queue_name(name)}
        return queue_from_json(self._call("POST", "/queues", body, safe=True))

    def delete_queue(self, name: str, *, force: bool = False) -> int:
        params = {"force": "true" if force else "false"}
        data = self._call("DELETE", f"/queues/{_name(name)}", params=params, safe=False)
        return int(data["deleted_jobs"])

    def pause(self, name: str) -> QueueInfo:
        return queue_from_json(self._call("POST", f"/queues/{_name(name)}/pause", None, safe=True))

    def set_limits(
        self, queue: str, *, concurrency: int | None = None, rate: str | None = None
    ) -> QueueInfo:
        body = {"concurrency": concurrency, "rate": rate}
        return queue_from_json(self._call("PUT", f"/queues/{_name(queue)}/limits", body, safe=True))

    def resume(self, name: str) -> QueueInfo:
        return queue_from_json(self._call("POST", f"/queues/{_name(name)}/resume", None, safe=True))

    # -- worker presence ---------------------------------------------------------------

    def worker_seen(self, worker: str, queues: Sequence[str]) -> None:
        validate_worker(worker)
        for name in queues:
            validate_queue_name(name)
        body = {"worker": worker, "queues": list(queues)}
        self._call("POST", "/workers/seen", body, safe=True)

    def worker_gone(self, worker: str) -> None:
        validate_worker(worker)
        self._call("POST", "/workers/gone", {"worker": worker}, safe=True)

    def workers(self, *, seen_within: float = 300.0) -> list[WorkerInfo]:
        rows = self._call("GET", "/workers", params={"seen_within": seen_within})
        return [worker_from_json(row) for row in rows]

    def prune_workers(self, *, unseen_for: float) -> int:
        body = {"unseen_for": unseen_for}
        return int(self._call("POST", "/workers/prune", body, safe=True)["pruned"])

    # -- what happened: the reads behind persistq.insights -------------------------------

    def now(self) -> float:
        """The server's queue clock: ``since`` and ages are measured on it, not on ours."""
        return float(self._call("GET", "/clock")["now"])

    def finished(self, *, since: float, limit: int = 1000) -> list[Timing]:
        rows = self._call("GET", "/finished", params={"since": since, "limit": limit})
        return [timing_from_json(row) for row in rows]

    def throughput(self, *, since: float, bucket: int = 60) -> list[FinishedCount]:
        rows = self._call("GET", "/throughput", params={"since": since, "bucket": bucket})
        return [FinishedCount(float(r["at"]), State(r["status"]), int(r["count"])) for r in rows]

    def recent_failures(self, *, limit: int = 20) -> list[FailureEvent]:
        rows = self._call("GET", "/failures", params={"limit": limit})
        return [FailureEvent(event_from_json(row), row["queue"]) for row in rows]

    def counters(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = self._call("GET", "/counters")
        return counts

    def storage(self) -> StorageInfo:
        data = self._call("GET", "/storage")
        return StorageInfo(**{name: data[name] for name in StorageInfo.__slots__})

    def check(self, *, full: bool = False) -> dict[str, Any]:
        """The server's database check (``full`` reads every page)."""
        report: dict[str, Any] = self._call("GET", "/check", params={"full": full})
        return report

    # -- HTTP ----------------------------------------------------------------------------

    def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        safe: bool | None = None,
        timeout: float | None = None,
    ) -> Any:
        """One API call; the decoded JSON (None for 204). ``safe``: may be resent after it
        was sent without an answer (GETs are)."""
        resend = method == "GET" if safe is None else safe
        kwargs: dict[str, Any] = {"params": params, "timeout": timeout or self.timeout}
        if method != "GET" and method != "DELETE":
            kwargs["content"] = _encode(body)
            kwargs["headers"] = {"Content-Type": "application/json"}
        for attempt in range(self.retries + 1):
            try:
                response = self._client.request(method, path, **kwargs)
                break
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                failure: Exception = exc  # never reached the server: always safe to retry
            except httpx.TransportError as exc:
                if not resend:
                    raise StorageUnavailable(
                        f"{method} {self.base_url}{path}: {type(exc).__name__}: {exc} "
                        "(sent, no answer; not retried as it may have taken effect)"
                    ) from None
                failure = exc
            if attempt == self.retries:
                raise StorageUnavailable(
                    f"{self.base_url} unreachable after {attempt + 1} tries: "
                    f"{type(failure).__name__}: {failure}"
                ) from None
            time.sleep(min(2.0, 0.1 * 2**attempt))
        if response.status_code == 204:
            return None
        if response.is_success:
            return response.json()
        raise _error(response)


def _error(response: httpx.Response) -> QueueError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {"detail": response.text[:300] or response.reason_phrase}
    if response.status_code == 401:
        fallback: type[QueueError] = Unauthorized
    elif response.status_code >= 500:
        fallback = StorageUnavailable
    else:
        fallback = QueueError
    return _restored(body, fallback)


def _restored(body: dict[str, Any], fallback: type[QueueError]) -> QueueError:
    """The error of the API's error JSON ``body``, as the library raises it (``fallback``
    for a code this client does not know)."""
    kind = ERROR_CODES.get(str(body.get("code", "")), fallback)
    return kind.restore(str(body.get("detail", "")), body)


def _answer(row: dict[str, Any]) -> Job | QueueError:
    """One item of a batch's answer: the job, or its own error as the library raises it."""
    return _restored(row, QueueError) if "code" in row else job_from_json(row)


def _encode(body: Any) -> bytes:
    """The request body, refusing what JSON cannot hold here, as the library does."""
    try:
        return json.dumps(body, ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidJob(f"payload is not JSON: {exc}") from None


def _filter_json(where: JobFilter | None) -> dict[str, Any]:
    """The filter as the API takes it, checked here first (the same refusal as locally)."""
    flt = JobFilter() if where is None else where.checked()
    return {
        "queue": flt.queue,
        "states": [s.value for s in flt.states],
        "text": flt.text,
        "task": flt.task,
        "created_from": _iso(flt.created_from),
        "created_to": _iso(flt.created_to),
        "max_id": flt.max_id,
    }


def _lease(job: Job) -> dict[str, Any]:
    if not job.lease_token:
        raise LeaseLost(job.id)  # not a copy from claim/heartbeat: the caller holds no lease
    return {"lease_token": job.lease_token}


def _name(queue: str) -> str:
    return quote(validate_queue_name(queue), safe="")


def _id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidJob(f"job id must be a positive integer, got {value!r}")
    return value


def _iso(value: datetime | None) -> str | None:
    """A time for the API; a naive one goes as it is, for the server to refuse clearly."""
    return None if value is None else value.isoformat()


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


#: A job as the API sends it (model.Job.from_dict reads what Job.to_dict wrote).
job_from_json = Job.from_dict


def timing_from_json(data: dict[str, Any]) -> Timing:
    return Timing(
        queue=data["queue"],
        status=State(data["status"]),
        run_at=float(data["run_at"]),
        started_at=float(data["started_at"]),
        finished_at=float(data["finished_at"]),
    )


def event_from_json(data: dict[str, Any]) -> Event:
    at = _time(data["at"])
    assert at is not None
    return Event(
        id=data["id"],
        job_id=data["job_id"],
        at=at,
        kind=EventKind(data["kind"]),
        worker=data["worker"],
        detail=data["detail"],
    )


def queue_from_json(data: dict[str, Any]) -> QueueInfo:
    created = _time(data["created_at"])
    assert created is not None
    return QueueInfo(
        name=data["name"],
        paused=bool(data["paused"]),
        created_at=created,
        concurrency=data.get("concurrency"),
        rate=data.get("rate"),
    )


def worker_from_json(data: dict[str, Any]) -> WorkerInfo:
    started, seen = _time(data["started_at"]), _time(data["last_seen_at"])
    assert started is not None and seen is not None
    return WorkerInfo(
        id=data["id"],
        queues=tuple(data["queues"]),
        started_at=started,
        last_seen_at=seen,
        job_ids=tuple(data["job_ids"]),
    )
