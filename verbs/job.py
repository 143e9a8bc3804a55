"""make db-migrate | move-files [BACK=1] | move-database, and their way back
(make db-migrate-rollback | move-database-rollback [DISCARD=1]): the job named in the run's
data (`job`, and `job_action=rollback` for the way back), from the registry in verbs/jobs.py,
run (or continued) by the engine on the server; refused before anything where it cannot run.

    pyinfra inventory.py verbs/job.py --data job=db-migrate [--data job_action=rollback]
"""

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.exceptions import DeployError

from tasks import db_move
from tasks.common import current, helper, settings, streamed, upload_secret
from tasks.db_tls import server_certificate
from verbs.jobs import JOBS
from verbs.server_actions import require_deployed, single_server_only


@operation(is_idempotent=False)
def job_ran(subcommand: str, spec: dict, nothing_to_do: str | None):
    """Run (or continue) the job on the server, or its way back."""
    if nothing_to_do:
        host.noop(nothing_to_do)
        return
    yield streamed(helper(subcommand, spec))


@operation(is_idempotent=False)
def link_certificate():
    """A key and certificate from the deploy's CA naming this server's private address, for the
    replication link of the database move (root-only files; the helper hands them to the local
    PostgreSQL)."""
    s = settings()
    cert, key = server_certificate(s.place.ca_dir, s.place.move_source_address)
    yield from upload_secret(key, f"{db_move.TLS_UPLOAD_DIR}/server.key", db_move.TLS_UPLOAD_DIR)
    yield from upload_secret(cert, f"{db_move.TLS_UPLOAD_DIR}/server.crt", db_move.TLS_UPLOAD_DIR)


name, back = host.data.get("job"), host.data.get("job_action") == "rollback"
if name not in JOBS:
    raise DeployError(f"no job {name!r}: one of {', '.join(JOBS)}")
job, s, data = JOBS[name], settings(), host.data.dict()
if job.single_server and not back and single_server_only(job.single_server):
    raise DeployError(single_server_only(job.single_server))
if back:
    require_deployed()
    job_ran(name=job.rollback_name, subcommand=f"{job.helper}-rollback", spec=job.spec(s, data), nothing_to_do=None)
else:
    require_deployed()
    if job.unavailable(s):
        raise DeployError(f"{host.name}: {job.unavailable(s)} (nothing was changed)")
    if name == "move-database":
        if not s.place.move_source_address:
            raise DeployError(f"{host.name}: set db_move_source_address (this server's private address the database "
                              "server subscribes from), then `make deploy` (nothing was changed)")
        link_certificate(name=f"Place the replication link's TLS key and certificate (for {s.place.move_source_address})")
    job_ran(name=job.run_name(s, data), subcommand=job.helper, spec=job.spec(s, data),
            nothing_to_do=job.nothing_to_do(current()))
