"""The Manager web UI, run by Streamlit's AppTest against a real SQLite file.

Every action is checked in the database afterwards, not on the page alone.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from ui_support import (
    app,
    button,
    failed_job,
    login,
    select_rows,
    table,
    texts,
    unprocessable_job,
)

import persistq
from persistq import ManualClock, Queue, State
from persistq.credentials import SESSIONS_FILE, THROTTLE_FILE
from persistq.tasks.files import stamp_payload


@pytest.fixture
def manager(queue: Queue) -> AppTest:
    """The Manager, logged in."""
    at = login(app("manager"))
    assert not at.exception, at.exception
    return at


def go(at: AppTest, page: str) -> AppTest:
    return at.radio(key="nav").set_value(page).run()


# -- login -----------------------------------------------------------------------------------


def test_the_right_password_opens_the_jobs_page(queue: Queue) -> None:
    queue.enqueue({"n": 1})
    at = app("manager").run()
    assert at.text_input(key="login_password")  # nothing but the login form yet
    assert not at.dataframe
    login(at)
    assert not at.exception
    assert "Jobs" in [h.value for h in at.header]
    assert list(table(at)["status"]) == ["PENDING"]


def test_a_wrong_password_is_refused_and_the_next_try_must_wait(queue: Queue) -> None:
    at = login(app("manager"), "not the password")
    assert "Wrong password" in texts(at)
    assert not at.header
    login(at)  # at once, even with the right password: refused
    assert "Too many failed attempts" in texts(at)
    assert not at.header
    time.sleep(1.1)  # the first failure costs one second
    login(at)
    assert at.header, texts(at)


def signed_in(at: AppTest) -> bool:
    return any(b.label == "Log out" for b in at.button)


def age_sign_ins(directory: Path, field: str, seconds: float) -> None:
    """Move every sign-in's ``field`` (since: the login; seen: the last click) back."""
    path = directory / SESSIONS_FILE
    records = json.loads(path.read_text())
    for record in records.values():
        record[field] -= seconds
    path.write_text(json.dumps(records))


def test_log_out_and_an_expired_session_ask_for_the_password_again(
    manager: AppTest, tmp_path: Path
) -> None:
    button(manager, "Log out").click()
    manager.run()
    assert manager.text_input(key="login_password")
    assert not json.loads((tmp_path / SESSIONS_FILE).read_text())  # ended for every tab
    login(manager)
    age_sign_ins(tmp_path, "since", 8 * 3600 + 1)  # past the 8 h limit
    manager.run()
    assert "session expired" in texts(manager)
    assert not manager.dataframe


def test_an_idle_manager_asks_again_while_the_ops_ui_of_the_same_sign_in_stays(
    manager: AppTest, tmp_path: Path
) -> None:
    """Idle means no click in the Manager for 30 min; the Ops page refreshing by itself is
    not a person there, so the same sign-in (one cookie for both) goes on there."""
    token = manager.session_state["_persistq_auth"]["token"]
    age_sign_ins(tmp_path, "seen", 29 * 60)
    manager.run()  # a click inside the limit: not idle, and seen again now
    assert signed_in(manager)
    age_sign_ins(tmp_path, "seen", 30 * 60 + 1)
    ops = app("ops")
    ops.session_state["_persistq_auth"] = {"token": token, "since": 0.0}  # as its cookie
    ops.run()
    assert signed_in(ops) and ops.metric, texts(ops)
    manager.run()
    assert "session expired" in texts(manager)
    assert not signed_in(manager)
    login(manager)  # signs the same sign-in in afresh: the Ops tab keeps it
    assert manager.session_state["_persistq_auth"]["token"] == token
    assert signed_in(ops.run())


