"""Contract and least-privilege checks for template.yaml (no AWS, no SAM CLI needed).

Each check is a plain function over the parsed template so that ``test_check_catches_mutation``
can delete the property a check guards and prove the check then fails.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dev.stack.cfn import TEMPLATE_PATH, Template, load_template

ROOT = TEMPLATE_PATH.parent


@pytest.fixture(scope="module")
def template() -> Template:
    """Read with cfn-lint's decoder, the loader dev.stack.awslocal builds the local stack from."""
    return load_template()


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def resources(t: Template) -> dict[str, Any]:
    return t.get("Resources") or {}


def props(t: Template, logical_id: str) -> dict[str, Any]:
    res = resources(t).get(logical_id)
    assert res is not None, f"resource {logical_id} missing"
    return res.get("Properties") or {}


def of_type(t: Template, type_: str) -> dict[str, Any]:
    return {k: v for k, v in resources(t).items() if v.get("Type") == type_}


def is_ref(value: Any, name: str) -> bool:
    return bool(value == {"Ref": name})


def is_getatt(value: Any, name: str, attr: str) -> bool:
    return bool(value == {"Fn::GetAtt": [name, attr]})


def param_default(t: Template, value: Any) -> Any:
    """Resolve a literal or a ``Ref`` to a parameter to its default."""
    if isinstance(value, dict) and "Ref" in value:
        param = (t.get("Parameters") or {}).get(value["Ref"])
        assert param is not None, f"{value} is not a parameter"
        return param.get("Default")
    return value


def function_env(t: Template, fn: str) -> dict[str, Any]:
    fn_env = (props(t, fn).get("Environment") or {}).get("Variables") or {}
    global_env = (((t.get("Globals") or {}).get("Function") or {}).get("Environment") or {}).get(
        "Variables"
    ) or {}
    return {**global_env, **fn_env}


def function_setting(t: Template, fn: str, key: str) -> Any:
    p = props(t, fn)
    if key in p:
        return p[key]
    return ((t.get("Globals") or {}).get("Function") or {}).get(key)


def unwrap_if(item: Any) -> list[Any]:
    """Branches of an ``Fn::If`` (dropping ``AWS::NoValue``), or the item itself."""
    if isinstance(item, dict) and "Fn::If" in item:
        _cond, yes, no = item["Fn::If"]
        return [b for branch in (yes, no) for b in unwrap_if(branch) if b != {"Ref": "AWS::NoValue"}]
    return [item]


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --------------------------------------------------------------------------------------------
# contract checks
# --------------------------------------------------------------------------------------------
FUNCTIONS = {
    "WebhookFunction": "functions/webhook",
    "EnricherFunction": "functions/enricher",
    "ReconcilerFunction": "functions/reconciler",
}

RECEIVER_ENV = {
    "INGEST_QUEUE_URL",
    "WEBHOOK_SIGNATURE_REQUIRED",
    "WEBHOOK_MAX_AGE_SECONDS",
    "WEBHOOK_ED25519_PUBLIC_KEY",
    "WEBHOOK_RSA_PUBLIC_KEY",
}
ENRICHER_ENV = {
    "OUTPUT_TOPIC_ARN",
    "OUTPUT_QUEUE_URL",
    "QUARANTINE_QUEUE_URL",
    "IDEMPOTENCY_TABLE_NAME",
    "POWERLEADS_API_BASE_URL",
    "POWERLEADS_API_VERSION",
    "POWERLEADS_TOKEN_SECRET_ID",
    "BUDGET_TABLE_NAME",  # the fleet's upstream budget
    "INGEST_QUEUE_URL",  # throttled messages handed back
}
POWERTOOLS_ENV = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"}


def check_sam_transform(t: Template) -> None:
    assert t.get("AWSTemplateFormatVersion") == "2010-09-09"
    assert t.get("Transform") == "AWS::Serverless-2016-10-31"


def check_handlers(t: Template) -> None:
    for fn, code_uri in FUNCTIONS.items():
        assert resources(t)[fn]["Type"] == "AWS::Serverless::Function"
        p = props(t, fn)
        assert p.get("CodeUri") == code_uri, fn
        assert p.get("Handler") == "app.lambda_handler", fn
        assert (ROOT / code_uri).is_dir(), f"{code_uri} missing"


def check_runtime_and_arch(t: Template) -> None:
    for fn in FUNCTIONS:
        assert function_setting(t, fn, "Runtime") == "python3.13", fn
        assert function_setting(t, fn, "Architectures") == ["arm64"], fn
        assert "Active" in unwrap_if(function_setting(t, fn, "Tracing")), fn
        assert {"Ref": "SharedLayer"} in (function_setting(t, fn, "Layers") or []), fn


def check_layer(t: Template) -> None:
    layer = resources(t).get("SharedLayer") or {}
    assert layer.get("Type") == "AWS::Serverless::LayerVersion"
    meta = layer.get("Metadata") or {}
    assert meta.get("BuildMethod") == "makefile"  # compiles the layer (tests/integration/test_layer_build.py)
    assert "build-SharedLayer:" in (ROOT / "layers/shared/Makefile").read_text()
    assert meta.get("BuildArchitecture") == "arm64"
    p = layer.get("Properties") or {}
    assert p.get("ContentUri") == "layers/shared"
    assert (ROOT / "layers/shared/requirements.txt").is_file()
    assert p.get("CompatibleRuntimes") == ["python3.13"]
    assert p.get("CompatibleArchitectures") == ["arm64"]


def check_http_api_route(t: Template) -> None:
    """IntakeEndpoint=HttpApi: one POST route to the receiver, everything of it conditional."""
    api = resources(t)["WebhookApi"]
    assert api["Type"] == "AWS::Serverless::HttpApi" and api.get("Condition") == "UseHttpApi"
    assert not (props(t, "WebhookFunction").get("Events") or {}), "a SAM event cannot be conditional"
    paths = (api["Properties"].get("DefinitionBody") or {}).get("paths") or {}
    assert list(paths) == ["/webhooks/appointments"], paths
    assert list(paths["/webhooks/appointments"]) == ["post"]
    integration = paths["/webhooks/appointments"]["post"]["x-amazon-apigateway-integration"]
    assert integration.get("type") == "aws_proxy" and integration.get("payloadFormatVersion") == "2.0"
    assert is_getatt(integration.get("uri"), "WebhookFunction", "Arn")
    permission = resources(t)["WebhookApiInvokePermission"]
    assert permission.get("Condition") == "UseHttpApi"
    assert permission["Properties"]["Principal"] == "apigateway.amazonaws.com"
    assert "${WebhookApi}/*/POST/webhooks/appointments" in permission["Properties"]["SourceArn"]["Fn::Sub"]
    assert resources(t)["WebhookApiAccessLogGroup"].get("Condition") == "UseHttpApi"
    assert props(t, "WebhookFunction").get("Timeout", 3) <= 29  # HTTP API integration limit


