"""A minimal HTTP participant: walks the real flow (entry, consent, instructions, trials,
completion) the way the browser page does, for tests and benchmarks.

It keeps one keep-alive connection, gives each answer a client id once and reuses it on every
retry (like the page's outbox), and is as patient as the page: a connection failure or a 5xx
(a restart, a 502 from nginx, a 503 for a held lock) is retried with exponential back-off and
jitter until `retry_for` seconds pass without a usable answer, so a bot survives a server or
database restart. Every POST of the flow is safe to repeat (consent resumes the participant's
session, an answer's client id makes its retry a no-op, completion is idempotent).
`flask --app study simulate` runs many of these.
"""
from __future__ import annotations

import html
import http.client
import json
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlencode, urlsplit

HIDDEN_INPUT = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')
STUDY_DATA = re.compile(r'<script id="study-data" type="application/json">(.*?)</script>', re.S)
COMPLETION_CODE = re.compile(r'id="completion-code">([^<]+)<')
ERROR_MESSAGE = re.compile(r'id="message">([^<]*)<')


class DriverError(RuntimeError):
    pass


class StudyFullReply(DriverError):
    """The server answered with its "study is full" page (the server side is study.assignment.StudyFull)."""


class ServerUnavailable(DriverError):
    """No usable answer (a connection or a 5xx) for `retry_for` seconds."""


# Long enough to ride out a restart of gunicorn or PostgreSQL on these machines (a few seconds
# to tens of seconds under load); the page retries for as long as it stays open.
DEFAULT_RETRY_FOR = 120.0
FIRST_RETRY_S = 0.1
MAX_RETRY_S = 5.0


def backoff(attempt: int, rng: random.Random, retry_after: str | None = None) -> float:
    """Seconds to wait before retry number `attempt` (0-based): doubling from FIRST_RETRY_S up
    to MAX_RETRY_S, with ±50% jitter so that bots cut off together do not return in step; a
    server's Retry-After (seconds) is honoured up to the same cap."""
    if retry_after and retry_after.strip().isdigit():
        return min(float(retry_after), MAX_RETRY_S) * rng.uniform(1.0, 1.5)
    return min(FIRST_RETRY_S * 2 ** attempt, MAX_RETRY_S) * rng.uniform(0.5, 1.5)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()

    @property
    def message(self) -> str:
        """The readable part of an error reply: the message of an error page, else the body's start."""
        found = ERROR_MESSAGE.search(self.text)
        return html.unescape(found.group(1)) if found else self.text[:300]


def label_count(data: dict[str, Any]) -> int:
    """How many labels the trial page offers (its class names; a page without them, from a server
    older than class names, offers the ten digits)."""
    return len(data.get("classes", range(10)))


def random_choice(rng: random.Random) -> Callable[[dict[str, Any], dict[str, Any]], int]:
    """An answer model at chance: any class, any scale point."""
    def choose(trial: dict[str, Any], data: dict[str, Any]) -> int:
        if trial["task"] == "label":
            return rng.randrange(label_count(data))
        return rng.randint(data["rating"]["min"], data["rating"]["max"])
    return choose


