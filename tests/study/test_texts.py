"""The texts that describe the design come from the design: the default study's consent and
instruction pages name exactly the images, answers and time of the plan that follows them, and a
config that writes such numbers itself is refused."""
from __future__ import annotations

import html
import json
import math
import re

import pytest

from study.config import DEFAULT_CONFIG, ConfigError, load_config, parse_config
from study.testing.driver import HIDDEN_INPUT, STUDY_DATA
from study.testing.synthetic import write_stimulus_set
from studyhelp import BASE_CONFIG, app_with_study


def page_text(reply) -> str:
    assert reply.status_code == 200, reply.status_code
    inline = re.sub(r"</?(strong|em|a|code)\b[^>]*>", "", reply.get_data(as_text=True))
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", inline)).split())


def fields(reply) -> dict[str, str]:
    return {k: html.unescape(v) for k, v in HIDDEN_INPUT.findall(reply.get_data(as_text=True))}


def test_the_default_study_says_what_its_plan_asks(tmp_path):
    # The shape of the default stimulus set (engine/stimulus_design.toml): 70 sources in 6 defended
    # conditions plus clean, 4 practice and 6 catch images.
    stimuli = write_stimulus_set(tmp_path / "set", sources=70, practice=4, catch=6, conditions=(
        "normal", "adversarial", "distilled", "gradreg", "pgd-adversarial", "trades", "clean"))
    config = load_config(DEFAULT_CONFIG)
    app = app_with_study(f"sqlite:///{tmp_path / 'study.sqlite'}", config, stimuli)
    client = app.test_client()

    consent = client.get(f"/study/{config.id}?participant=p1")
    instructions = client.post(f"/study/{config.id}/consent", data={**fields(consent), "choice": "agree"},
                               follow_redirects=True)
    task = client.post(instructions.request.path, data=fields(instructions), follow_redirects=True)
    plan = json.loads(html.unescape(STUDY_DATA.search(task.get_data(as_text=True)).group(1)))["trials"]
    answers = len(plan)
    images = answers // len(config.tasks)
    practice = sum(t["block"] == "practice" for t in plan) // len(config.tasks)
    minutes = math.ceil(answers * config.seconds_per_answer / 60)
    assert (images, practice) == (78, 3)  # 3 practice + 75 main images (10 per condition, 5 catch), 156 answers

    said = page_text(consent)
    assert f"the first {practice} images are practice." in said
    assert said.count(f"{answers} answers") == said.count(f"{minutes} minutes") == 1  # said once, not twice
    assert f"This study takes about {minutes} minutes: {images} images ({practice} for practice), {answers} answers." in said
    told = page_text(instructions)
    assert f"The first {practice} images are practice" in told and f"Then {images - practice} more images follow" in told
    assert f"In all: {images} images ({practice} for practice), {answers} answers. It takes about {minutes} minutes." in told
    for text in (said, told):
        assert "{" not in text and "}" not in text  # every placeholder filled in


def test_a_break_schedule_is_told_as_the_trial_page_will_run_it():
    from study.texts import workload

    config = parse_config({**BASE_CONFIG, "break_every": 2})
    # 4 main images (3 + 1 catch): the page pauses after the 2nd, not after the last.
    numbers = workload(config, 3)
    assert (numbers.main_images, numbers.breaks) == (4, 1)
    assert workload(parse_config({**BASE_CONFIG, "break_every": 4}), 3).breaks == 0


@pytest.mark.parametrize("texts, message", [
    ({"consent": "You will see about 40 small images."}, "texts.consent states '40 small images'"),
    ({"instructions": "It takes 10 minutes."}, "texts.instructions states '10 minutes'"),
    ({"consent": "You will see {n_pictures} images."}, "unknown placeholder(s) {n_pictures}"),
])
def test_a_text_that_writes_its_own_numbers_is_refused(texts, message):
    with pytest.raises(ConfigError) as refused:
        parse_config({**BASE_CONFIG, "texts": {**BASE_CONFIG["texts"], **texts}})
    assert message in str(refused.value)
    with pytest.raises(ConfigError, match="estimated_minutes is computed from the plan now"):
        parse_config({**BASE_CONFIG, "estimated_minutes": 10})