INTAKE_CONDITIONS = {"WebhookApi": "UseHttpApi", "WebhookFunctionUrl": "UseFunctionUrl"}


def _references(node: Any, name: str) -> bool:
    """Whether ``node`` refers to resource ``name`` outside an ``Fn::If`` (Ref, GetAtt or Sub)."""
    if isinstance(node, dict):
        if "Fn::If" in node:
            return False
        if node.get("Ref") == name or (node.get("Fn::GetAtt") or [None])[0] == name:
            return True
        sub = node.get("Fn::Sub")
        text = sub if isinstance(sub, str) else sub[0] if isinstance(sub, list) else ""
        if isinstance(text, str) and re.search(r"\$\{" + name + r"[.}]", text):
            return True
        return any(_references(v, name) for v in node.values())
    if isinstance(node, list):
        return any(_references(v, name) for v in node)
    return False


def check_intake_endpoint(t: Template) -> None:
    """IntakeEndpoint picks the function URL (default) or the HTTP API; nothing of the other exists."""
    param = (t.get("Parameters") or {})["IntakeEndpoint"]
    assert param.get("AllowedValues") == ["FunctionUrl", "HttpApi"] and param.get("Default") == "FunctionUrl"
    conditions = t.get("Conditions") or {}
    assert conditions.get("UseHttpApi") == {"Fn::Equals": [{"Ref": "IntakeEndpoint"}, "HttpApi"]}
    assert conditions.get("UseFunctionUrl") == {"Fn::Equals": [{"Ref": "IntakeEndpoint"}, "FunctionUrl"]}
    url = resources(t)["WebhookFunctionUrl"]
    assert url["Type"] == "AWS::Lambda::Url" and url.get("Condition") == "UseFunctionUrl"
    assert is_getatt(url["Properties"].get("TargetFunctionArn"), "WebhookFunction", "Arn")
    assert url["Properties"].get("AuthType") == "NONE"  # the receiver verifies HighLevel's signature
    grants = {
        r["Properties"]["Action"]: r
        for r in of_type(t, "AWS::Lambda::Permission").values()
        if is_ref(r["Properties"].get("FunctionName"), "WebhookFunction")
        and r["Properties"]["Principal"] == "*"
    }
    # Both are required of a function URL (lambda:InvokeFunction since October 2025), scoped to it.
    assert set(grants) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}, grants
    assert grants["lambda:InvokeFunctionUrl"]["Properties"].get("FunctionUrlAuthType") == "NONE"
    assert grants["lambda:InvokeFunction"]["Properties"].get("InvokedViaFunctionUrl") is True
    for grant in grants.values():
        assert grant.get("Condition") == "UseFunctionUrl"
    for logical_id, resource in resources(t).items():
        for name, condition in INTAKE_CONDITIONS.items():
            if logical_id != name and _references(resource, name):
                assert resource.get("Condition") == condition, f"{logical_id} refers to {name}"
    for output in (t.get("Outputs") or {}).values():
        for name in INTAKE_CONDITIONS:
            assert not _references(output, name), output


def check_ingest_queue(t: Template) -> None:
    q = props(t, "IngestQueue")
    assert q.get("FifoQueue") is True
    assert q.get("ContentBasedDeduplication") is False
    redrive = q.get("RedrivePolicy") or {}
    assert is_getatt(redrive.get("deadLetterTargetArn"), "IngestDLQ", "Arn")
    assert param_default(t, redrive.get("maxReceiveCount")) == 5
    assert props(t, "IngestDLQ").get("FifoQueue") is True
    enricher_timeout = props(t, "EnricherFunction").get("Timeout")
    assert enricher_timeout == 60
    assert q.get("VisibilityTimeout", 30) >= 6 * enricher_timeout
    assert param_default(t, q.get("MessageRetentionPeriod")) == 4 * 86400
    for dlq in ("IngestDLQ", "QuarantineQueue", "EnrichedDLQ"):
        assert param_default(t, props(t, dlq).get("MessageRetentionPeriod")) == 14 * 86400, dlq


def check_enricher_event_source(t: Template) -> None:
    events = props(t, "EnricherFunction").get("Events") or {}
    sqs = [e["Properties"] for e in events.values() if e.get("Type") == "SQS"]
    assert len(sqs) == 1, events
    src = sqs[0]
    assert is_getatt(src.get("Queue"), "IngestQueue", "Arn")
    assert src.get("FunctionResponseTypes") == ["ReportBatchItemFailures"]
    assert param_default(t, src.get("BatchSize")) == 10
    max_conc = (src.get("ScalingConfig") or {}).get("MaximumConcurrency")
    assert max_conc is not None
    assert param_default(t, max_conc) == 5
    if isinstance(max_conc, dict):
        assert t["Parameters"][max_conc["Ref"]].get("MinValue") == 2  # Lambda's minimum


def check_environment(t: Template) -> None:
    for fn in FUNCTIONS:
        env = function_env(t, fn)
        assert set(env) >= POWERTOOLS_ENV, fn
        assert env["POWERTOOLS_SERVICE_NAME"] == "appointment-enricher"
        assert env["POWERTOOLS_METRICS_NAMESPACE"] == "PowerLeadsEnricher"
    assert set(function_env(t, "WebhookFunction")) >= RECEIVER_ENV
    assert set(function_env(t, "EnricherFunction")) >= ENRICHER_ENV
    webhook = function_env(t, "WebhookFunction")
    assert is_ref(webhook["INGEST_QUEUE_URL"], "IngestQueue")
    assert param_default(t, webhook["WEBHOOK_SIGNATURE_REQUIRED"]) == "true"
    assert param_default(t, webhook["WEBHOOK_MAX_AGE_SECONDS"]) == 86400
    enricher = function_env(t, "EnricherFunction")
    assert is_ref(enricher["QUARANTINE_QUEUE_URL"], "QuarantineQueue")
    assert is_ref(enricher["IDEMPOTENCY_TABLE_NAME"], "IdempotencyTable")
    # The enricher sizes the idempotency TTL from the same max age the receiver enforces.
    assert enricher.get("WEBHOOK_MAX_AGE_SECONDS") == webhook["WEBHOOK_MAX_AGE_SECONDS"]
    assert param_default(t, enricher["POWERLEADS_API_BASE_URL"]) == "https://services.leadconnectorhq.com"
    assert param_default(t, enricher["POWERLEADS_API_VERSION"]) == "2021-04-15"
    # The output targets are mutually exclusive so EnrichedQueue never receives a record twice.
    assert {"Ref": "EnrichedTopic"} in unwrap_if(enricher["OUTPUT_TOPIC_ARN"])
    assert {"Ref": "EnrichedQueue"} in unwrap_if(enricher["OUTPUT_QUEUE_URL"])
    assert (
        resources(t)["EnrichedQueueSubscription"].get("Condition")
        == enricher["OUTPUT_TOPIC_ARN"]["Fn::If"][0]
    )


