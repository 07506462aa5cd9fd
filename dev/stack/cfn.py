"""template.yaml as data: one loader (cfn-lint's decoder) and the intrinsic functions the local stack needs.

Dev only, never ships. ``tests/unit/test_template.py`` and ``dev.stack.awslocal`` both read the template
through :func:`load_template`; :class:`Resolver` evaluates ``Ref``, ``Fn::GetAtt``, ``Fn::Sub``,
``Fn::If`` with the template's Conditions (``Fn::Equals``/``Not``/``And``/``Or``/``Condition``),
``Fn::Select``, ``Fn::Join``, ``Fn::Split`` and ``Fn::FindInMap`` for chosen parameter values and
the physical ids of the resources created so far.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"

Template = dict[str, Any]


class TemplateError(ValueError):
    """The template cannot be read, or a value in it cannot be resolved locally."""


def load_template(path: Path = TEMPLATE_PATH) -> Template:
    """The template as plain dicts and lists (short-form tags in their long form: ``{"Ref": x}``,
    ``{"Fn::GetAtt": [name, attr]}``); YAML and JSON both, as cfn-lint reads them."""
    template, problems = decode(str(path))
    if problems or not isinstance(template, dict):
        raise TemplateError(f"{path}: {'; '.join(str(p) for p in problems) or 'not a mapping'}")
    plain: Template = json.loads(json.dumps(template))  # cfn-lint's node classes -> builtins
    return plain


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()  # what ``Ref AWS::NoValue`` resolves to: the key or item is dropped


@dataclass
class Physical:
    """A created resource: what ``Ref`` returns and what ``Fn::GetAtt`` can read."""

    logical_id: str
    type: str
    ref: str
    attributes: dict[str, str] = field(default_factory=dict)


_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


@dataclass
class Resolver:
    """Evaluates intrinsic functions against parameter values and the resources created so far."""

    template: Template
    parameters: Mapping[str, Any] = field(default_factory=dict)
    physical: Mapping[str, Physical] = field(default_factory=dict)
    region: str = "us-east-1"
    account_id: str = "123456789012"
    stack_name: str = "local"

    def __post_init__(self) -> None:
        declared = self.template.get("Parameters") or {}
        unknown = set(self.parameters) - set(declared)
        if unknown:
            raise TemplateError(f"unknown parameters: {sorted(unknown)}")
        self.values: dict[str, Any] = {
            name: self.parameters.get(name, spec.get("Default")) for name, spec in declared.items()
        }
        missing = sorted(name for name, value in self.values.items() if value is None)
        if missing:
            raise TemplateError(f"parameters without a default need a value: {missing}")
        self.pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}",
            "AWS::NoValue": NO_VALUE,
        }
        self._conditions: dict[str, bool] = {}
        self._functions: dict[str, Callable[[Any], Any]] = {
            "Ref": self._ref,
            "Fn::GetAtt": self._get_att,
            "Fn::Sub": self._sub,
            "Fn::If": self._if,
            "Fn::Equals": self._equals,
            "Fn::Not": lambda args: not self._truth(args[0]),
            "Fn::And": lambda args: all(self._truth(a) for a in args),
            "Fn::Or": lambda args: any(self._truth(a) for a in args),
            "Condition": self.condition,
            "Fn::Select": self._select,
            "Fn::Join": lambda args: str(args[0]).join(str(v) for v in self.resolve(args[1])),
            "Fn::Split": lambda args: str(self.resolve(args[1])).split(args[0]),
            "Fn::FindInMap": self._find_in_map,
        }

    # ---- conditions ---------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.template.get("Conditions") or {}
            if name not in conditions:
                raise TemplateError(f"unknown condition {name!r}")
            self._conditions[name] = self._truth(conditions[name])
        return self._conditions[name]

    def included(self, resource: Mapping[str, Any]) -> bool:
        """Whether a resource (or output) exists under these parameters."""
        name = resource.get("Condition")
        return True if name is None else self.condition(name)

    def _truth(self, node: Any) -> bool:
        value = self.resolve(node)
        if not isinstance(value, bool):
            raise TemplateError(f"condition {node!r} is not a boolean")
        return value

    # ---- values -------------------------------------------------------------------------

    def resolve(self, node: Any) -> Any:
        """``node`` with every intrinsic function evaluated; ``AWS::NoValue`` keys and items dropped."""
        if isinstance(node, dict):
            if len(node) == 1:
                ((key, args),) = node.items()
                function = self._functions.get(key)
                if function is not None:
                    return function(args)
            resolved = {key: self.resolve(value) for key, value in node.items()}
            return {key: value for key, value in resolved.items() if value is not NO_VALUE}
        if isinstance(node, list):
            return [value for value in (self.resolve(item) for item in node) if value is not NO_VALUE]
        return node

    def _ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.values:
            return self.values[name]
        return self._resource(name).ref

    def _resource(self, name: str) -> Physical:
        if name not in self.physical:
            raise TemplateError(f"{name} is referenced but was not created locally")
        return self.physical[name]

    def _get_att(self, args: Any) -> str:
        name, attribute = args.split(".", 1) if isinstance(args, str) else self.resolve(args)
        resource = self._resource(name)
        if attribute not in resource.attributes:
            raise TemplateError(f"{name}.{attribute} is not known locally ({resource.type})")
        return resource.attributes[attribute]

    def _sub(self, args: Any) -> str:
        text, variables = (args, {}) if isinstance(args, str) else (args[0], self.resolve(args[1]))

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.physical:
                return self._get_att(name)
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(value, text).replace("${!", "${")

    def _if(self, args: Any) -> Any:
        name, yes, no = args
        return self.resolve(yes if self.condition(name) else no)

    def _equals(self, args: Any) -> bool:
        left, right = (text(self.resolve(a)) for a in args)
        return left == right

    def _find_in_map(self, args: Any) -> Any:
        name, first, second = (self.resolve(a) for a in args[:3])
        return (self.template.get("Mappings") or {})[name][first][second]

    def _select(self, args: Any) -> Any:
        index, items = self.resolve(args[0]), self.resolve(args[1])
        return items[int(index)]


def text(value: Any) -> str:
    """A resolved scalar as CloudFormation passes it on: ``true``/``false`` for booleans."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def references(node: Any) -> Iterator[str]:
    """Names a node refers to (``Ref``, ``Fn::GetAtt``, ``${...}`` in ``Fn::Sub``), for ordering."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "Ref" and isinstance(value, str):
                yield value
            elif key == "Fn::GetAtt":
                yield (value.split(".", 1) if isinstance(value, str) else value)[0]
            elif key == "Fn::Sub":
                text = value if isinstance(value, str) else value[0]
                yield from (m.split(".", 1)[0] for m in _SUB_VARIABLE.findall(text))
                yield from references(value if isinstance(value, str) else value[1])
            else:
                yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)
