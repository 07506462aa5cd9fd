"""dev.stack.cfn: the template loader and the intrinsic functions the local stack resolves."""

from __future__ import annotations

import pytest

from dev.stack.cfn import NO_VALUE, Physical, Resolver, TemplateError, load_template, references

TEMPLATE = {
    "Parameters": {
        "Mode": {"Type": "String", "Default": "topic"},
        "Email": {"Type": "String", "Default": ""},
        "Count": {"Type": "Number", "Default": 5},
    },
    "Mappings": {"Sizes": {"topic": {"batch": 10}}},
    "Conditions": {
        "IsTopic": {"Fn::Equals": [{"Ref": "Mode"}, "topic"]},
        "HasEmail": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Email"}, ""]}]},
        "Both": {"Fn::And": [{"Condition": "IsTopic"}, {"Condition": "HasEmail"}]},
        "Either": {"Fn::Or": [{"Condition": "IsTopic"}, {"Condition": "HasEmail"}]},
    },
}
QUEUE = Physical("Queue", "AWS::SQS::Queue", "http://q", {"Arn": "arn:aws:sqs:us-east-1:123456789012:q"})


def resolver(**parameters: object) -> Resolver:
    return Resolver(TEMPLATE, parameters, {"Queue": QUEUE})


def test_refs_to_parameters_pseudo_parameters_and_resources() -> None:
    r = resolver(Mode="queue")
    assert r.resolve({"Ref": "Mode"}) == "queue"
    assert r.resolve({"Ref": "Count"}) == 5
    assert r.resolve({"Ref": "AWS::Region"}) == "us-east-1"
    assert r.resolve({"Ref": "Queue"}) == "http://q"
    assert r.resolve({"Fn::GetAtt": ["Queue", "Arn"]}) == QUEUE.attributes["Arn"]
    assert r.resolve({"Fn::GetAtt": "Queue.Arn"}) == QUEUE.attributes["Arn"]


def test_conditions_and_if_drop_no_value() -> None:
    r = resolver()
    assert (r.condition("IsTopic"), r.condition("HasEmail"), r.condition("Both"), r.condition("Either")) == (
        True,
        False,
        False,
        True,
    )
    node = {
        "A": {"Fn::If": ["IsTopic", "yes", "no"]},
        "B": {"Fn::If": ["HasEmail", {"Ref": "Email"}, {"Ref": "AWS::NoValue"}]},
        "C": [1, {"Ref": "AWS::NoValue"}, 2],
    }
    assert r.resolve(node) == {"A": "yes", "C": [1, 2]}
    assert resolver(Mode="queue").included({"Condition": "IsTopic"}) is False
    assert r.resolve({"Ref": "AWS::NoValue"}) is NO_VALUE


def test_sub_select_and_join() -> None:
    r = resolver()
    assert r.resolve({"Fn::Sub": "arn:${AWS::Partition}:x:${AWS::Region}:${Queue.Arn}:${Mode}-${!Lit}"}) == (
        f"arn:aws:x:us-east-1:{QUEUE.attributes['Arn']}:topic-${{Lit}}"
    )
    assert r.resolve({"Fn::Sub": ["${Name}/${Count}", {"Name": {"Ref": "Queue"}}]}) == "http://q/5"
    assert r.resolve({"Fn::Select": [1, ["a", {"Ref": "Mode"}]]}) == "topic"
    assert r.resolve({"Fn::Join": ["-", ["a", {"Ref": "Count"}]]}) == "a-5"
    assert r.resolve({"Fn::Split": [",", "a,b"]}) == ["a", "b"]
    assert r.resolve({"Fn::FindInMap": ["Sizes", {"Ref": "Mode"}, "batch"]}) == 10


def test_what_cannot_be_resolved_says_so() -> None:
    r = resolver()
    with pytest.raises(TemplateError, match="Missing"):
        r.resolve({"Ref": "Missing"})
    with pytest.raises(TemplateError, match="QueueName"):
        r.resolve({"Fn::GetAtt": ["Queue", "QueueName"]})
    with pytest.raises(TemplateError, match="unknown parameters"):
        Resolver(TEMPLATE, {"Nope": 1})


def test_references_for_ordering() -> None:
    node = {"A": {"Ref": "X"}, "B": {"Fn::GetAtt": ["Y", "Arn"]}, "C": {"Fn::Sub": "${Z.Arn}/${AWS::Region}"}}
    assert set(references(node)) == {"X", "Y", "Z", "AWS::Region"}


def test_the_loader_reads_short_forms_as_long_forms() -> None:
    template = load_template()
    queue = template["Resources"]["IngestQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["IngestDLQ", "Arn"]}
    assert type(template) is dict and type(queue) is dict  # plain builtins, safe to deepcopy and dump