def check_idempotency_table(t: Template) -> None:
    for table in ("IdempotencyTable", "LedgerTable"):
        _check_table(props(t, table))
    assert is_ref(function_env(t, "EnricherFunction").get("LEDGER_TABLE_NAME"), "LedgerTable")


def _check_table(p: dict[str, Any]) -> None:
    assert p.get("BillingMode") == "PAY_PER_REQUEST"
    assert p.get("KeySchema") == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert {"AttributeName": "id", "AttributeType": "S"} in (p.get("AttributeDefinitions") or [])
    assert p.get("TimeToLiveSpecification") == {"AttributeName": "expiration", "Enabled": True}
    assert (p.get("SSESpecification") or {}).get("SSEEnabled") is True


def check_not_found_grace(t: Template) -> None:
    """A 404 is retried until NOT_FOUND_GRACE_SECONDS; each retry waits the ingest visibility
    timeout, so the receives left after the first must cover the largest grace allowed."""
    env = function_env(t, "EnricherFunction")
    assert is_ref(env.get("NOT_FOUND_GRACE_SECONDS"), "NotFoundGraceSeconds")
    grace = (t.get("Parameters") or {}).get("NotFoundGraceSeconds") or {}
    assert grace.get("Default") == 120
    visibility = props(t, "IngestQueue").get("VisibilityTimeout")
    receives = param_default(t, (props(t, "IngestQueue").get("RedrivePolicy") or {}).get("maxReceiveCount"))
    assert isinstance(visibility, int) and isinstance(receives, int)
    assert (receives - 1) * visibility >= grace.get("MaxValue", 10**9), (visibility, receives, grace)
    assert param_default(t, env.get("SUPPRESS_UNCHANGED_RECORDS")) == "false"


def check_output_fanout(t: Template) -> None:
    sub = props(t, "EnrichedQueueSubscription")
    assert is_ref(sub.get("TopicArn"), "EnrichedTopic")
    assert sub.get("Protocol") == "sqs"
    assert is_getatt(sub.get("Endpoint"), "EnrichedQueue", "Arn")
    assert sub.get("RawMessageDelivery") is True
    assert is_getatt(
        (props(t, "EnrichedQueue").get("RedrivePolicy") or {}).get("deadLetterTargetArn"),
        "EnrichedDLQ",
        "Arn",
    )
    policy = props(t, "EnrichedQueuePolicy")
    assert policy.get("Queues") == [{"Ref": "EnrichedQueue"}]
    statements = (policy.get("PolicyDocument") or {}).get("Statement") or []
    allows = [st for st in statements if st.get("Effect") == "Allow"]
    assert len(allows) == 1  # the topic only (the Deny is check_secure_transport's)
    st = allows[0]
    assert st.get("Principal") == {"Service": "sns.amazonaws.com"}
    assert st.get("Action") == "sqs:SendMessage"
    assert (st.get("Condition") or {}).get("ArnEquals") == {"aws:SourceArn": {"Ref": "EnrichedTopic"}}


def check_log_groups(t: Template) -> None:
    groups = of_type(t, "AWS::Logs::LogGroup")
    for fn in FUNCTIONS:
        matching = [
            g["Properties"]
            for g in groups.values()
            if (g.get("Properties") or {}).get("LogGroupName") == {"Fn::Sub": f"/aws/lambda/${{{fn}}}"}
        ]
        assert len(matching) == 1, fn
        assert is_ref(matching[0].get("RetentionInDays"), "LogRetentionDays"), fn


def check_outputs(t: Template) -> None:
    outputs = t.get("Outputs") or {}
    for name in (
        "WebhookUrl",
        "EnrichedTopicArn",
        "EnrichedQueueUrl",
        "IngestQueueUrl",
        "IngestDLQUrl",
        "QuarantineQueueUrl",
        "IdempotencyTableName",
        "LedgerTableName",
        "DashboardUrl",
    ):
        assert name in outputs, name
    assert outputs["WebhookUrl"]["Value"] == {
        "Fn::If": [
            "UseHttpApi",
            {
                "Fn::Sub": "https://${WebhookApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}/webhooks/appointments"
            },
            {"Fn::Sub": "${WebhookFunctionUrl.FunctionUrl}webhooks/appointments"},
        ]
    }


# --------------------------------------------------------------------------------------------
# operations: alarms and dashboard
# --------------------------------------------------------------------------------------------
NAMESPACE = "PowerLeadsEnricher"
SERVICE_DIMENSION = [{"Name": "service", "Value": "appointment-enricher"}]


def _alarms(t: Template) -> list[dict[str, Any]]:
    return [r.get("Properties") or {} for r in of_type(t, "AWS::CloudWatch::Alarm").values()]


def _find_alarm(t: Template, namespace: str, metric: str, **dims: Any) -> dict[str, Any]:
    for a in _alarms(t):
        if a.get("Namespace") == namespace and a.get("MetricName") == metric:
            have = {d["Name"]: d["Value"] for d in a.get("Dimensions") or []}
            if all(have.get(k) == v for k, v in dims.items()):
                return a
    raise AssertionError(f"no alarm on {namespace}/{metric} {dims}")


def check_alarms(t: Template) -> None:
    for queue in ("QuarantineQueue", "IngestDLQ"):
        a = _find_alarm(
            t, "AWS/SQS", "ApproximateNumberOfMessagesVisible", QueueName={"Fn::GetAtt": [queue, "QueueName"]}
        )
        assert a["Threshold"] == 0 and a["ComparisonOperator"] == "GreaterThanThreshold", queue
    a = _find_alarm(t, "AWS/Lambda", "Errors", FunctionName={"Ref": "EnricherFunction"})
    assert a["Threshold"] == 0 and a["ComparisonOperator"] == "GreaterThanThreshold"
    a = _find_alarm(
        t, "AWS/SQS", "ApproximateAgeOfOldestMessage", QueueName={"Fn::GetAtt": ["IngestQueue", "QueueName"]}
    )
    assert param_default(t, a["Threshold"]) == 300
    a = _find_alarm(t, NAMESPACE, "Upstream429", service="appointment-enricher")
    assert a["Statistic"] == "Sum" and a["Period"] == 300 and isinstance(a["Threshold"], dict)
    for metric in (
        "UpstreamAuthFailure",
        "OAuthWriteBackFailed",
        "WebhookUnsignedAccepted",
        "DailyBudgetParked",
    ):
        a = _find_alarm(t, NAMESPACE, metric, service="appointment-enricher")
        assert a["Statistic"] == "Sum" and a["Threshold"] == 0, metric
    a = _find_alarm(t, "AWS/ApiGateway", "5xx", ApiId={"Ref": "WebhookApi"}, Stage="$default")
    assert a["Threshold"] == 0
    a = _find_alarm(t, "AWS/Lambda", "Url5xxCount", FunctionName={"Ref": "WebhookFunction"})
    assert a["Threshold"] == 0
    for alarm in _alarms(t):
        assert alarm.get("TreatMissingData") == "notBreaching", alarm.get("MetricName")
        assert "AlarmActions" in alarm, alarm.get("MetricName")


