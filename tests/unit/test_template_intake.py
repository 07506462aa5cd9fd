"""template.yaml, the intake part: a function timeout above the answer budget, tenancy parameters
that refuse a malformed list at deploy time, and alarms for what the sender cannot tell us."""

from __future__ import annotations

import re
from typing import Any

import pytest

from appointment_enricher.intake.receiver import DEFAULT_SEND_BUDGET_SECONDS
from appointment_enricher.wire import MAX_MAX_AGE_SECONDS
from tests.unit.test_template import load_template

ANSWER_BUDGET_SECONDS = 3.0


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


def _webhook(template: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = template["Resources"]["WebhookFunction"]["Properties"]
    return props


def test_function_timeout_has_a_margin_above_the_answer_budget(template: dict[str, Any]) -> None:
    timeout = _webhook(template)["Timeout"]
    assert DEFAULT_SEND_BUDGET_SECONDS < ANSWER_BUDGET_SECONDS
    assert ANSWER_BUDGET_SECONDS + 2 <= timeout <= 29  # 29 s: the HTTP API integration limit


@pytest.mark.parametrize(
    ("variable", "parameter"),
    [("WEBHOOK_APP_IDS", "WebhookAppIds"), ("WEBHOOK_LOCATION_IDS", "WebhookLocationIds")],
)
def test_tenancy_lists_are_parameters_unset_when_empty(
    template: dict[str, Any], variable: str, parameter: str
) -> None:
    value = _webhook(template)["Environment"]["Variables"][variable]
    assert value["Fn::If"][1] == {"Ref": parameter}
    assert value["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    spec = template["Parameters"][parameter]
    assert spec["Default"] == ""
    pattern = re.compile(spec["AllowedPattern"])
    for good in ("", "abc", "65f1c0ffee0ddba11dev0001,other_app-2", "a" * 128):
        assert pattern.fullmatch(good), good
    for bad in ("a, b", "a,", ",a", "a,,b", "a/b", "a" * 129, "a;b", " a"):
        assert not pattern.fullmatch(bad), bad


def test_replay_window_is_bounded_at_deploy_time(template: dict[str, Any]) -> None:
    assert template["Parameters"]["WebhookMaxAgeSeconds"]["MaxValue"] == MAX_MAX_AGE_SECONDS


def _alarm(template: dict[str, Any], metric: str) -> dict[str, Any]:
    found = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("MetricName") == metric
    ]
    assert found, metric
    return found[0]


@pytest.mark.parametrize("metric", ["WebhookQueueFailed", "WebhookInternalError", "WebhookForeignTenant"])
def test_intake_metrics_are_alarmed(template: dict[str, Any], metric: str) -> None:
    alarm = _alarm(template, metric)
    assert alarm["Namespace"] == "PowerLeadsEnricher"
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "appointment-enricher"}]
    assert alarm["TreatMissingData"] == "notBreaching"
    if metric == "WebhookForeignTenant":  # a sustained rate, not one stray event
        assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == 3
        assert alarm["Threshold"] == {"Ref": "ForeignTenantThreshold"}
    else:
        assert alarm["Threshold"] == 0


def test_a_failed_cold_start_is_alarmed(template: dict[str, Any]) -> None:
    """An init failure (bad variable or key) reaches nobody's code: the function's Errors and the
    API's 5xx are where it shows, and both are alarmed."""
    errors = [
        a
        for a in (
            r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"
        )
        if a.get("MetricName") == "Errors"
        and {"Name": "FunctionName", "Value": {"Ref": "WebhookFunction"}} in a["Dimensions"]
    ]
    assert len(errors) == 1 and errors[0]["Threshold"] == 0
    assert _alarm(template, "5xx")["Threshold"] == 0