@dataclass
class Participant:
    base_url: str
    study: str
    params: dict[str, str] = field(default_factory=dict)
    retry_for: float = DEFAULT_RETRY_FOR
    seed: int | None = None
    client: Any = None  # a Flask test client to use instead of HTTP (in-process tests)
    token_path: str | None = None  # /s/<token>, known after consent
    data: dict[str, Any] | None = None  # the trial page's embedded data
    acked: dict[int, str] = field(default_factory=dict)  # trial index -> client id the server acknowledged
    client_ids: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        parts = urlsplit(self.base_url)
        self._host, self._port = parts.hostname, parts.port or 80
        self._conn: http.client.HTTPConnection | None = None
        self.rng = random.Random(self.seed)
        self._jitter = random.Random()  # apart from self.rng, so retries never change a seeded bot's answers

    # --- transport ------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
        """One request; reconnects and retries on connection errors and 5xx replies until
        `retry_for` seconds pass without a usable reply (then ServerUnavailable)."""
        if self.client is not None:
            resp = self.client.open(path, method=method, data=body, headers=headers or {})
            return Reply(resp.status_code, {k.lower(): v for k, v in resp.headers.items()}, resp.get_data())
        deadline, attempt = time.monotonic() + self.retry_for, 0
        while True:
            retry_after, problem = None, ""
            try:
                if self._conn is None:
                    self._conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
                self._conn.request(method, path, body=body, headers=headers or {})
                resp = self._conn.getresponse()
                reply = Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
                if reply.headers.get("connection", "").lower() == "close":
                    self.close()
                if reply.status < 500:
                    return reply
                retry_after, problem = reply.headers.get("retry-after"), f"HTTP {reply.status}: {reply.message[:120]}"
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            left = deadline - time.monotonic()
            if left <= 0:
                raise ServerUnavailable(f"{method} {path.split('?')[0]}: no usable reply for {self.retry_for:.0f} s "
                                        f"(last: {problem})")
            time.sleep(min(backoff(attempt, self._jitter, retry_after), left))
            attempt += 1

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def get(self, path: str) -> Reply:
        """GET, following redirects within the site."""
        for _ in range(5):
            reply = self.request("GET", path)
            if reply.status not in (301, 302, 303, 307, 308):
                return reply
            path = self._local(reply.headers["location"])
        raise DriverError(f"too many redirects at {path}")

    def post_form(self, path: str, fields: dict[str, str]) -> Reply:
        reply = self.request("POST", path, urlencode(fields).encode(), {"Content-Type": "application/x-www-form-urlencoded"})
        if reply.status == 303:
            return self.get(self._local(reply.headers["location"]))
        return reply

    def post_json(self, path: str, payload: Any) -> Reply:
        return self.request("POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"})

    def _local(self, location: str) -> str:
        parts = urlsplit(location)
        if parts.path.startswith("/s/"):
            self.token_path = "/".join(parts.path.split("/")[:3])
        return parts.path + (f"?{parts.query}" if parts.query else "")

    @staticmethod
    def _expect(reply: Reply, what: str, status: int = 200) -> Reply:
        if reply.status != status:
            raise DriverError(f"{what}: HTTP {reply.status}: {reply.message}")
        return reply

    # --- the flow -------------------------------------------------------------------------------
    def start(self) -> None:
        """Entry, consent, instructions; ends on the trial page with its data loaded."""
        entry = self._expect(self.get(f"/study/{self.study}?{urlencode(self.params)}"), "entry")
        if self.token_path is None and "The study is full" in entry.text:
            raise StudyFullReply(f"study {self.study} is full")
        if self.token_path is None:  # not a resumed participant: consent first
            fields = {k: html.unescape(v) for k, v in HIDDEN_INPUT.findall(entry.text)}
            entry = self._expect(self.post_form(f"/study/{self.study}/consent", {**fields, "choice": "agree"}), "consent")
            if self.token_path is None and "The study is full" in entry.text:
                raise StudyFullReply(f"study {self.study} is full")
        if "study-data" not in entry.text:
            fields = {k: html.unescape(v) for k, v in HIDDEN_INPUT.findall(entry.text)}
            entry = self._expect(self.post_form(f"{self.token_path}/instructions", fields), "instructions")
        self.load_task(entry)

    def load_task(self, page: Reply | None = None) -> None:
        page = page or self._expect(self.get(f"{self.token_path}/task"), "task page")
        found = STUDY_DATA.search(page.text)
        if not found:
            raise DriverError(f"no trial data on {self.token_path}/task")
        self.data = json.loads(found.group(1))
        self.acked.update({i: self.acked.get(i, "") for i in self.data["answered"]})

    def pending(self) -> list[int]:
        return [t["i"] for t in self.data["trials"] if t["i"] not in self.acked]

    def answer(self, index: int, response: int | None = None) -> Reply:
        """Post one answer; 2xx marks it acknowledged. The client id is fixed per trial."""
        trial = self.data["trials"][index]
        if response is None:
            response = random_choice(self.rng)(trial, self.data)
        client_id = self.client_ids.setdefault(index, uuid.uuid4().hex)
        now_ms = time.time() * 1000
        rt = self.rng.uniform(300, 1500)
        reply = self.post_json(self.data["answers_url"], {
            "client_id": client_id, "trial_index": index, "stimulus": trial["stimulus"], "response": response,
            "rt_ms": rt, "presented_at": now_ms - rt, "responded_at": now_ms,
        })
        if reply.status in (200, 201):
            self.acked[index] = client_id
        return reply

    def complete(self) -> str:
        reply = self._expect(self.post_json(self.data["complete_url"], {}), "complete")
        page = self._expect(self.get(self._local(reply.json()["next"])), "debrief")
        return COMPLETION_CODE.search(page.text).group(1)

    def withdraw(self) -> None:
        page = self._expect(self.get(f"{self.token_path}/withdraw"), "withdraw page")
        fields = {k: html.unescape(v) for k, v in HIDDEN_INPUT.findall(page.text)}
        self._expect(self.post_form(f"{self.token_path}/withdraw", fields), "withdraw")

    def run(self, choose: Callable[[dict[str, Any], dict[str, Any]], int] | None = None) -> str:
        """The whole session at machine speed; returns the completion code."""
        if self.data is None:
            self.start()
        for index in self.pending():
            trial = self.data["trials"][index]
            reply = self.answer(index, choose(trial, self.data) if choose else None)
            if reply.status not in (200, 201):
                raise DriverError(f"answer {index}: HTTP {reply.status}: {reply.text[:300]}")
        return self.complete()