def check_alarm_topic_conditions(t: Template) -> None:
    assert resources(t)["AlarmTopic"].get("Condition") == "CreateAlarmTopic"
    for name in ("AlarmEmail", "AlarmTopicArn"):
        assert t["Parameters"][name].get("Default") == "", name


def _sub_to_json(body: Any) -> Any:
    assert isinstance(body, dict)
    sub = body.get("Fn::Sub")
    if isinstance(sub, list):  # [text, variables]: a variable stands for a list of metric rows here
        text = re.sub(r"\[\$\{([^}.]+)\}\]", lambda m: "[]" if m.group(1) in sub[1] else "[0]", sub[0])
    else:
        assert isinstance(sub, str)
        text = sub
    text = re.sub(r"\$\{[^}]+\}", "0", text)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise AssertionError(f"DashboardBody is not valid JSON: {exc}") from exc


def check_dashboard(t: Template) -> None:
    dashboards = of_type(t, "AWS::CloudWatch::Dashboard")
    assert len(dashboards) == 1
    (dash,) = dashboards.values()
    body = _sub_to_json(dash["Properties"]["DashboardBody"])
    metrics = {
        (m[0], m[1])
        for w in body["widgets"]
        for m in (w.get("properties") or {}).get("metrics") or []
        if len(m) >= 2 and isinstance(m[0], str)
    }
    for name in (
        "WebhookAccepted",
        "WebhookIgnored",
        "WebhookRejected",
        "RecordsEnriched",
        "RecordsDeleted",
        "RecordsQuarantined",
        "RecordsRetried",
        "DuplicatesSkipped",
        "UpstreamLatency",
        "Upstream429",
    ):
        assert (NAMESPACE, name) in metrics, name
    for metric in ("Duration", "Errors", "Throttles", "ConcurrentExecutions"):
        assert ("AWS/Lambda", metric) in metrics, metric
    for metric in ("ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"):
        assert ("AWS/SQS", metric) in metrics, metric
    stats = {
        opt.get("stat")
        for w in body["widgets"]
        for m in (w.get("properties") or {}).get("metrics") or []
        if m[1] == "UpstreamLatency"
        for opt in m
        if isinstance(opt, dict)
    }
    assert {"p50", "p99"} <= stats


