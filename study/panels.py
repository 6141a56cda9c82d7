"""Panel adapters: read who the participant is from the entry URL (Prolific, MTurk, plain link).

Every id is normalised before use (Unicode NFKC), and refused unless the whole value is made of
safe characters (no whitespace or control characters: `fullmatch`, so a trailing newline cannot
slip past an anchor). Who the participant is, for "one session per person", is the id's
`identity`: case-folded (Prolific and MTurk ids are case-insensitive; plain-link ids are treated
the same way) and reduced to its letters and digits, so `ALICE001`, `alice001.` and `alice001`
are one person on every panel.

A missing MTurk worker id or `assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE` means MTurk is showing a
preview; `?preview=1` asks for the same on any panel. A preview renders the study description and
writes nothing.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlencode

PROLIFIC_KEYS = ("PROLIFIC_PID", "STUDY_ID", "SESSION_ID")
MTURK_KEYS = ("workerId", "assignmentId", "hitId", "turkSubmitTo")
LINK_KEYS = ("participant",)
MARK_KEY = "mark"  # a signed bot/pilot flag (study.security.session_mark), on any panel
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"
SAFE_ID = re.compile(r"[A-Za-z0-9._:/@+-]{1,200}")  # always used with fullmatch
# The panel's id of this one submission, which only the participant's own link carries.
SUBMISSION_KEY = {"prolific": "SESSION_ID", "mturk": "assignmentId"}
PROLIFIC_COMPLETE = "https://app.prolific.com/submissions/complete?"
# Only MTurk's own hosts may receive the completion form (the parameter comes from the URL).
MTURK_SUBMIT = re.compile(r"^https://(www|workersandbox)\.mturk\.com/?$")


class EntryError(ValueError):
    pass


@dataclass(frozen=True)
class Entry:
    panel: str  # prolific | mturk | link
    raw_id: str | None  # the panel's participant id; None for an anonymous plain link
    ids: dict[str, str]  # every panel parameter given, kept for payment
    preview: bool
    mark: str | None = None  # unverified: the consent step checks its signature

    @property
    def identity(self) -> str | None:
        """The person behind `raw_id`, the same on every panel (see the module docstring)."""
        return identity(self.raw_id) if self.raw_id else None

    @property
    def submission(self) -> str | None:
        return self.ids.get(SUBMISSION_KEY.get(self.panel, ""))


def identity(raw_id: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKC", raw_id).casefold() if c.isalnum())


def parse_entry(args: Mapping[str, str]) -> Entry:
    """Raises EntryError (shown as a 400 page) for malformed ids."""
    args = {key: unicodedata.normalize("NFKC", args[key]) for key in (*PROLIFIC_KEYS, *MTURK_KEYS, *LINK_KEYS, MARK_KEY, "preview")
            if args.get(key) is not None}
    for key, value in args.items():
        if not SAFE_ID.fullmatch(value) or (key != MARK_KEY and not identity(value)):
            raise EntryError(f"The link's {key} parameter is not a valid id. Please use the link from the recruiting site unchanged.")
    if args.get("turkSubmitTo") and not MTURK_SUBMIT.match(args["turkSubmitTo"]):
        raise EntryError("The link's turkSubmitTo parameter is not an MTurk address.")
    wants_preview = args.get("preview") == "1"
    if any(args.get(k) for k in PROLIFIC_KEYS):
        if not args.get("PROLIFIC_PID"):
            raise EntryError("The link has Prolific parameters but no PROLIFIC_PID. Please open the study from Prolific again.")
        ids = {k: args[k] for k in PROLIFIC_KEYS if args.get(k)}
        return Entry("prolific", args["PROLIFIC_PID"], ids, wants_preview, args.get(MARK_KEY))
    if any(args.get(k) for k in MTURK_KEYS):
        ids = {k: args[k] for k in MTURK_KEYS if args.get(k)}
        preview = wants_preview or args.get("assignmentId") in (None, MTURK_PREVIEW) or not args.get("workerId")
        return Entry("mturk", args.get("workerId"), ids, preview, args.get(MARK_KEY))
    participant = args.get("participant")
    return Entry("link", participant, {"participant": participant} if participant else {}, wants_preview, args.get(MARK_KEY))


def completion_target(panel: str, ids: Mapping[str, str], code: str) -> dict[str, str] | None:
    """Where a finished participant goes: a Prolific redirect URL or an MTurk externalSubmit form."""
    if panel == "prolific":
        return {"method": "get", "url": PROLIFIC_COMPLETE + urlencode({"cc": code})}
    if panel == "mturk" and ids.get("turkSubmitTo") and ids.get("assignmentId"):
        return {"method": "post", "url": ids["turkSubmitTo"].rstrip("/") + "/mturk/externalSubmit",
                "assignmentId": ids["assignmentId"]}
    return None
