"""The study config (TOML): texts, task wording, rating scale, trial counts, lease, target,
panels, completion codes per outcome and payment.

`load_config(path)` returns a `StudyConfig` or raises `ConfigError` listing every problem in one
message, so a researcher fixes a config in one round. Unknown keys are errors: a typo must not
silently fall back to a default. `study/default_study.toml` documents every key.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from study.models import CONDITIONS, TASKS

PANELS = ("prolific", "mturk", "link")

DEFAULT_CONFIG = Path(__file__).with_name("default_study.toml")
# image_scaling's values, each a CSS image-rendering (study.css: .stimulus-frame.<value>).
IMAGE_SCALINGS = ("pixelated", "smooth")
SLUG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

# The numbers the consent, instruction and preview texts may name, filled in from the study's plan
# (study/texts.py); a text writes them as placeholders, never as figures of its own.
PLACEHOLDERS = {
    "n_images": "images a participant sees, practice included",
    "n_practice": "practice images",
    "n_main": "images after the practice",
    "n_questions": "questions per image",
    "n_answers": "answers in all (images × questions)",
    "n_breaks": "breaks offered",
    "break_every": "images between breaks",
    "minutes": "estimated minutes (answers × seconds_per_answer)",
}
# Where the rating question names the attack's target: the class name (a digit in digit studies).
TARGET_PLACEHOLDERS = ("{class}", "{digit}")
PLACEHOLDER = re.compile(r"\{([A-Za-z_]+)\}")
PLACEHOLDER_TEXTS = ("consent", "instructions", "preview")
# A figure written into a text ("about 40 images", "10 minutes") would not follow the plan.
STATED_COUNT = re.compile(r"\b\d+\s+(?:[A-Za-z-]+\s+){0,2}?(?:images?|pictures?|minutes?|mins?|hours?|answers?|questions?"
                          r"|breaks?|trials?|pauses?)\b", re.IGNORECASE)
# Seconds a participant spends per answer, all told. The mean reaction time of the simulated
# participants in analysis/simulate.py is 1.6 s (lognormal label and rating times); the rest covers
# the page moving on, practice feedback, breaks and reading consent and instructions. Set it from
# a pilot: the dashboard shows the measured seconds per answer of completed sessions.
SECONDS_PER_ANSWER = 2.5


class ConfigError(ValueError):
    def __init__(self, where: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{where}: " + "; ".join(problems))


@dataclass(frozen=True)
class RatingScale:
    question: str = "How much does this look like a genuine handwritten {digit}?"
    min: int = 1
    max: int = 5
    anchors: dict[str, str] = field(default_factory=lambda: {"1": "Not at all", "5": "Completely"})


@dataclass(frozen=True)
class Texts:
    consent: str
    instructions: str
    debrief: str
    preview: str = "You will see images of handwritten digits and answer questions about each one."


@dataclass(frozen=True)
class Completion:
    code: str
    declined_code: str
    screened_out_code: str = ""
    withdrawn_code: str = ""  # empty: a withdrawing participant gets no code (and no panel redirect)
    # Came back after the lease ran out and found the place given to someone else (study.leases).
    timed_out_code: str = ""
    # Finished, but failed at least this many catch trials (0 = never): the panel gets this code
    # instead of `code`, so the researcher can tell such submissions apart when approving them.
    failed_checks_after: int = 0
    failed_checks_code: str = ""

    def for_completed(self, catch_failed: int) -> str:
        failed = self.failed_checks_after and catch_failed >= self.failed_checks_after and self.failed_checks_code
        return self.failed_checks_code if failed else self.code


@dataclass(frozen=True)
class Payment:
    """What the payment list (flask --app study payments) computes from the stored answers."""
    currency: str = "GBP"
    base: float = 0.0  # paid to every completed session
    bonus_per_correct_label: float = 0.0  # per main-block label answer naming the true digit


@dataclass(frozen=True)
class Admission:
    """Who may start a session, and how fast (study.admission)."""
    anonymous_link: bool = False  # the plain link without a participant id; see `admission_for`
    new_sessions_per_address_per_hour: int = 20  # counted per client address, marked sessions aside
    new_sessions_per_minute: int = 60  # for the whole study
    start_lease_minutes: float = 5.0  # a place held by a session that has not begun the instructions
    # Sessions one person may have in this study, one after another (1: no repeats). A repeat
    # starts only once the latest has been completed or withdrawn (study.identity.may_repeat).
    sessions_per_person: int = 1

    @property
    def start_lease(self) -> dt.timedelta:
        return dt.timedelta(minutes=self.start_lease_minutes)


@dataclass(frozen=True)
class StudyConfig:
    id: str
    title: str
    texts: Texts
    completion: Completion
    seconds_per_answer: float = SECONDS_PER_ANSWER  # sets the time estimate shown as {minutes}
    target_participants: int = 30
    trials_per_participant: int | None = None  # images in the main block; None = (nearly) one per source
    conditions: tuple[str, ...] | None = None  # None = every condition the stimulus set has
    tasks: tuple[str, ...] = ("label", "rate")  # questions per image, in this order
    catch_rate: float = 0.1  # catch images per main-block image
    practice_trials: int = 3
    break_every: int = 0  # offer a break after this many images; 0 = never
    lease_minutes: float = 30.0
    # Places beyond target_participants that participants returning after their lease ran out may
    # take (study.leases); 0: a returner whose place was given away is turned away, never paid twice.
    overfill_places: int = 0
    screen_out_after_catch_failures: int = 0  # 0 = never screen out
    seed: int = 0  # fixes how sources are split into lists
    label_question: str = "Which digit is this?"
    rating: RatingScale = field(default_factory=RatingScale)
    panels: tuple[str, ...] = PANELS  # where participants may come from
    payment: Payment = field(default_factory=Payment)
    admission: Admission = field(default_factory=Admission)
    # A session finished faster than this per answer, in the server's time from the instructions
    # to its last answer, is screened out (0 = never). Bots marked by the researcher are exempt.
    min_seconds_per_answer: float = 0.5
    keep_panel_ids_days: int = 90  # raw panel ids are for payment; purge-panel-ids drops older ones
    # How the page scales images up to the frame: "pixelated" (no smoothing: every pixel of a
    # perturbation shows) or "smooth" (the browser's smoothing filter, for photographs).
    image_scaling: str = "pixelated"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_TOP = {"id", "title", "seconds_per_answer", "target_participants", "trials_per_participant", "conditions", "tasks",
        "catch_rate", "practice_trials", "break_every", "lease_minutes", "overfill_places", "screen_out_after_catch_failures",
        "seed", "texts", "label", "rate", "completion", "panels", "payment", "admission", "min_seconds_per_answer",
        "keep_panel_ids_days", "image_scaling"}


def _text_problems(texts: dict[str, Any]) -> list[str]:
    """Unknown placeholders, and figures the plan decides written as plain numbers."""
    problems = []
    for key in PLACEHOLDER_TEXTS:
        text = texts.get(key)
        if not isinstance(text, str):
            continue
        unknown = sorted({name for name in PLACEHOLDER.findall(text) if name not in PLACEHOLDERS})
        if unknown:
            problems.append(f"texts.{key} uses unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)} "
                            f"(known: {', '.join('{' + n + '}' for n in PLACEHOLDERS)})")
        stated = STATED_COUNT.search(text)
        if stated:
            problems.append(f"texts.{key} states {stated.group(0)!r}: numbers of images, answers, breaks and "
                            f"minutes come from the plan, so write a placeholder such as {{n_images}} or {{minutes}}")
    return problems


def _unknown(table: dict[str, Any], allowed: set[str], where: str) -> list[str]:
    return [f"unknown key {where}{k!r}" for k in sorted(set(table) - allowed)]


def _typed(table: dict[str, Any], key: str, kind: type | tuple[type, ...], problems: list[str], where: str = "") -> Any:
    value = table.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        problems.append(f"{where}{key} must be {names}, not {value!r}")
        return None
    return value


def parse_config(raw: dict[str, Any], where: str = "study config") -> StudyConfig:
    problems = _unknown(raw, _TOP, "")
    texts = raw.get("texts", {})
    label = raw.get("label", {})
    rate = raw.get("rate", {})
    completion = raw.get("completion", {})
    payment = raw.get("payment", {})
    admission = raw.get("admission", {})
    problems += _unknown(texts, {"consent", "instructions", "debrief", "preview"}, "texts.")
    problems += _unknown(label, {"question"}, "label.")
    problems += _unknown(rate, {"question", "min", "max", "anchors"}, "rate.")
    problems += _unknown(completion, {"code", "declined_code", "screened_out_code", "withdrawn_code", "timed_out_code",
                                      "failed_checks_after", "failed_checks_code"}, "completion.")
    problems += _unknown(payment, {"currency", "base", "bonus_per_correct_label"}, "payment.")
    problems += _unknown(admission, {f.name for f in dataclasses.fields(Admission)}, "admission.")
    _typed(admission, "anonymous_link", bool, problems, "admission.")
    for key in ("new_sessions_per_address_per_hour", "new_sessions_per_minute", "sessions_per_person"):
        limit = _typed(admission, key, int, problems, "admission.")
        if limit is not None and limit < 1:
            problems.append(f"admission.{key} must be at least 1")
    start_lease = _typed(admission, "start_lease_minutes", (int, float), problems, "admission.")
    if start_lease is not None and start_lease <= 0:
        problems.append("admission.start_lease_minutes must be positive")
    min_per_answer = _typed(raw, "min_seconds_per_answer", (int, float), problems)
    if min_per_answer is not None and min_per_answer < 0:
        problems.append("min_seconds_per_answer must not be negative")
    keep_days = _typed(raw, "keep_panel_ids_days", int, problems)
    if keep_days is not None and keep_days < 0:
        problems.append("keep_panel_ids_days must not be negative")

    for key in ("id", "title"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            problems.append(f"{key} is required (a non-empty string)")
    if isinstance(raw.get("id"), str) and raw["id"] and not SLUG.match(raw["id"]):
        problems.append(f"id {raw['id']!r} may use only letters, digits, '.', '_' and '-' (at most 64)")
    for key in ("consent", "instructions", "debrief"):
        if not isinstance(texts.get(key), str) or not texts[key].strip():
            problems.append(f"texts.{key} is required (a non-empty string)")
    problems += _text_problems(texts)
    if "estimated_minutes" in raw:
        problems[problems.index("unknown key 'estimated_minutes'")] = (
            "estimated_minutes is computed from the plan now: remove it, write {minutes} in the texts "
            "and tune seconds_per_answer")
    for key in ("code", "declined_code"):
        if not isinstance(completion.get(key), str) or not completion[key].strip():
            problems.append(f"completion.{key} is required (a non-empty string)")
    for key in ("screened_out_code", "withdrawn_code", "timed_out_code", "failed_checks_code"):
        _typed(completion, key, str, problems, "completion.")
    failed_after = _typed(completion, "failed_checks_after", int, problems, "completion.")
    if failed_after and not completion.get("failed_checks_code"):
        problems.append("completion.failed_checks_after needs a completion.failed_checks_code")
    if failed_after is not None and failed_after < 0:
        problems.append("completion.failed_checks_after must not be negative")
    panels = raw.get("panels", list(PANELS))
    if not isinstance(panels, list) or not panels or len(set(panels)) != len(panels) or any(p not in PANELS for p in panels):
        problems.append(f"panels must list some of {', '.join(PANELS)} once each, not {panels!r}")
    for key in ("base", "bonus_per_correct_label"):
        amount = _typed(payment, key, (int, float), problems, "payment.")
        if amount is not None and amount < 0:
            problems.append(f"payment.{key} must not be negative")
    if not isinstance(payment.get("currency", "GBP"), str) or not re.fullmatch(r"[A-Z]{3}", payment.get("currency", "GBP")):
        problems.append("payment.currency must be a three-letter currency code such as GBP or USD")

    ints = {k: _typed(raw, k, int, problems) for k in ("target_participants", "trials_per_participant",
                                                        "practice_trials", "break_every", "overfill_places", "screen_out_after_catch_failures", "seed")}
    for k in ("target_participants", "trials_per_participant"):
        if ints[k] is not None and ints[k] < 1:
            problems.append(f"{k} must be at least 1")
    for k in ("practice_trials", "break_every", "overfill_places", "screen_out_after_catch_failures"):
        if ints[k] is not None and ints[k] < 0:
            problems.append(f"{k} must not be negative")
    catch_rate = _typed(raw, "catch_rate", (int, float), problems)
    if catch_rate is not None and not 0 <= catch_rate <= 0.5:
        problems.append(f"catch_rate must be between 0 and 0.5, not {catch_rate}")
    lease = _typed(raw, "lease_minutes", (int, float), problems)
    if lease is not None and lease <= 0:
        problems.append("lease_minutes must be positive")
    per_answer = _typed(raw, "seconds_per_answer", (int, float), problems)
    if per_answer is not None and not 0 < per_answer <= 600:
        problems.append(f"seconds_per_answer must be between 0 and 600, not {per_answer}")

    conditions = raw.get("conditions")
    if conditions is not None:
        if not isinstance(conditions, list) or not conditions or len(set(conditions)) != len(conditions):
            problems.append("conditions must be a non-empty list without repeats")
        else:
            problems += [f"unknown condition {c!r} (known: {', '.join(CONDITIONS)})" for c in conditions if c not in CONDITIONS]
    tasks = raw.get("tasks", ["label", "rate"])
    if not isinstance(tasks, list) or not tasks or len(set(tasks)) != len(tasks) or any(t not in TASKS for t in tasks):
        problems.append(f"tasks must list 'label' and/or 'rate' once each, in the order asked, not {tasks!r}")

    scale_min = _typed(rate, "min", int, problems, "rate.")
    scale_max = _typed(rate, "max", int, problems, "rate.")
    lo, hi = scale_min if scale_min is not None else 1, scale_max if scale_max is not None else 5
    if not 2 <= hi - lo + 1 <= 9:
        problems.append(f"the rating scale rate.min..rate.max must have 2 to 9 points (one key each), not {lo}..{hi}")
    anchors = rate.get("anchors", RatingScale().anchors if (lo, hi) == (1, 5) else {})
    if not isinstance(anchors, dict) or any(not str(k).lstrip("-").isdigit() or not lo <= int(k) <= hi for k in anchors):
        problems.append(f"rate.anchors must map scale points within {lo}..{hi} to labels")
    question = rate.get("question", RatingScale.question)
    # {class} reads right for any stimulus set; {digit}, the older name, means the same.
    if not isinstance(question, str) or not any(name in question for name in TARGET_PLACEHOLDERS):
        problems.append("rate.question must contain {class} (or {digit}), where the target class is shown")

    scaling = raw.get("image_scaling", StudyConfig.image_scaling)
    if scaling not in IMAGE_SCALINGS:
        problems.append(f"image_scaling must be one of {', '.join(IMAGE_SCALINGS)}, not {scaling!r}")

    if problems:
        raise ConfigError(where, problems)
    given = {k: v for k, v in ints.items() if v is not None}
    given["image_scaling"] = scaling
    if catch_rate is not None:
        given["catch_rate"] = float(catch_rate)
    if lease is not None:
        given["lease_minutes"] = float(lease)
    if min_per_answer is not None:
        given["min_seconds_per_answer"] = float(min_per_answer)
    if keep_days is not None:
        given["keep_panel_ids_days"] = keep_days
    # A study recruiting only by its own link has no other way in; with a panel, the anonymous
    # link stays off unless asked for (anyone who finds it could otherwise fill the study).
    admission = {"anonymous_link": tuple(panels) == ("link",), **admission}
    if start_lease is not None:
        admission["start_lease_minutes"] = float(start_lease)
    if per_answer is not None:
        given["seconds_per_answer"] = float(per_answer)
    return StudyConfig(
        id=raw["id"], title=raw["title"],
        texts=Texts(**texts), completion=Completion(**completion), panels=tuple(panels),
        payment=Payment(**{k: float(v) if k != "currency" else v for k, v in payment.items()}),
        admission=Admission(**admission),
        conditions=tuple(conditions) if conditions else None, tasks=tuple(tasks),
        label_question=label.get("question", StudyConfig.label_question),
        rating=RatingScale(question=question, min=lo, max=hi, anchors={str(k): v for k, v in anchors.items()}),
        **given,
    )


def load_config(path: str | Path) -> StudyConfig:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(str(path), ["file not found"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML ({exc})"]) from None
    return parse_config(raw, str(path))


def config_from_dict(data: dict[str, Any]) -> StudyConfig:
    """Rebuild the config stored with a study (`StudyConfig.as_dict()` output)."""
    # Studies created before the time estimate was computed stored their own; it is not used.
    data = {k: v for k, v in data.items() if k != "estimated_minutes"}
    return StudyConfig(
        # Studies created before panels and payment existed take the defaults.
        **{**data, "texts": Texts(**data["texts"]), "completion": Completion(**data["completion"]),
           "panels": tuple(data.get("panels", PANELS)), "payment": Payment(**data.get("payment", {})),
           # Studies created before admission control keep their anonymous link.
           "admission": Admission(**data.get("admission", {"anonymous_link": True})),
           "rating": RatingScale(**data["rating"]), "tasks": tuple(data["tasks"]),
           "conditions": tuple(data["conditions"]) if data["conditions"] else None}
    )