# --------------------------------------------------------------------------------------------
# least privilege
# --------------------------------------------------------------------------------------------
ALLOWED_POLICY_TEMPLATES = {
    "WebhookFunction": {"SQSSendMessagePolicy"},
    "EnricherFunction": {
        "SNSPublishMessagePolicy",
        "SQSSendMessagePolicy",
        "AWSSecretsManagerGetSecretValuePolicy",
    },
    "ReconcilerFunction": {"SQSSendMessagePolicy", "AWSSecretsManagerGetSecretValuePolicy"},
}
# Inline statements (see the comments in template.yaml), by Sid: exactly these actions.
# With the ledger on (the template always sets it) the idempotency table holds receipts only.
IDEMPOTENCY_ACTIONS = {"dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"}
# The ledger: entries read in batches, written one by one, the locations set grown; no Scan, Query.
# The reconciler reads it (no Scan or Query) and writes only its own cursor items.
LEDGER_ACTIONS = {"dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
WRITE_BACK_ACTIONS = {"secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"}
RECONCILER_TABLE = "LedgerTable"  # LEDGER_TABLE_NAME
INLINE_ALLOWED = {
    "EnricherFunction": {
        "IdempotencyRecords": IDEMPOTENCY_ACTIONS,
        "WriteBackRotatedPowerLeadsToken": WRITE_BACK_ACTIONS,
        "LedgerReadWrite": LEDGER_ACTIONS,
        "HandBackThrottled": {"sqs:ChangeMessageVisibility"},
    },
    "ReconcilerFunction": {
        "WriteBackRotatedPowerLeadsToken": WRITE_BACK_ACTIONS,
        "ReconcileLedgerRead": {"dynamodb:GetItem", "dynamodb:BatchGetItem"},
        "ReconcileCursorWrite": {"dynamodb:PutItem"},
        "ReconcileBudgetLease": {"dynamodb:UpdateItem"},
    },
}
TOKEN_SECRET_PARAMS = {"PowerLeadsTokenSecretArn", "PowerLeadsTokenSecretName"}
OAUTH_CONDITION = "TokenSecretIsOAuthApp"


def _secret_arn_ok(resource: Any) -> bool:
    """A single token-secret ARN, possibly chosen by Fn::If, with no '*' anywhere."""
    if "*" in json.dumps(resource):
        return False
    branches = unwrap_if(resource)
    if not branches:
        return False
    for b in branches:
        if b == {"Ref": "PowerLeadsTokenSecretArn"}:
            continue
        sub = b.get("Fn::Sub") if isinstance(b, dict) else None
        if not (isinstance(sub, str) and sub.endswith(":secret:${PowerLeadsTokenSecretName}-??????")):
            return False
    return True


def _inline_resource_ok(sid: str, resource: Any) -> bool:
    if sid == "IdempotencyRecords":
        return bool(resource == {"Fn::GetAtt": ["IdempotencyTable", "Arn"]})
    if sid == "LedgerReadWrite":
        return bool(resource == {"Fn::GetAtt": ["LedgerTable", "Arn"]})
    if sid == "HandBackThrottled":
        return bool(resource == {"Fn::GetAtt": ["IngestQueue", "Arn"]})
    if sid.startswith("Reconcile"):
        return is_getatt(resource, RECONCILER_TABLE, "Arn")
    return _secret_arn_ok(resource)


def check_function_policies(t: Template) -> None:
    for fn in of_type(t, "AWS::Serverless::Function"):
        p = props(t, fn)
        assert "Role" not in p, f"{fn} must use SAM Policies, not a custom role"
        assert fn in ALLOWED_POLICY_TEMPLATES, f"unexpected function {fn}"
        policies = p.get("Policies")
        assert isinstance(policies, list) and policies, fn
        sids: list[str] = []
        for raw in policies:
            for item in unwrap_if(raw):
                assert isinstance(item, dict), f"{fn}: managed policy/ARN {item!r} not allowed"
                if "Statement" in item:
                    for st in as_list(item["Statement"]):
                        sid = st.get("Sid")
                        allowed = INLINE_ALLOWED.get(fn, {})
                        assert sid in allowed, f"{fn}: inline statement {sid!r} not in allowlist"
                        assert st.get("Effect") == "Allow"
                        assert set(as_list(st.get("Action"))) == allowed[sid], f"{fn}: {sid} actions"
                        assert "NotAction" not in st and "NotResource" not in st
                        assert _inline_resource_ok(sid, st.get("Resource")), f"{fn}: {sid} resource"
                        sids.append(sid)
                    continue
                assert len(item) == 1, item
                (name, args) = next(iter(item.items()))
                assert name in ALLOWED_POLICY_TEMPLATES[fn], f"{fn}: policy {name} not in allowlist"
                assert "*" not in json.dumps(args), f"{fn}: wildcard in {name} arguments"
                if name == "AWSSecretsManagerGetSecretValuePolicy":
                    assert _secret_arn_ok(args.get("SecretArn")), args
        assert len(sids) == len(set(sids)), f"{fn}: an inline statement is repeated"


def check_secret_write_only_for_oauth(t: Template) -> None:
    """Writing the token secret is granted only under the OAuth-app condition (a parameter)."""
    params = t.get("Parameters") or {}
    assert params["PowerLeadsTokenSecretIsOAuthApp"].get("Default") == "false"
    assert t["Conditions"][OAUTH_CONDITION] == {
        "Fn::Equals": [{"Ref": "PowerLeadsTokenSecretIsOAuthApp"}, "true"]
    }
    for fn in ("EnricherFunction", "ReconcilerFunction"):
        found = 0
        for raw in props(t, fn).get("Policies") or []:
            text = json.dumps(raw)
            if "secretsmanager:PutSecretValue" in text or "UpdateSecretVersionStage" in text:
                assert isinstance(raw, dict) and "Fn::If" in raw, f"{fn}: secret write not conditional"
                condition, yes, no = raw["Fn::If"]
                assert condition == OAUTH_CONDITION and no == {"Ref": "AWS::NoValue"}
                assert "WriteBackRotatedPowerLeadsToken" in json.dumps(yes)
                found += 1
        assert found == 1, fn


def check_enricher_grants(t: Template) -> None:
    """Each allowed template is bound to the resource it is meant for."""
    grants: dict[str, list[Any]] = {}
    inline: dict[str, dict[str, Any]] = {}
    for raw in props(t, "EnricherFunction").get("Policies") or []:
        for item in unwrap_if(raw):
            if isinstance(item, dict) and "Statement" in item:
                inline.update({st["Sid"]: st for st in as_list(item["Statement"])})
            elif isinstance(item, dict):
                (name, args) = next(iter(item.items()))
                grants.setdefault(name, []).append(args)
    assert grants.get("SNSPublishMessagePolicy") == [
        {"TopicName": {"Fn::GetAtt": ["EnrichedTopic", "TopicName"]}}
    ]
    queues = {a["QueueName"]["Fn::GetAtt"][0] for a in grants.get("SQSSendMessagePolicy", [])}
    assert queues == {"EnrichedQueue", "QuarantineQueue", "IngestQueue"}  # the ingest queue: hand-backs
    assert not any("DynamoDB" in name for name in grants), "DynamoDB through a broad policy template"
    table = inline["IdempotencyRecords"]
    assert set(as_list(table["Action"])) == IDEMPOTENCY_ACTIONS  # no Scan, Query, DeleteItem
    assert table["Resource"] == {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}
    assert len(grants.get("AWSSecretsManagerGetSecretValuePolicy", [])) == 1
    webhook = props(t, "WebhookFunction").get("Policies")
    assert webhook == [{"SQSSendMessagePolicy": {"QueueName": {"Fn::GetAtt": ["IngestQueue", "QueueName"]}}}]


def _statements(t: Template) -> Iterator[dict[str, Any]]:
    for node in walk(resources(t)):
        if isinstance(node, dict) and "Statement" in node:
            for st in as_list(node["Statement"]):
                if isinstance(st, dict):
                    yield st


INSECURE_TRANSPORT = {"Bool": {"aws:SecureTransport": "false"}}


def _is_transport_deny(st: dict[str, Any]) -> bool:
    """The one statement allowed a wildcard: deny everything to everyone without TLS."""
    return st.get("Effect") == "Deny" and st.get("Condition") == INSECURE_TRANSPORT


def check_no_wildcards_anywhere(t: Template) -> None:
    statements = list(_statements(t))
    assert statements, "no IAM statements found at all"
    for st in statements:
        if _is_transport_deny(st):
            continue
        for key in ("Action", "NotAction", "Resource", "NotResource"):
            for value in as_list(st.get(key, [])):
                text = value if isinstance(value, str) else json.dumps(value)
                assert "*" not in text, f"wildcard in {key}: {st}"
        principal = st.get("Principal")
        assert principal != "*" and principal != {"AWS": "*"}, f"public principal: {st}"
    # No raw IAM resources or managed-policy ARNs smuggled in beside the SAM policies.
    for type_ in ("AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        assert not of_type(t, type_), type_


RECONCILER_ENV = {
    "INGEST_QUEUE_URL",
    "LEDGER_TABLE_NAME",
    "POWERLEADS_API_BASE_URL",
    "POWERLEADS_API_VERSION",
    "POWERLEADS_TOKEN_SECRET_ID",
    "RECONCILE_LOCATION_IDS",
    "RECONCILE_LOOKBACK_DAYS",
    "RECONCILE_LOOKAHEAD_DAYS",
}


def check_reconciler(t: Template) -> None:
    """Scheduled, no retries of a failed sweep, the contract env, its grants, its alarm and widget."""
    p = props(t, "ReconcilerFunction")
    (event,) = (p.get("Events") or {}).values()
    assert event["Type"] in ("ScheduleV2", "Schedule")
    assert param_default(t, event["Properties"]["ScheduleExpression"]) == "rate(15 minutes)"
    assert (p.get("EventInvokeConfig") or {}).get("MaximumRetryAttempts") == 0
    assert p["Timeout"] <= 900
    env = function_env(t, "ReconcilerFunction")
    assert set(env) >= RECONCILER_ENV
    assert is_ref(env["INGEST_QUEUE_URL"], "IngestQueue")
    assert is_ref(env["LEDGER_TABLE_NAME"], RECONCILER_TABLE)
    assert param_default(t, env["RECONCILE_LOOKBACK_DAYS"]) == 7
    assert param_default(t, env["RECONCILE_LOOKAHEAD_DAYS"]) == 90
    queues = [
        item["SQSSendMessagePolicy"]
        for raw in p["Policies"]
        for item in unwrap_if(raw)
        if "SQSSendMessagePolicy" in item
    ]
    assert queues == [{"QueueName": {"Fn::GetAtt": ["IngestQueue", "QueueName"]}}]
    (cursor,) = [st for st in _statements(t) if st.get("Sid") == "ReconcileCursorWrite"]
    assert cursor.get("Condition") == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["cursor#*"]}}
    (lease,) = [st for st in _statements(t) if st.get("Sid") == "ReconcileBudgetLease"]
    assert lease.get("Condition") == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["budget#*"]}}
    assert is_ref(env.get("BUDGET_TABLE_NAME"), RECONCILER_TABLE)
    alarms = [
        a
        for a in _alarms(t)
        if any(
            (m.get("MetricStat") or {}).get("Metric", {}).get("MetricName") == "ReconcileErrors"
            for m in a.get("Metrics") or []
        )
    ]
    assert len(alarms) == 1, "no alarm on ReconcileErrors"
    (alarm,) = alarms
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
    body = json.dumps(
        _sub_to_json(
            next(iter(of_type(t, "AWS::CloudWatch::Dashboard").values()))["Properties"]["DashboardBody"]
        )
    )
    assert '"ReconcileEnqueued"' in body and '"ReconcileErrors"' in body


