"""The engine of the long jobs: fresh start, resume after a kill, each step recorded, every
error (an OSError after the stop too) handed to the job's way back; and state files written by
the code before the engine, resumed by the jobs on it."""

import json

import pytest

from mmhelper.jobs import db_migrate, db_move, engine, files_move
from mmhelper.parts.common import Failure


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A job's files in a scratch folder, and systemctl recorded instead of run."""
    calls = []
    monkeypatch.setattr(engine, "systemctl", lambda *a: calls.append(a))
    monkeypatch.setattr(files_move, "systemctl", lambda *a: calls.append(a))
    spec = {"lock_file": str(tmp_path / "job.lock"), "state_file": str(tmp_path / "job.json"), "service": "mattermost"}
    return spec, calls


class Toy(engine.Job):
    what, noun = "a toy job", "toy job"
    broken = None

    def steps(self):
        return [engine.Step("copy", lambda job: {"copy_s": 1.0}), engine.Step("stop", lambda job: job.stop("1.0")),
                engine.Step("switch", Toy.switch), engine.Step("start", lambda job: {"outage_s": job.outage()})]

    def switch(self):
        if self.broken:
            raise self.broken

    def failed(self, error, reason):
        if self.done("stop"):
            engine.systemctl("start", "mattermost")
        self.progress.save(status="failed", failed=reason)
        return Failure(f"the toy failed ({reason}); started again")

    def finish(self):
        self.progress.save(status="done")


def test_steps_run_in_order_and_are_recorded(world, capsys):
    spec, calls = world
    engine.run(Toy(spec))
    state = json.load(open(spec["state_file"]))
    assert state["status"] == "done" and state["done"] == ["copy", "stop", "switch", "start"]
    assert state["copy_s"] == 1.0 and state["outage_s"] >= 0 and "stopped_at" in state
    assert calls == [("stop", "mattermost")]
    assert "[2/4] stop: done" in capsys.readouterr().out


def test_an_oserror_after_the_stop_goes_the_jobs_way_back(world):
    spec, calls = world
    job = Toy(spec)
    job.broken = OSError(28, "No space left on device")
    with pytest.raises(Failure, match=r"the toy failed \(OSError: \[Errno 28\] No space left on device\); started"):
        engine.run(job)
    assert calls == [("stop", "mattermost"), ("start", "mattermost")]
    assert json.load(open(spec["state_file"]))["status"] == "failed"


def test_a_killed_run_goes_on_from_its_last_finished_step(world, capsys):
    spec, calls = world
    json.dump({"status": "running", "done": ["copy", "stop"], "stopped_at": 1.0}, open(spec["state_file"], "w"))
    engine.run(Toy(spec))
    out = capsys.readouterr().out
    assert "continuing the unfinished toy job (done: copy, stop)" in out and "stop: done" not in out
    assert calls == []  # not stopped a second time


def test_a_second_run_is_refused_while_the_first_holds_the_lock(world):
    spec, _ = world
    held = engine.take_lock(spec["lock_file"], "a toy job")
    try:
        with pytest.raises(Failure, match="a toy job is running"):
            engine.run(Toy(spec))
    finally:
        held.close()


def test_the_file_move_starts_mattermost_again_after_an_oserror_past_the_stop(world, monkeypatch):
    """The drift that was a defect: the file move caught only Failure, so an OSError after its
    stop step left Mattermost stopped."""
    spec, calls = world
    spec.update(to="s3", install_dir="/opt/mattermost", data_dir="/var/lib/mattermost/data", bucket="chat")
    monkeypatch.setattr(files_move, "make_plan", lambda spec, locked: {"refusals": []})
    monkeypatch.setattr(files_move, "rclone", lambda spec, *args, label: 0.5)

    def full_disk(spec, driver):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files_move, "_switch", full_disk)
    with pytest.raises(Failure, match="OSError"):
        files_move.move(spec)
    assert calls == [("stop", "mattermost"), ("start", "mattermost")]
    state = json.load(open(spec["state_file"]))
    assert state["status"] == "running" and state["done"] == ["copy"]  # the next run stops again


# State files as the code before the engine wrote them (its Progress.save calls), each killed
# in the middle of its outage: the jobs on the engine go on from the step after.
BEFORE_THE_ENGINE = {
    "db-migrate": {"status": "running", "version": "5.39.0", "started": 1764800000.0, "done": [
        "backup", "postgresql", "schema", "stop"], "mysql": {"user": "mmuser", "database": "mattermost"},
        "extra": [], "made_database": "mattermost", "backup": "20261201-101010-pre-migration", "schema_s": 3.1,
        "schema": "ab12", "stopped_at": 1764800100.0},
    "move-files": {"status": "running", "to": "s3", "started": 1764800000.0, "done": ["copy", "stop"],
                   "copy_s": 2.5, "stopped_at": 1764800100.0},
    "move-database": {"status": "running", "version": "11.4.0", "started": 1764800000.0, "done": [
        "prepare", "schema", "subscribe", "stop"], "made_remote": True, "bytes": 1000, "method": "replication",
        "prepare_outage_s": None, "tables": 90, "copy_s": 4.0, "stopped_at": 1764800100.0},
}


def resumed(job_class, spec, state, monkeypatch):
    """The steps the job on the engine runs for `state` (each step recorded, none done twice)."""
    json.dump(state, open(spec["state_file"], "w"))
    ran = []
    job = job_class(spec)
    for step in job.steps():
        monkeypatch.setattr(job_class, step.run.__name__, lambda self, name=step.name: ran.append(name) or {})
    engine.run(job_class(spec))
    return ran, json.load(open(spec["state_file"]))


def test_state_files_of_the_code_before_the_engine_are_resumed(world, monkeypatch, capsys):
    spec, _ = world
    spec.update(to="s3", install_dir="/opt/mattermost", data_dir="/d", bucket="b", remote={"host": "db.internal"},
                mysql_datasource_file="/nonexistent", config_file="/nonexistent", work_dir=spec["state_file"] + ".d")
    monkeypatch.setattr(db_migrate.Migration, "finished_before", lambda self: None)
    monkeypatch.setattr(db_migrate.Migration, "finish", lambda self: self.progress.save(status="done"))
    monkeypatch.setattr(files_move.FilesMove, "finish", lambda self: self.progress.save(status="done"))
    monkeypatch.setattr(db_move.DatabaseMove, "finished_before", lambda self: None)
    monkeypatch.setattr(db_move.DatabaseMove, "finish", lambda self: self.progress.save(status="done"))
    ran, state = resumed(db_migrate.Migration, spec, BEFORE_THE_ENGINE["db-migrate"], monkeypatch)
    assert ran == ["copy", "verify", "switch", "start"] and state["status"] == "done"
    assert state["done"] == ["backup", "postgresql", "schema", "stop", "copy", "verify", "switch", "start"]
    ran, _ = resumed(files_move.FilesMove, spec, BEFORE_THE_ENGINE["move-files"], monkeypatch)
    assert ran == ["final copy", "switch", "start", "verify"]
    ran, _ = resumed(db_move.DatabaseMove, spec, BEFORE_THE_ENGINE["move-database"], monkeypatch)
    assert ran == ["catch-up", "sequences", "verify", "switch", "start", "cleanup"]
    out = capsys.readouterr().out
    assert "continuing the unfinished migration (done: backup, postgresql, schema, stop)" in out
    assert "continuing the unfinished move (done: copy, stop)" in out
