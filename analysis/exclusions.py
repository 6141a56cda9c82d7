"""Exclusions, declared in one place and applied in one place, with a CONSORT-style count table.

The rules come from `[exclusions]` in an analysis config (TOML) and can be overridden by report
flags. Steps run in a fixed order; each row of the count table says what one step removed and what
remained, in participants, sessions and answers. Session flags (bot, pilot, withdrawn, state, catch
failures) come from the study export; the analysis only decides what to do with them.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import pandas as pd

from analysis.loading import read_config
from contracts import ContractError


@dataclass(frozen=True)
class ExclusionRules:
    drop_practice: bool = True         # practice trials are instruction, not data
    drop_catch: bool = True            # catch trials check attention; they are not stimuli
    drop_bots: bool = True
    drop_pilots: bool = True
    drop_withdrawn: bool = True        # consent withdrawn: the data may not be analysed
    require_completed: bool = True     # sessions that did not reach the end
    max_catch_failed: int = 0          # sessions failing more catch trials than this are excluded
    min_rt_ms: float = 250.0           # answers faster than this cannot follow from seeing the image
    max_fast_share: float = 0.25       # sessions with more too-fast answers than this share are excluded
    drop_clean: bool = False           # clean controls are described, never in the model contrasts

    def __post_init__(self) -> None:
        problems = [f"{f.name} must be true or false, not {getattr(self, f.name)!r}" for f in fields(self)
                    if f.type == "bool" and not isinstance(getattr(self, f.name), bool)]
        problems += [f"{name} must be {what}, not {getattr(self, name)!r}" for name, what, ok in (
            ("max_catch_failed", "a whole number ≥ 0", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
            ("min_rt_ms", "a number of milliseconds ≥ 0", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0),
            ("max_fast_share", "a share between 0 and 1", lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1),
        ) if not ok(getattr(self, name))]
        if problems:
            raise ValueError("; ".join(problems))

    def describe(self) -> list[str]:
        """The rules as sentences, in the order the steps apply."""
        switches = [(self.drop_practice, "Practice trials are left out", "Practice trials are kept"),
                    (self.drop_catch, "Catch trials are left out (they check attention)", "Catch trials are kept"),
                    (self.drop_bots, "Bot sessions are excluded", "Bot sessions are kept"),
                    (self.drop_pilots, "Pilot sessions are excluded", "Pilot sessions are kept"),
                    (self.drop_withdrawn, "Withdrawn sessions are excluded", "Withdrawn sessions are kept"),
                    (self.require_completed, "Sessions that did not complete are excluded", "Incomplete sessions are kept")]
        return [on if flag else off for flag, on, off in switches] + [
            f"Sessions failing more than {self.max_catch_failed} catch trial(s) are excluded",
            f"Sessions with more than {self.max_fast_share:.0%} of answers faster than {self.min_rt_ms:g} ms are excluded",
            f"Single answers faster than {self.min_rt_ms:g} ms are left out",
            "Clean control images are left out" if self.drop_clean else "Clean control images are described but never contrasted"]


def load_rules(path: Path | None, overrides: dict[str, object] | None = None) -> ExclusionRules:
    """Rules from the config's [exclusions] table, then non-None overrides (report flags)."""
    values: dict[str, object] = {}
    if path is not None:
        values.update(read_config(path).get("exclusions", {}))
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    known = [f.name for f in fields(ExclusionRules)]
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ContractError(f"analysis config {path}", [f"unknown exclusion rule(s): {', '.join(unknown)}; known: {', '.join(known)}"])
    try:
        return ExclusionRules(**values)
    except ValueError as exc:
        raise ContractError(f"exclusion rules ({'analysis config ' + str(path) if path else 'report flags'})", [str(exc)]) from None


def _session_rule(flag: Callable[[pd.DataFrame], pd.Series]) -> Callable[[pd.DataFrame], pd.Series]:
    """A rule on sessions: a row goes when any row of its session is flagged."""
    return lambda df: flag(df).groupby(df["session_id"]).transform("any").astype(bool)


def _steps(rules: ExclusionRules) -> list[tuple[str, Callable[[pd.DataFrame], pd.Series]]]:
    fast = lambda df: df["rt_ms"] < rules.min_rt_ms  # noqa: E731
    steps = [
        (rules.drop_practice, "practice trials", lambda df: df["is_practice"].astype(bool) | (df["block"] == "practice")),
        (rules.drop_catch, "catch trials (attention checks, not stimuli)", lambda df: df["is_catch"].astype(bool)),
        (rules.drop_bots, "bot sessions", _session_rule(lambda df: df["is_bot"].astype(bool))),
        (rules.drop_pilots, "pilot sessions", _session_rule(lambda df: df["is_pilot"].astype(bool))),
        (rules.drop_withdrawn, "withdrawn sessions", _session_rule(lambda df: df["withdrawn"].astype(bool) | (df["session_state"] == "withdrawn"))),
        (rules.require_completed, "incomplete sessions", _session_rule(lambda df: df["session_state"] != "completed")),
        (True, f"sessions failing more than {rules.max_catch_failed} catch trial(s)",
         _session_rule(lambda df: df["catch_failed"].astype(float) > rules.max_catch_failed)),
        (True, f"sessions with more than {rules.max_fast_share:.0%} answers faster than {rules.min_rt_ms:g} ms",
         lambda df: fast(df).groupby(df["session_id"]).transform("mean") > rules.max_fast_share),
        (True, f"single answers faster than {rules.min_rt_ms:g} ms", fast),
        (rules.drop_clean, "clean control images", lambda df: df["condition"] == "clean"),
    ]
    return [(name, rule) for active, name, rule in steps if active]


def apply_exclusions(responses: pd.DataFrame, rules: ExclusionRules) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(kept responses, CONSORT count table). Steps are sequential: each sees what the last kept."""
    def counts(df: pd.DataFrame) -> dict[str, int]:
        return {"participants": df["participant_id"].nunique(), "sessions": df["session_id"].nunique(), "answers": len(df)}

    kept = responses
    rows = [{"step": "received", **{f"{k} removed": 0 for k in counts(kept)}, **counts(kept)}]
    for name, rule in _steps(rules):
        drop = rule(kept).fillna(False).to_numpy(dtype=bool)
        after = kept[~drop]
        before_n, after_n = counts(kept), counts(after)
        rows.append({"step": f"excluded: {name}", **{f"{k} removed": before_n[k] - after_n[k] for k in before_n}, **after_n})
        kept = after
    rows.append({"step": "analysed", **{f"{k} removed": "" for k in counts(kept)}, **counts(kept)})
    return kept.reset_index(drop=True), pd.DataFrame(rows)