def check_secure_transport(t: Template) -> None:
    """Every queue and topic has a resource policy denying requests without TLS."""
    covered: set[str] = set()
    for kind, key, action in (
        ("AWS::SQS::QueuePolicy", "Queues", "sqs:*"),
        ("AWS::SNS::TopicPolicy", "Topics", "sns:Publish"),
    ):
        for policy in of_type(t, kind).values():
            p = policy.get("Properties") or {}
            for st in (p.get("PolicyDocument") or {}).get("Statement") or []:
                if _is_transport_deny(st) and st.get("Action") == action and st.get("Principal") == "*":
                    targets = [ref["Ref"] for ref in p.get(key) or []]
                    resource = st.get("Resource")
                    assert len(targets) == 1, targets
                    assert resource in ({"Fn::GetAtt": [targets[0], "Arn"]}, {"Ref": targets[0]}), resource
                    covered.add(targets[0])
    wanted = set(of_type(t, "AWS::SQS::Queue")) | {
        k for k, v in of_type(t, "AWS::SNS::Topic").items() if v.get("Condition") is None
    }
    assert wanted <= covered, f"no aws:SecureTransport deny on {sorted(wanted - covered)}"


def check_parameters_refuse_unsafe_values(t: Template) -> None:
    params = t["Parameters"]
    pattern = re.compile(params["PowerLeadsApiBaseUrl"]["AllowedPattern"])
    assert pattern.match("https://services.leadconnectorhq.com")
    assert not pattern.match("http://services.leadconnectorhq.com")
    assert params["WebhookMaxAgeSeconds"].get("MaxValue", 10**12) <= 30 * 86400


def check_unsigned_mode_not_deployable(t: Template) -> None:
    """WEBHOOK_SIGNATURE_REQUIRED is the literal "true", not something a parameter can turn off."""
    assert function_env(t, "WebhookFunction")["WEBHOOK_SIGNATURE_REQUIRED"] == "true"
    assert not any("Signature" in name for name in t.get("Parameters") or {})


def check_token_secret_not_created(t: Template) -> None:
    assert not of_type(t, "AWS::SecretsManager::Secret")
    params = t.get("Parameters") or {}
    assert set(params) >= TOKEN_SECRET_PARAMS
    assert params["PowerLeadsTokenSecretArn"].get("Default") == ""


