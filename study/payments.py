"""The payment and bonus list: who to pay how much, computed from the stored sessions and answers.

Only completed real sessions (no bots, pilots or withdrawals) are paid. The list is a pure
function of the database: running it again gives the same file, so it is safe to re-run after a
crash or to check a payment already made. It is the one export with raw panel ids, which the
panels need to pay people; keep it out of the analysis data. It is written through
`export.csv_chunks`, so text cells a spreadsheet would run as formulas are neutralised.
"""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Iterator

from sqlalchemy import func, select

from study.config import config_from_dict
from study.db import db
from study.models import Answer, ParticipantSession, Stimulus, Study

COLUMNS = ["study_id", "panel", "panel_participant_id", "assignment_id", "session_id", "completed_at", "completion_code",
           "correct_labels", "currency", "base", "bonus", "total"]
# The panel's own id for paying the participant, per panel.
PANEL_ID_KEY = {"prolific": "PROLIFIC_PID", "mturk": "workerId", "link": "participant"}


def _money(value: float) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def payment_rows(study: Study) -> Iterator[list]:
    config = config_from_dict(study.config).payment
    ps = ParticipantSession
    correct = (select(Answer.session_id, func.count().label("n")).join(Stimulus, Stimulus.id == Answer.stimulus_id)
               .where(Answer.block == "main", Answer.task == "label", ~Answer.is_catch,
                      Answer.response_label == Stimulus.true_label)
               .group_by(Answer.session_id).subquery())
    rows = db.session.execute(
        select(ps.panel, ps.panel_ids, ps.public_id, ps.completed_at, ps.completion_code, func.coalesce(correct.c.n, 0))
        .outerjoin(correct, correct.c.session_id == ps.id)
        .where(ps.study_id == study.id, ps.state == "completed", ~ps.is_bot, ~ps.is_pilot)
        .order_by(ps.completed_at, ps.id))
    for panel, ids, session_id, completed_at, code, n_correct in rows:
        base, bonus = _money(config.base), _money(config.bonus_per_correct_label * n_correct)
        yield [study.slug, panel, ids.get(PANEL_ID_KEY[panel], ""), ids.get("assignmentId", ""), session_id,
               completed_at, code, n_correct, config.currency, base, bonus, base + bonus]
