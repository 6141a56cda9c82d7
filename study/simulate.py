"""Simulated participants (bots) that take a running study through its real HTTP flow.

`flask --app study simulate --url URL --study SLUG --participants N` pilots a study end to end
and gives the analyst data before real participants exist. Each bot is a study.testing.driver
Participant; its entry link carries a signed mark (study.security.session_mark), so the server
flags the session as a bot: bots are balanced among themselves, never fill the study, and are
left out of exports unless asked for. The mark is signed with this app's secret key, so run the
command with the server's STUDY_SECRET_KEY.

Answer models: at chance by default; or an effect per condition (label accuracy, mean rating),
or ratings that follow each image's measured change (`rating_by_l2`: one rule for every condition,
so differences between conditions come from their images alone), with participant and image variability on top, careless participants (at chance throughout, so
they fail catch trials) and dropouts (who stop at a random trial and never come back). Attentive
bots answer catch and practice images correctly. The condition of an image is read from this
app's database (the page never tells it), so per-condition effects need the server's database.
"""
from __future__ import annotations

import math
import random
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from study.db import db
from study.testing.driver import DEFAULT_RETRY_FOR, DriverError, Participant, ServerUnavailable, StudyFullReply, label_count
from study.models import Stimulus, Study


@dataclass(frozen=True)
class StimulusFacts:
    condition: str
    role: str
    true_label: int
    target_label: int | None
    l2: float = 0.0  # L2 distance of the image from its source on the 0..1 pixel scale (clean: 0)


@dataclass(frozen=True)
class AnswerModel:
    accuracy: dict[str, float] = field(default_factory=dict)  # P(correct label) per condition
    rating: dict[str, float] = field(default_factory=dict)  # mean rating per condition
    # (base, slope): an experimental image's mean rating is base + slope × its L2 change, whatever its condition
    rating_by_l2: tuple[float, float] | None = None
    participant_sd: float = 0.0  # SD of a participant's offset: logit scale for labels, scale points for ratings
    image_sd: float = 0.0  # SD of an image's offset, same scales
    careless: float = 0.0  # share of participants who answer at chance throughout
    dropout: float = 0.0  # share of participants who stop at a random trial

    @property
    def needs_conditions(self) -> bool:
        return bool(self.accuracy or self.rating or self.rating_by_l2)


@dataclass
class BotResult:
    participant: str
    session_id: str | None = None
    # completed | dropped | screened_out | full | stranded (the server stayed unreachable past the
    # bot's deadline mid-session, leaving the session active until its lease runs out) | error
    outcome: str = "error"
    answers: dict[int, int] = field(default_factory=dict)  # trial index -> response the server acknowledged
    error: str = ""


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def study_stimuli(slug: str) -> dict[str, StimulusFacts]:
    """The facts bots need about each image, by the public id the page shows; {} if the study
    is not in this app's database (a remote server)."""
    rows = db.session.execute(
        select(Stimulus.public_id, Stimulus.condition, Stimulus.role, Stimulus.true_label, Stimulus.target_label, Stimulus.norm_l2)
        .join(Study, Study.id == Stimulus.study_id).where(Study.slug == slug))
    return {public: StimulusFacts(*facts) for public, *facts in rows}


class Bot:
    """One simulated participant's answering behaviour."""

    def __init__(self, model: AnswerModel, stimuli: dict[str, StimulusFacts], image_offsets: dict[str, float],
                 rng: random.Random):
        self.model, self.stimuli, self.image_offsets, self.rng = model, stimuli, image_offsets, rng
        self.careless = rng.random() < model.careless
        self.offset = rng.gauss(0, model.participant_sd) if model.participant_sd else 0.0

    def choose(self, trial: dict[str, Any], data: dict[str, Any]) -> int:
        facts = self.stimuli.get(trial["stimulus"])
        lo, hi = data["rating"]["min"], data["rating"]["max"]
        if self.careless or facts is None:
            return self.rng.randrange(label_count(data)) if trial["task"] == "label" else self.rng.randint(lo, hi)
        shift = self.offset + self.image_offsets.get(trial["stimulus"], 0.0)
        if trial["task"] == "label":
            if facts.role != "experimental":
                return facts.true_label
            p = 1 / (1 + math.exp(-(_logit(self.model.accuracy.get(facts.condition, 0.1)) + shift)))
            if self.rng.random() < p:
                return facts.true_label
            if facts.target_label is not None and self.rng.random() < 0.5:
                return facts.target_label
            return self.rng.choice([d for d in range(label_count(data)) if d != facts.true_label])
        if self.model.rating_by_l2 is not None and facts.role == "experimental":
            base, slope = self.model.rating_by_l2
            mean = base + slope * facts.l2
        elif facts.condition in self.model.rating:
            mean = self.model.rating[facts.condition]
        else:
            return self.rng.randint(lo, hi)
        return min(hi, max(lo, round(self.rng.gauss(mean + shift, 1.0))))


