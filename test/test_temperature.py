"""Temperatures between 0 and a sane minimum are refused (they overflow the softmax)."""

from __future__ import annotations

import pytest

from flash_vstream_ros.config import GenerationConfig
from flash_vstream_ros.engine import Question
from flash_vstream_ros.engine.questions import check_limits
from flash_vstream_ros.errors import BadQuestionError, ConfigError

pytestmark = pytest.mark.unit

TINY = (1e-45, 1e-39, 1e-300, 5e-324, 1e-7)


@pytest.mark.parametrize('temperature', TINY)
def test_config_refuses_a_tiny_positive_temperature(temperature: float) -> None:
    with pytest.raises(ConfigError, match='use 0 for greedy'):
        GenerationConfig(temperature=temperature)


@pytest.mark.parametrize('temperature', [0.0, 1e-6, 0.7, 5.0])
def test_config_keeps_sane_temperatures(temperature: float) -> None:
    assert GenerationConfig(temperature=temperature).temperature == temperature


@pytest.mark.parametrize('temperature', TINY)
def test_question_refuses_a_tiny_positive_temperature(temperature: float) -> None:
    question = Question(text='what?', temperature=temperature)
    with pytest.raises(BadQuestionError, match='use 0 for greedy'):
        check_limits(question, GenerationConfig())


@pytest.mark.parametrize('temperature', [0.0, 1e-6, 1.0])
def test_question_keeps_sane_temperatures(temperature: float) -> None:
    question = Question(text='what?', temperature=temperature)
    assert check_limits(question, GenerationConfig()).temperature == temperature