CHECKS: dict[str, Callable[[Template], None]] = {
    f.__name__: f
    for f in (
        check_sam_transform,
        check_handlers,
        check_runtime_and_arch,
        check_layer,
        check_http_api_route,
        check_intake_endpoint,
        check_ingest_queue,
        check_enricher_event_source,
        check_environment,
        check_idempotency_table,
        check_not_found_grace,
        check_output_fanout,
        check_log_groups,
        check_outputs,
        check_alarms,
        check_alarm_topic_conditions,
        check_dashboard,
        check_function_policies,
        check_enricher_grants,
        check_no_wildcards_anywhere,
        check_token_secret_not_created,
        check_secret_write_only_for_oauth,
        check_secure_transport,
        check_parameters_refuse_unsafe_values,
        check_unsigned_mode_not_deployable,
        check_reconciler,
    )
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_template_contract(template: Template, name: str) -> None:
    CHECKS[name](template)


# --------------------------------------------------------------------------------------------
# mutation self-test: removing (or loosening) what a check guards must make it fail
# --------------------------------------------------------------------------------------------
def _delete(*path: Any) -> Callable[[Template], None]:
    def mutate(t: Template) -> None:
        node: Any = t
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return mutate


def _set(value: Any, *path: Any) -> Callable[[Template], None]:
    def mutate(t: Template) -> None:
        node: Any = t
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return mutate


def _append_policy(fn: str, policy: Any) -> Callable[[Template], None]:
    def mutate(t: Template) -> None:
        t["Resources"][fn]["Properties"]["Policies"].append(policy)

    return mutate


R = "Resources"
P = "Properties"
GF = ("Globals", "Function")
ENR_ENV = (R, "EnricherFunction", P, "Environment", "Variables")
WH_ENV = (R, "WebhookFunction", P, "Environment", "Variables")
SQS_EVENT = (R, "EnricherFunction", P, "Events", "Ingest", P)
RECON = (R, "ReconcilerFunction", P)

MUTATIONS: list[tuple[str, str, Callable[[Template], None]]] = [
    ("transform", "check_sam_transform", _delete("Transform")),
    ("webhook handler", "check_handlers", _delete(R, "WebhookFunction", P, "Handler")),
    ("enricher codeuri", "check_handlers", _set("functions/other", R, "EnricherFunction", P, "CodeUri")),
    ("runtime", "check_runtime_and_arch", _delete(*GF, "Runtime")),
    ("arch", "check_runtime_and_arch", _set(["x86_64"], *GF, "Architectures")),
    ("tracing", "check_runtime_and_arch", _delete(*GF, "Tracing")),
    ("layers", "check_runtime_and_arch", _delete(*GF, "Layers")),
    ("layer build method", "check_layer", _delete(R, "SharedLayer", "Metadata", "BuildMethod")),
    ("layer build arch", "check_layer", _delete(R, "SharedLayer", "Metadata", "BuildArchitecture")),
    ("layer content", "check_layer", _delete(R, "SharedLayer", P, "ContentUri")),
    ("route", "check_http_api_route", _set("x", R, "WebhookApiInvokePermission", P, "SourceArn", "Fn::Sub")),
    ("route condition", "check_http_api_route", _delete(R, "WebhookApi", "Condition")),
    (
        "route integration",
        "check_http_api_route",
        _set(
            "1.0",
            R,
            "WebhookApi",
            P,
            "DefinitionBody",
            "paths",
            "/webhooks/appointments",
            "post",
            "x-amazon-apigateway-integration",
            "payloadFormatVersion",
        ),
    ),
    ("intake default", "check_intake_endpoint", _set("HttpApi", "Parameters", "IntakeEndpoint", "Default")),
    ("url auth", "check_intake_endpoint", _set("AWS_IAM", R, "WebhookFunctionUrl", P, "AuthType")),
    ("url condition", "check_intake_endpoint", _delete(R, "WebhookFunctionUrl", "Condition")),
    ("url invoke grant", "check_intake_endpoint", _delete(R, "WebhookFunctionUrlInvokePermission")),
    (
        "url invoke scope",
        "check_intake_endpoint",
        _delete(R, "WebhookFunctionUrlInvokePermission", P, "InvokedViaFunctionUrl"),
    ),
    ("api log group", "check_http_api_route", _delete(R, "WebhookApiAccessLogGroup", "Condition")),
    ("api grant", "check_intake_endpoint", _delete(R, "WebhookApiInvokePermission", "Condition")),
    ("api alarm", "check_intake_endpoint", _delete(R, "WebhookApi5xxAlarm", "Condition")),
    ("fifo", "check_ingest_queue", _delete(R, "IngestQueue", P, "FifoQueue")),
    ("content dedup", "check_ingest_queue", _delete(R, "IngestQueue", P, "ContentBasedDeduplication")),
    ("redrive", "check_ingest_queue", _delete(R, "IngestQueue", P, "RedrivePolicy")),
    ("dlq fifo", "check_ingest_queue", _delete(R, "IngestDLQ", P, "FifoQueue")),
    ("visibility", "check_ingest_queue", _delete(R, "IngestQueue", P, "VisibilityTimeout")),
    (
        "quarantine retention",
        "check_ingest_queue",
        _delete(R, "QuarantineQueue", P, "MessageRetentionPeriod"),
    ),
    ("partial batch", "check_enricher_event_source", _delete(*SQS_EVENT, "FunctionResponseTypes")),
    ("scaling", "check_enricher_event_source", _delete(*SQS_EVENT, "ScalingConfig")),
    (
        "scaling min",
        "check_enricher_event_source",
        _delete("Parameters", "EnricherMaximumConcurrency", "MinValue"),
    ),
    ("batch size", "check_enricher_event_source", _delete(*SQS_EVENT, "BatchSize")),
    ("ingest env", "check_environment", _delete(*WH_ENV, "INGEST_QUEUE_URL")),
    ("rsa key env", "check_environment", _delete(*WH_ENV, "WEBHOOK_RSA_PUBLIC_KEY")),
    ("dlq env", "check_environment", _delete(*ENR_ENV, "QUARANTINE_QUEUE_URL")),
    ("enricher max age", "check_environment", _delete(*ENR_ENV, "WEBHOOK_MAX_AGE_SECONDS")),
    ("token env", "check_environment", _delete(*ENR_ENV, "POWERLEADS_TOKEN_SECRET_ID")),
    ("output queue env", "check_environment", _delete(*ENR_ENV, "OUTPUT_QUEUE_URL")),
    (
        "powertools env",
        "check_environment",
        _delete(*GF, "Environment", "Variables", "POWERTOOLS_SERVICE_NAME"),
    ),
    ("double delivery", "check_environment", _delete(R, "EnrichedQueueSubscription", "Condition")),
    (
        "table key",
        "check_idempotency_table",
        _set([{"AttributeName": "pk", "KeyType": "HASH"}], R, "IdempotencyTable", P, "KeySchema"),
    ),
    ("table ttl", "check_idempotency_table", _delete(R, "IdempotencyTable", P, "TimeToLiveSpecification")),
    ("table sse", "check_idempotency_table", _delete(R, "IdempotencyTable", P, "SSESpecification")),
    ("grace env", "check_not_found_grace", _delete(*ENR_ENV, "NOT_FOUND_GRACE_SECONDS")),
    ("grace too long", "check_not_found_grace", _set(3600, "Parameters", "NotFoundGraceSeconds", "MaxValue")),
    ("ledger ttl", "check_idempotency_table", _delete(R, "LedgerTable", P, "TimeToLiveSpecification")),
    ("ledger env", "check_idempotency_table", _delete(*ENR_ENV, "LEDGER_TABLE_NAME")),
    (
        "ledger scan",
        "check_function_policies",
        _set(["dynamodb:Scan"], R, "EnricherFunction", P, "Policies", 6, "Statement", 0, "Action"),
    ),
    ("raw delivery", "check_output_fanout", _delete(R, "EnrichedQueueSubscription", P, "RawMessageDelivery")),
    (
        "source arn",
        "check_output_fanout",
        _delete(R, "EnrichedQueuePolicy", P, "PolicyDocument", "Statement", 0, "Condition"),
    ),
    ("enriched dlq", "check_output_fanout", _delete(R, "EnrichedQueue", P, "RedrivePolicy")),
    ("log retention", "check_log_groups", _delete(R, "EnricherLogGroup", P, "RetentionInDays")),
    ("log group", "check_log_groups", _delete(R, "WebhookLogGroup")),
    ("output", "check_outputs", _delete("Outputs", "DashboardUrl")),
    ("429 alarm", "check_alarms", _delete(R, "Upstream429Alarm")),
    ("auth alarm", "check_alarms", _delete(R, "UpstreamAuthFailureAlarm")),
    ("5xx alarm", "check_alarms", _delete(R, "WebhookApi5xxAlarm")),
    ("url 5xx alarm", "check_alarms", _delete(R, "WebhookUrl5xxAlarm")),
    ("age alarm", "check_alarms", _delete(R, "IngestOldestMessageAgeAlarm")),
    ("quarantine alarm", "check_alarms", _delete(R, "QuarantineDepthAlarm")),
    ("dlq alarm", "check_alarms", _delete(R, "IngestDLQDepthAlarm")),
    ("errors alarm", "check_alarms", _delete(R, "EnricherErrorsAlarm")),
    ("missing data", "check_alarms", _delete(R, "EnricherErrorsAlarm", P, "TreatMissingData")),
    ("alarm topic", "check_alarm_topic_conditions", _delete(R, "AlarmTopic", "Condition")),
    ("dashboard", "check_dashboard", _delete(R, "Dashboard")),
    ("dashboard json", "check_dashboard", _set({"Fn::Sub": "{not json"}, R, "Dashboard", P, "DashboardBody")),
    ("managed policy", "check_function_policies", _append_policy("WebhookFunction", "AdministratorAccess")),
    (
        "not allowlisted",
        "check_function_policies",
        _append_policy("EnricherFunction", {"S3CrudPolicy": {"BucketName": "b"}}),
    ),
    (
        "webhook extra",
        "check_function_policies",
        _append_policy("WebhookFunction", {"DynamoDBCrudPolicy": {"TableName": "t"}}),
    ),
    (
        "inline wildcard action",
        "check_function_policies",
        _append_policy(
            "EnricherFunction",
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "secretsmanager:*",
                        "Resource": {"Ref": "PowerLeadsTokenSecretArn"},
                    }
                ]
            },
        ),
    ),
    (
        "inline wildcard resource",
        "check_function_policies",
        _set(
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:*",
            R,
            "EnricherFunction",
            P,
            "Policies",
            5,
            "Fn::If",
            1,
            "Statement",
            0,
            "Resource",
        ),
    ),
    (
        "inline second statement",
        "check_function_policies",
        _append_policy(
            "EnricherFunction",
            {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "secretsmanager:PutSecretValue",
                        "Resource": {"Ref": "PowerLeadsTokenSecretArn"},
                    }
                ]
            },
        ),
    ),
    (
        "role override",
        "check_function_policies",
        _set("arn:aws:iam::123456789012:role/x", R, "WebhookFunction", P, "Role"),
    ),
    (
        "wrong queue",
        "check_enricher_grants",
        _set(
            {"QueueName": {"Fn::GetAtt": ["IngestQueue", "QueueName"]}},
            R,
            "EnricherFunction",
            P,
            "Policies",
            2,
            "SQSSendMessagePolicy",
        ),
    ),
    (
        "wrong table",
        "check_enricher_grants",
        _set(
            {"Fn::GetAtt": ["OtherTable", "Arn"]},
            R,
            "EnricherFunction",
            P,
            "Policies",
            4,
            "Statement",
            0,
            "Resource",
        ),
    ),
    (
        "table scan",
        "check_enricher_grants",
        _set(
            [*sorted(IDEMPOTENCY_ACTIONS), "dynamodb:Scan"],
            R,
            "EnricherFunction",
            P,
            "Policies",
            4,
            "Statement",
            0,
            "Action",
        ),
    ),
    (
        "crud template",
        "check_function_policies",
        _append_policy(
            "EnricherFunction", {"DynamoDBCrudPolicy": {"TableName": {"Ref": "IdempotencyTable"}}}
        ),
    ),
    (
        "secret write unconditional",
        "check_secret_write_only_for_oauth",
        lambda t: t[R]["EnricherFunction"][P]["Policies"].__setitem__(
            5, t[R]["EnricherFunction"][P]["Policies"][5]["Fn::If"][1]
        ),
    ),
    (
        "secret writable by default",
        "check_secret_write_only_for_oauth",
        _set("true", "Parameters", "PowerLeadsTokenSecretIsOAuthApp", "Default"),
    ),
    ("dlq plain transport", "check_secure_transport", _delete(R, "IngestDLQPolicy")),
    ("topic plain transport", "check_secure_transport", _delete(R, "EnrichedTopicPolicy")),
    (
        "enriched queue plain transport",
        "check_secure_transport",
        _delete(R, "EnrichedQueuePolicy", P, "PolicyDocument", "Statement", 1),
    ),
    (
        "transport deny turned allow",
        "check_no_wildcards_anywhere",
        _set("Allow", R, "IngestQueuePolicy", P, "PolicyDocument", "Statement", 0, "Effect"),
    ),
    (
        "http upstream",
        "check_parameters_refuse_unsafe_values",
        _set("^https?://[^\\s]+$", "Parameters", "PowerLeadsApiBaseUrl", "AllowedPattern"),
    ),
    (
        "max age unbounded",
        "check_parameters_refuse_unsafe_values",
        _delete("Parameters", "WebhookMaxAgeSeconds", "MaxValue"),
    ),
    (
        "signature switch",
        "check_unsigned_mode_not_deployable",
        _set({"Ref": "WebhookSignatureRequired"}, *WH_ENV, "WEBHOOK_SIGNATURE_REQUIRED"),
    ),
    ("write-back alarm", "check_alarms", _delete(R, "OAuthWriteBackFailedAlarm")),
    ("unsigned alarm", "check_alarms", _delete(R, "WebhookUnsignedAcceptedAlarm")),
    (
        "queue policy wildcard",
        "check_no_wildcards_anywhere",
        _set("sqs:*", R, "EnrichedQueuePolicy", P, "PolicyDocument", "Statement", 0, "Action"),
    ),
    (
        "public principal",
        "check_no_wildcards_anywhere",
        _set("*", R, "EnrichedQueuePolicy", P, "PolicyDocument", "Statement", 0, "Principal"),
    ),
    (
        "raw role",
        "check_no_wildcards_anywhere",
        _set(
            {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "Policies": [
                        {
                            "PolicyDocument": {
                                "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]
                            }
                        }
                    ]
                },
            },
            R,
            "Sneaky",
        ),
    ),
    (
        "reconcile schedule",
        "check_reconciler",
        _set("rate(1 day)", "Parameters", "ReconcileSchedule", "Default"),
    ),
    ("reconcile retries", "check_reconciler", _delete(*RECON, "EventInvokeConfig")),
    (
        "reconcile env",
        "check_reconciler",
        _delete(*RECON, "Environment", "Variables", "RECONCILE_LOOKAHEAD_DAYS"),
    ),
    (
        "reconcile any queue",
        "check_reconciler",
        _set({"SQSSendMessagePolicy": {"QueueName": "other"}}, *RECON, "Policies", 0),
    ),
    ("cursor any key", "check_reconciler", _delete(*RECON, "Policies", 2, "Statement", 1, "Condition")),
    ("reconcile alarm", "check_reconciler", _delete(R, "ReconcileErrorsAlarm")),
    ("budget any key", "check_reconciler", _delete(*RECON, "Policies", 2, "Statement", 2, "Condition")),
    ("enricher budget env", "check_environment", _delete(*ENR_ENV, "BUDGET_TABLE_NAME")),
    ("budget env", "check_reconciler", _delete(*RECON, "Environment", "Variables", "BUDGET_TABLE_NAME")),
    ("daily budget alarm", "check_alarms", _delete(R, "DailyBudgetParkedAlarm")),
    (
        "hand back any queue",
        "check_function_policies",
        _set(
            {"Fn::GetAtt": ["EnrichedQueue", "Arn"]},
            R,
            "EnricherFunction",
            P,
            "Policies",
            8,
            "Statement",
            0,
            "Resource",
        ),
    ),
    (
        "reconcile scan",
        "check_function_policies",
        _set(["dynamodb:Scan"], *RECON, "Policies", 2, "Statement", 0, "Action"),
    ),
    (
        "secret created",
        "check_token_secret_not_created",
        _set({"Type": "AWS::SecretsManager::Secret", "Properties": {}}, R, "TokenSecret"),
    ),
]


@pytest.mark.parametrize(("label", "check", "mutate"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_check_catches_mutation(
    template: Template, label: str, check: str, mutate: Callable[[Template], None]
) -> None:
    mutated = copy.deepcopy(template)
    mutate(mutated)
    with pytest.raises(AssertionError):
        CHECKS[check](mutated)


def test_every_check_has_a_mutation() -> None:
    assert {m[1] for m in MUTATIONS} == set(CHECKS)


def test_the_dev_loader_names_each_function_as_the_template_does(template: Template) -> None:
    """Log lines of the local stack name a function by ``lambda_loader.function_id``."""
    from dev.fakes.lambda_loader import function_id  # noqa: PLC0415

    functions = of_type(template, "AWS::Serverless::Function")
    assert set(functions) == set(FUNCTIONS)
    for logical_id, resource in functions.items():
        code_uri = resource["Properties"]["CodeUri"]
        assert function_id(code_uri.removeprefix("functions/")) == logical_id, code_uri