def run_bot(base_url: str, slug: str, params: dict[str, str], bot: Bot, retry_for: float) -> BotResult:
    """One bot's session. Never raises: whatever happens ends up in the result, in one line."""
    result = BotResult(params["participant"])
    driver = Participant(base_url, slug, params=params, seed=bot.rng.getrandbits(32), retry_for=retry_for)
    try:
        driver.start()
        result.session_id = driver.data["session"]
        pending = driver.pending()
        stop = bot.rng.randrange(len(pending)) if bot.rng.random() < bot.model.dropout else len(pending)
        for index in pending[:stop]:
            response = bot.choose(driver.data["trials"][index], driver.data)
            reply = driver.answer(index, response)
            if reply.status not in (200, 201):
                raise DriverError(f"answer {index}: HTTP {reply.status}: {reply.text[:200]}")
            result.answers[index] = response
            if "next" in reply.json():  # the server ended the session (screened out)
                result.outcome = "screened_out"
                return result
        if stop < len(pending):
            result.outcome = "dropped"
            return result
        driver.complete()
        result.outcome = "completed"
    except StudyFullReply:
        result.outcome = "full"
    except ServerUnavailable as exc:
        result.outcome = "stranded" if driver.data is not None else "error"
        result.error = str(exc)
    except Exception as exc:  # noqa: BLE001  a bot reports its failure; it never takes the run down
        result.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    finally:
        driver.close()
    return result


def simulate(base_url: str, slug: str, participants: int, mark: str, model: AnswerModel = AnswerModel(),
             stimuli: dict[str, StimulusFacts] | None = None, concurrency: int = 8, seed: int = 0,
             retry_for: float = DEFAULT_RETRY_FOR) -> list[BotResult]:
    """Run `participants` bots, `concurrency` at a time; one result per bot, in order."""
    stimuli = stimuli or {}
    image_rng = random.Random(f"{seed}:images")
    image_offsets = {public: image_rng.gauss(0, model.image_sd) for public in sorted(stimuli)} if model.image_sd else {}
    run_id = uuid.uuid4().hex[:8]  # fresh participant ids, so a second run does not resume the first's sessions
    jobs = [({"participant": f"sim-{run_id}-{i:05d}", "mark": mark},
             Bot(model, stimuli, image_offsets, random.Random(f"{seed}:{i}"))) for i in range(participants)]
    with ThreadPoolExecutor(max(1, min(concurrency, participants))) as pool:
        return list(pool.map(lambda job: run_bot(base_url, slug, job[0], job[1], retry_for), jobs))


def summary(results: list[BotResult], seconds: float) -> str:
    """One line: how many bots finished (completed, screened out or dropped as modelled), how many
    were stranded mid-session by an unreachable server, the outcome counts and the answers."""
    outcomes = Counter(r.outcome for r in results)
    answers = sum(len(r.answers) for r in results)
    finished = outcomes["completed"] + outcomes["screened_out"] + outcomes["dropped"]
    parts = ", ".join(f"{n} {outcome.replace('_', ' ')}" for outcome, n in sorted(outcomes.items()))
    return (f"{len(results)} bots: {finished} finished, {outcomes['stranded']} stranded ({parts}); "
            f"{answers} answers in {seconds:.1f} s")
