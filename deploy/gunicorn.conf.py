"""gunicorn settings for a deployed study: `gunicorn -c deploy/gunicorn.conf.py 'study:create_app()'`.

Set STUDY_DATABASE_URL (PostgreSQL for more than one machine) and STUDY_SECRET_KEY in the environment.

Threads per worker depend on the database (benchmarks/RESULTS.md, "Study server"): SQLite lets one
writer in at a time, and a second thread in the same process only holds the GIL while the writer
waits for it, so each worker serves one request at a time (the gthread worker still keeps every
participant's connection alive); PostgreSQL answers over the network, and threads overlap those
round trips.
"""
import multiprocessing
import os
import re

from gunicorn.glogging import Logger

_sqlite = os.environ.get("STUDY_DATABASE_URL", "sqlite").startswith("sqlite")

bind = os.environ.get("STUDY_BIND", "127.0.0.1:8000")
worker_class = "gthread"
workers = int(os.environ.get("STUDY_WORKERS", multiprocessing.cpu_count() * 2 + 1))
threads = int(os.environ.get("STUDY_THREADS", 1 if _sqlite else 4))
backlog = 2048
timeout = 30
graceful_timeout = 20
# nginx in front logs every request already (its default access log); STUDY_ACCESS_LOG=- logs here too.
accesslog = os.environ.get("STUDY_ACCESS_LOG") or None
_SESSION_TOKEN = re.compile(r"/s/[^/?\s]+")


class TokenlessLogger(Logger):
    """Access log lines with the participant's session token cut out of /s/<token>/… paths: the
    token is the key to their session, and logs are read by more people than the database."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U"):
            if isinstance(atoms.get(key), str):
                atoms[key] = _SESSION_TOKEN.sub("/s/-", atoms[key])
        return atoms


logger_class = TokenlessLogger
forwarded_allow_ips = os.environ.get("STUDY_FORWARDED_ALLOW_IPS", "127.0.0.1")
# gunicorn's control socket (for gunicornc) defaults to one path per user, $HOME/.gunicorn/gunicorn.ctl: a
# second instance on the host unlinks the first's socket and binds its own, so gunicornc reaches the wrong
# server, and whichever stops first deletes the other's. Off unless STUDY_CONTROL_SOCKET names a path of
# this instance's own (systemd's signals do everything the deployment needs).
control_socket_disable = not os.environ.get("STUDY_CONTROL_SOCKET")
if not control_socket_disable:
    control_socket = os.environ["STUDY_CONTROL_SOCKET"]
