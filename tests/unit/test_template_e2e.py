"""template.yaml's part in the end-to-end rules: tenancy reaches the enricher and the reconciler,
the reconciler runs one at a time, and ``OutputFifo`` makes the whole output path FIFO."""

from __future__ import annotations

from typing import Any

from appointment_enricher.ledger.base import MAX_RECONCILE_LOOKAHEAD_DAYS, MAX_RECONCILE_LOOKBACK_DAYS
from dev.stack.cfn import load_template


def _resources() -> dict[str, Any]:
    resources: dict[str, Any] = load_template()["Resources"]
    return resources


def _if_fifo(value: Any) -> Any:
    """The value of ``!If [FifoOutput, x, NoValue]`` when OutputFifo is true."""
    assert isinstance(value, dict) and value["Fn::If"][0] == "FifoOutput", value
    assert value["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    return value["Fn::If"][1]


def test_tenancy_variables_reach_the_enricher_and_the_reconciler() -> None:
    resources = _resources()
    for function in ("EnricherFunction", "ReconcilerFunction"):
        variables = resources[function]["Properties"]["Environment"]["Variables"]
        assert variables["WEBHOOK_LOCATION_IDS"]["Fn::If"][0] == "HasLocationIds", function
    enricher = resources["EnricherFunction"]["Properties"]["Environment"]["Variables"]
    assert enricher["WEBHOOK_APP_IDS"]["Fn::If"][0] == "HasAppIds"


def test_the_reconciler_runs_one_at_a_time() -> None:
    assert _resources()["ReconcilerFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1


def test_output_fifo_makes_topic_queue_and_dlq_fifo() -> None:
    template = load_template()
    assert template["Parameters"]["OutputFifo"]["Default"] == "false"
    resources = template["Resources"]
    topic = resources["EnrichedTopic"]["Properties"]
    assert _if_fifo(topic["FifoTopic"]) is True and _if_fifo(topic["ContentBasedDeduplication"]) is False
    assert _if_fifo(topic["TopicName"])["Fn::Sub"].endswith(".fifo")
    assert _if_fifo(topic["FifoThroughputScope"]) == "MessageGroup"
    for queue in ("EnrichedQueue", "EnrichedDLQ"):
        assert _if_fifo(resources[queue]["Properties"]["FifoQueue"]) is True, queue


def test_the_reconcile_window_parameters_stay_inside_what_the_ledger_ttl_covers() -> None:
    parameters = load_template()["Parameters"]
    assert parameters["ReconcileLookbackDays"]["MaxValue"] == MAX_RECONCILE_LOOKBACK_DAYS
    assert parameters["ReconcileLookaheadDays"]["MaxValue"] == MAX_RECONCILE_LOOKAHEAD_DAYS