def test_a_generated_password_works_and_none_is_the_default(
    queue: Queue,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("PERSISTQ_ADMIN_PASSWORD")
    at = app("manager").run()
    announced = capsys.readouterr().err
    generated = announced.split("web UIs: ")[1].split()[0]
    assert (tmp_path / "ui-admin-password.argon2").stat().st_mode & 0o777 == 0o600
    for guess in ("", "admin", "password", "persistq"):
        at = login(app("manager"), guess)
        assert not at.header
        (tmp_path / THROTTLE_FILE).unlink()  # forget the throttle: each guess judged on its merits
    login(at, generated)
    assert at.header


# -- resubmit and cancel ---------------------------------------------------------------------


def test_resubmit_and_cancel_of_selected_rows_change_the_database(
    manager: AppTest, queue: Queue
) -> None:
    dead = failed_job(queue)
    waiting = queue.enqueue({"n": 2})
    button(manager, "Refresh").click()
    manager.run()
    select_rows(manager, [dead.id])
    button(manager, "Resubmit selected (1)").click()
    manager.run()
    assert queue.get(dead.id).status == State.PENDING
    assert "Resubmitted 1 job(s)" in texts(manager)
    select_rows(manager, [waiting.id, dead.id])
    button(manager, "Cancel selected (2)").click()
    manager.run()
    assert queue.get(waiting.id).status == State.CANCELLED
    assert queue.get(dead.id).status == State.CANCELLED
    assert set(table(manager)["status"]) == {"CANCELLED"}  # the table was read again


def test_a_refused_transition_is_reported_and_changes_nothing(
    manager: AppTest, queue: Queue
) -> None:
    waiting = queue.enqueue({"n": 1})
    button(manager, "Refresh").click()
    manager.run()
    select_rows(manager, [waiting.id])
    button(manager, "Resubmit selected (1)").click()
    manager.run()
    assert queue.get(waiting.id).status == State.PENDING
    assert "1 refused by their state" in texts(manager)


def test_job_detail_shows_payload_error_and_events_and_resubmits(
    manager: AppTest, queue: Queue
) -> None:
    dead = failed_job(queue, error="Traceback (most recent call last):\nKeyError: 'path'")
    manager.number_input(key="jobs_open").set_value(dead.id).run()
    assert "Status: FAILED" in texts(manager)
    assert manager.code[0].value == "fails()"  # its payload {"task": "fails"} is a task
    assert "KeyError: 'path'" in manager.code[1].value
    assert '"fails"' in str(manager.json[0].value)
    events = table(manager, -1)
    assert list(events["event"]) == ["enqueued", "claimed", "failed"]
    runs = table(manager, -2)  # the attempts, above every event
    assert list(zip(runs["worker"], runs["outcome"], runs["error"], strict=True)) == [
        ("test-worker", "failed", "KeyError: 'path'")
    ]
    button(manager, "Resubmit").click()
    manager.run()
    assert queue.get(dead.id).status == State.PENDING
    assert f"Job {dead.id} is now PENDING" in texts(manager)
    assert list(table(manager, -1)["event"])[-1] == "resubmitted"


def test_the_jobs_table_updates_by_itself_unless_paused_or_selected(
    manager: AppTest, queue: Queue
) -> None:
    """Issue 15: the table changed only on Refresh. Each live rerun (the fragment's timer
    in a browser) reads it again; the Live toggle pauses it, and so does a selection."""
    first = queue.enqueue({"n": 1})
    manager.run()
    assert list(table(manager)["id"]) == [first.id]
    summary = texts(manager)
    assert ":orange-badge[PENDING] **1**" in summary  # a coloured badge per state
    assert ":green-badge[COMPLETED] **0**" in summary
    manager.toggle(key="jobs_live").set_value(False).run()
    second = queue.enqueue({"n": 2})
    manager.run()
    assert list(table(manager)["id"]) == [first.id]  # paused
    manager.toggle(key="jobs_live").set_value(True).run()
    assert list(table(manager)["id"]) == [second.id, first.id]
    select_rows(manager, [first.id])
    queue.enqueue({"n": 3})
    manager.run()
    assert list(table(manager)["id"]) == [second.id, first.id]  # the selection holds it
    assert [s.value for s in manager.subheader] == [f"Job {first.id}"]  # its detail


# -- filters ---------------------------------------------------------------------------------


def test_filters_narrow_the_table(manager: AppTest, queue: Queue, url: str) -> None:
    now = time.time()
    with persistq.connect(url, clock=ManualClock(start=now - 7200)) as old:
        old_job = old.enqueue({"file": "old-report.txt"}, queue="reports")
    mail = queue.enqueue({"to": "ada@example.com"}, queue="emails")
    report = queue.enqueue({"file": "report-42.txt"}, queue="reports")
    dead = failed_job(queue, queue_name="reports", error="ValueError: no such file")
    button(manager, "Refresh").click()
    manager.run()
    assert len(table(manager)) == 4

    manager.selectbox(key="jobs_queue").set_value("reports").run()
    assert set(table(manager)["id"]) == {old_job.id, report.id, dead.id}
    manager.selectbox(key="jobs_state").set_value("FAILED").run()
    assert list(table(manager)["id"]) == [dead.id]
    manager.selectbox(key="jobs_state").set_value("(all)").run()
    manager.text_input(key="jobs_text").input("REPORT").run()  # payload, any case
    assert set(table(manager)["id"]) == {old_job.id, report.id}
    manager.text_input(key="jobs_text").input("no such file").run()  # the error
    assert list(table(manager)["id"]) == [dead.id]
    manager.text_input(key="jobs_text").input("").run()
    manager.selectbox(key="jobs_period").set_value("last hour").run()
    assert set(table(manager)["id"]) == {report.id, dead.id}
    manager.selectbox(key="jobs_queue").set_value("(all)").run()
    assert set(table(manager)["id"]) == {mail.id, report.id, dead.id}
    manager.selectbox(key="jobs_order").set_value("oldest first").run()
    assert list(table(manager)["id"]) == [mail.id, report.id, dead.id]


def test_pages_of_the_table_show_each_job_once(manager: AppTest, queue: Queue) -> None:
    ids = [j.id for j in queue.enqueue_many([{"n": i} for i in range(60)])]
    manager.selectbox(key="jobs_size").set_value(25).run()
    seen: list[int] = []
    for page in (1, 2, 3):
        manager.number_input(key="jobs_page").set_value(page).run()
        seen.extend(table(manager)["id"])
    assert seen == sorted(ids, reverse=True)
    assert "rows 51–60 of 60 jobs" in texts(manager)


# -- every job that matches ------------------------------------------------------------------


def test_bulk_action_on_all_matching_jobs_changes_exactly_those(
    manager: AppTest, queue: Queue
) -> None:
    target = [failed_job(queue, queue_name="a", error="boom: disk").id for _ in range(5)]
    other_error = [failed_job(queue, queue_name="a", error="other").id for _ in range(3)]
    other_queue = [failed_job(queue, queue_name="b", error="boom: disk").id for _ in range(4)]
    pending = queue.enqueue({"note": "boom"}, queue="a").id
    manager.run()
    manager.selectbox(key="jobs_queue").set_value("a").run()
    manager.selectbox(key="jobs_state").set_value("FAILED").run()
    manager.text_input(key="jobs_text").input("boom").run()
    button(manager, "Count matching jobs").click()
    manager.run()
    assert "**5** job(s) match" in texts(manager)
    assert button(manager, "Resubmit all 5").disabled  # not before confirming
    queue.cancel(target[0])  # changes after the count are respected
    manager.checkbox(key="jobs_sure").check().run()
    button(manager, "Resubmit all 5").click()
    manager.run()
    assert [queue.get(i).status for i in target] == [State.CANCELLED] + [State.PENDING] * 4
    assert {queue.get(i).status for i in other_error + other_queue} == {State.FAILED}
    assert queue.get(pending).status == State.PENDING
    assert "Resubmitted 4 job(s); 1 skipped: no longer matching." in texts(manager)


def test_bulk_cancel_over_a_text_filter_reads_every_candidate(
    manager: AppTest, queue: Queue
) -> None:
    queue.enqueue_many([{"n": i, "tag": "keep"} for i in range(1500)])
    doomed = [queue.enqueue({"tag": "drop"}).id for _ in range(3)]
    queue.enqueue_many([{"n": i, "tag": "keep"} for i in range(1500)])
    manager.text_input(key="jobs_text").input('"drop"').run()
    button(manager, "Count matching jobs").click()
    manager.run()
    assert "**3** job(s) match" in texts(manager)
    manager.checkbox(key="jobs_sure").check().run()
    button(manager, "Cancel all 3").click()
    manager.run()
    assert {queue.get(i).status for i in doomed} == {State.CANCELLED}
    assert queue.stats()["queues"]["default"]["CANCELLED"] == 3


def test_bulk_buttons_count_only_the_jobs_their_action_applies_to(
    manager: AppTest, queue: Queue
) -> None:
    """Issue 15: with every state, "Resubmit all" counted PENDING jobs it cannot resubmit."""
    dead = [failed_job(queue).id for _ in range(2)]
    waiting = [j.id for j in queue.enqueue_many([{"n": i} for i in range(3)])]
    done = queue.claim(worker="w")
    assert done is not None
    queue.complete(done)
    manager.run()
    button(manager, "Count matching jobs").click()
    manager.run()
    assert "**5** job(s) match" in texts(manager)
    assert button(manager, "Resubmit all").label == "Resubmit all 3"  # 2 FAILED, 1 COMPLETED
    assert button(manager, "Cancel all").label == "Cancel all 4"  # 2 FAILED, 2 PENDING
    manager.checkbox(key="jobs_sure").check().run()
    button(manager, "Resubmit all").click()
    manager.run()
    assert "Resubmitted 3 job(s)." in texts(manager)  # none refused: none was counted
    assert {queue.get(i).status for i in [*dead, done.id]} == {State.PENDING}
    assert {queue.get(i).status for i in waiting} == {State.PENDING}


# -- enqueue, queues, dead letters -------------------------------------------------------------


def test_enqueue_validates_json_and_stores_the_options(manager: AppTest, queue: Queue) -> None:
    go(manager, "Enqueue")
    manager.radio(key="enqueue_kind").set_value("A raw JSON payload").run()
    manager.text_area(key="enqueue_payload").input("{not json")  # sent with the form
    button(manager, "Enqueue").click()
    manager.run()
    assert "The payload is not JSON" in texts(manager)
    assert queue.jobs() == []
    manager.text_input(key="enqueue_queue").input("mail")
    manager.text_area(key="enqueue_payload").input('{"to": "ada"}')
    manager.number_input(key="enqueue_prio").set_value(7)
    manager.number_input(key="enqueue_delay").set_value(60.0)
    manager.text_input(key="enqueue_key").input("ada-1")
    button(manager, "Enqueue").click()
    manager.run()
    [job] = queue.jobs()
    assert (job.queue, job.payload, job.priority, job.key) == ("mail", {"to": "ada"}, 7, "ada-1")
    assert (job.run_at - job.created_at).total_seconds() == pytest.approx(60, abs=1)
    button(manager, "Enqueue").click()  # the same key again: nothing new
    manager.run()
    assert "already has a job with this key" in texts(manager)
    assert len(queue.jobs()) == 1


def test_queues_create_pause_resume_and_delete_only_when_forced(
    manager: AppTest, queue: Queue
) -> None:
    queue.enqueue({"n": 1}, queue="busy")
    queue.set_limits("busy", concurrency=2)
    go(manager, "Queues")
    shown = manager.dataframe[0].value
    assert list(shown["running / limit"]) == ["0 / 2"]
    manager.text_input(key="queue_new").input("spare")
    button(manager, "Create").click()
    manager.run()
    assert {q.name for q in queue.queues()} == {"busy", "spare"}
    manager.selectbox(key="queue_pick").set_value("busy").run()
    button(manager, "Pause").click()
    manager.run()
    assert queue.stats()["queues"]["busy"]["paused"] is True
    button(manager, "Resume").click()
    manager.run()
    assert queue.stats()["queues"]["busy"]["paused"] is False
    manager.text_input(key="queue_confirm").input("busy").run()
    button(manager, "Delete queue").click()
    manager.run()
    assert "holds 1 unfinished job" in texts(manager)
    assert "busy" in {q.name for q in queue.queues()}
    manager.checkbox(key="queue_force").check()
    manager.text_input(key="queue_confirm").input("busy").run()
    button(manager, "Delete queue").click()
    manager.run()
    assert {q.name for q in queue.queues()} == {"spare"}
    assert queue.jobs() == []


def test_dead_letters_keep_failed_and_unprocessable_apart_and_redrive(
    manager: AppTest, queue: Queue, url: str
) -> None:
    dead = failed_job(queue)
    stalled = unprocessable_job(url)
    assert stalled.status == State.UNPROCESSABLE
    go(manager, "Dead letters")
    assert [t.label for t in manager.tabs] == ["FAILED (1)", "UNPROCESSABLE (1)"]
    assert list(table(manager, 0)["id"]) == [dead.id]
    assert list(table(manager, 1)["id"]) == [stalled.id]
    select_rows(manager, [stalled.id], index=1)
    button(manager, "Redrive selected (1)").click()
    manager.run()
    assert queue.get(stalled.id).status == State.PENDING
    assert queue.get(dead.id).status == State.FAILED
    assert "Redriven 1 job(s)." in texts(manager)  # issue 15: it said "Resubmitted"


# -- tasks -----------------------------------------------------------------------------------


def test_the_table_shows_task_and_arguments_and_filters_by_task(
    manager: AppTest, queue: Queue
) -> None:
    stamp = queue.enqueue(stamp_payload("data/files/a.txt"), queue="files")
    mail = queue.enqueue({"task": "send", "args": ["ada"], "kwargs": {"body": "hi"}})
    plain = queue.enqueue({"path": "data/files/b.txt"}, queue="files")
    button(manager, "Refresh").click()
    manager.run()
    shown = table(manager).set_index("id")
    assert shown.loc[stamp.id, "task"] == "stamp_file"
    assert shown.loc[stamp.id, "arguments"] == '"data/files/a.txt"'
    assert shown.loc[mail.id, "arguments"] == '"ada", body="hi"'
    assert (shown.loc[plain.id, "task"], shown.loc[plain.id, "arguments"]) == ("", "")
    manager.text_input(key="jobs_task").input("stamp_file").run()
    assert list(table(manager)["id"]) == [stamp.id]
    manager.text_input(key="jobs_task").input("send").run()
    assert list(table(manager)["id"]) == [mail.id]
    manager.text_input(key="jobs_task").input("").run()
    assert len(table(manager)) == 3


def test_job_detail_shows_the_task_and_its_call(manager: AppTest, queue: Queue) -> None:
    job = queue.enqueue({"task": "send", "args": ["ada"], "kwargs": {"body": "hi"}})
    manager.number_input(key="jobs_open").set_value(job.id).run()
    assert "**Task** send" in texts(manager)
    assert 'send("ada", body="hi")' in [c.value for c in manager.code]


def test_enqueue_a_task_by_name_with_json_arguments(manager: AppTest, queue: Queue) -> None:
    go(manager, "Enqueue")
    for args, kwargs, error in [
        ("[1,", "{}", "The arguments is not JSON"),
        ('{"a": 1}', "{}", "must be a JSON list"),
        ("[]", "[]", "must be a JSON object"),
    ]:
        manager.text_area(key="enqueue_args").input(args)
        manager.text_area(key="enqueue_kwargs").input(kwargs)
        button(manager, "Enqueue").click()
        manager.run()
        assert error in texts(manager)
    manager.text_input(key="enqueue_task").input("")
    manager.text_area(key="enqueue_args").input("[]")
    manager.text_area(key="enqueue_kwargs").input("{}")
    button(manager, "Enqueue").click()
    manager.run()
    assert "task name" in texts(manager)
    assert queue.jobs() == []

    manager.text_input(key="enqueue_queue").input("mail")
    manager.text_input(key="enqueue_task").input("send")
    manager.text_area(key="enqueue_args").input('["ada"]')
    manager.text_area(key="enqueue_kwargs").input('{"body": "hi"}')
    manager.number_input(key="enqueue_prio").set_value(3)
    button(manager, "Enqueue").click()
    manager.run()
    [job] = queue.jobs()
    assert (job.queue, job.priority) == ("mail", 3)
    assert job.payload == {"task": "send", "args": ["ada"], "kwargs": {"body": "hi"}}
    assert f"Enqueued job {job.id}" in texts(manager)
