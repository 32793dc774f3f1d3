"""Read template.yaml the way CloudFormation would: SAM transform, parameters, intrinsic functions.

The twin takes every name, setting and wiring from here, so template.yaml stays the single source.
Only local paths are special: CodeUri and DefinitionUri point at folders/files in the repository.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

ACCOUNT_ID = "123456789012"  # moto's default account
PLACEHOLDER_CODE_BUCKET = "local-twin-code"


class TemplateError(Exception):
    """The template uses something the twin cannot resolve."""


class _AwsManagedPolicies(dict):
    """SAM asks IAM for managed-policy ARNs; offline, AWS managed policies have well-known ARNs."""

    def __missing__(self, name: str) -> str:
        return f"arn:aws:iam::aws:policy/{name}"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and "/" not in name and ":" not in name


def _aws_managed_policies() -> dict[str, str]:
    return _AwsManagedPolicies()


def check_parameter(name: str, spec: dict[str, Any], value: Any) -> None:
    """TemplateError unless ``value`` satisfies ``spec`` the way CloudFormation checks it at deploy time."""
    text = str(value)
    because = f": {spec['ConstraintDescription']}" if "ConstraintDescription" in spec else ""
    if spec.get("Type") == "Number":
        try:
            number = float(text)
        except ValueError:
            raise TemplateError(f"Parameter '{name}' must be a number, got {text!r}") from None
        if "MinValue" in spec and number < float(spec["MinValue"]):
            raise TemplateError(f"Parameter '{name}' must be a number not less than {spec['MinValue']}, got {text}")
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            raise TemplateError(f"Parameter '{name}' must be a number not greater than {spec['MaxValue']}, got {text}")
        if "AllowedValues" in spec and number not in {float(v) for v in spec["AllowedValues"]}:
            allowed = ", ".join(str(v) for v in spec["AllowedValues"])
            raise TemplateError(f"Parameter '{name}' must be one of AllowedValues ({allowed}), got {text}")
        return
    if "AllowedValues" in spec and text not in {str(v) for v in spec["AllowedValues"]}:
        allowed = ", ".join(str(v) for v in spec["AllowedValues"])
        raise TemplateError(f"Parameter '{name}' must be one of AllowedValues ({allowed}), got {text!r}")
    if "MinLength" in spec and len(text) < int(spec["MinLength"]):
        raise TemplateError(f"Parameter '{name}' must contain at least {spec['MinLength']} characters")
    if "MaxLength" in spec and len(text) > int(spec["MaxLength"]):
        raise TemplateError(f"Parameter '{name}' must contain at most {spec['MaxLength']} characters")
    # CloudFormation matches AllowedPattern against the whole value.
    if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], text):
        raise TemplateError(f"Parameter '{name}' failed to satisfy constraint{because or ' ' + spec['AllowedPattern']}"
                            f" (got {text!r})")


@dataclass
class Stack:
    """The transformed template with physical names for a stack called ``name`` in ``region``."""

    name: str
    region: str
    root: Path
    resources: dict[str, dict[str, Any]]
    parameters: dict[str, Any]
    conditions: dict[str, bool] = field(default_factory=dict)
    code_dirs: dict[str, Path] = field(default_factory=dict)
    definition_files: dict[str, Path] = field(default_factory=dict)
    physical_ids: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    # Where the emulator serves SQS queue URLs (Ref of a queue), e.g. "http://127.0.0.1:4566".
    queue_url_base: str | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, template_path: Path, *, name: str, region: str, parameters: dict[str, str],
             partition: str = "aws") -> "Stack":
        template_path = Path(template_path).resolve()
        root = template_path.parent
        raw = yaml_parse(template_path.read_text())
        code_dirs, definition_files = _inline_local_paths(raw, root)
        declared = raw.get("Parameters", {})
        unknown = set(parameters) - set(declared)
        if unknown:
            raise TemplateError(f"unknown template parameters: {', '.join(sorted(unknown))}")
        values = {k: v["Default"] for k, v in declared.items() if "Default" in v}
        values.update(parameters)
        missing = [k for k in declared if k not in values]
        if missing:
            raise TemplateError(f"parameters without a value: {', '.join(missing)}")
        for key, value in values.items():
            check_parameter(key, declared[key], value)
        pseudo = {"AWS::Region": region, "AWS::AccountId": ACCOUNT_ID, "AWS::Partition": partition,
                  "AWS::StackName": name, "AWS::URLSuffix": "amazonaws.com",
                  # CloudFormation's stack ids end in a UUID; the twin's is derived from the name, so it is stable.
                  "AWS::StackId": f"arn:{partition}:cloudformation:{region}:{ACCOUNT_ID}:stack/{name}/"
                                  f"{uuid.uuid5(uuid.NAMESPACE_URL, name)}"}
        # The same translator `sam build` and cfn-lint use; its session only supplies the region.
        translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
        transformed = translator.translate(raw, parameter_values={**values, **pseudo},
                                           get_managed_policy_map=_aws_managed_policies)
        # A CommaDelimitedList parameter is a list wherever it is referred to, as in CloudFormation.
        lists = {k: [part.strip() for part in str(v).split(",")] for k, v in values.items()
                 if declared[k].get("Type") == "CommaDelimitedList"}
        stack = cls(name=name, region=region, root=root, resources=transformed["Resources"],
                    parameters={**values, **lists, **pseudo})
        # SAM names generated resources after their source, so map code dirs onto the translated logical ids.
        stack.code_dirs = {lid: code_dirs[lid] for lid in code_dirs if lid in stack.resources}
        stack.definition_files = definition_files
        stack.outputs = transformed.get("Outputs", {})
        stack.conditions = {k: bool(stack.resolve(v)) for k, v in transformed.get("Conditions", {}).items()}
        stack._name_resources()
        return stack

    def references(self, logical_id: str) -> set[str]:
        """The resources a resource's properties name (Ref, Fn::GetAtt, ${...} in Fn::Sub)."""
        found: set[str] = set()

        def walk(value: Any) -> None:
            if isinstance(value, list):
                for item in value:
                    walk(item)
            elif isinstance(value, dict):
                for key, arg in value.items():
                    if key == "Ref" and isinstance(arg, str):
                        found.add(arg)
                    elif key == "Fn::GetAtt":
                        found.add((arg.split(".", 1) if isinstance(arg, str) else arg)[0])
                    elif key == "Fn::Sub":
                        text = arg if isinstance(arg, str) else arg[0]
                        found.update(name.split(".", 1)[0] for name in re.findall(r"\$\{([^!}][^}]*)\}", text))
                    walk(arg)

        walk(self.resources[logical_id].get("Properties", {}))
        return found & set(self.resources)

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {lid: r for lid, r in self.resources.items()
                if r["Type"] == resource_type and self.conditions.get(r.get("Condition", ""), True)}

    def api_functions(self) -> set[str]:
        """The functions an HTTP API invokes (SAM gives each of its HttpApi events a Lambda permission)."""
        return {p["Properties"]["FunctionName"]["Ref"] for p in self.of_type("AWS::Lambda::Permission").values()
                if p["Properties"].get("Principal") == "apigateway.amazonaws.com"
                and isinstance(p["Properties"].get("FunctionName"), dict) and "Ref" in p["Properties"]["FunctionName"]}

    def properties(self, logical_id: str) -> dict[str, Any]:
        return self.resolve(self.resources[logical_id].get("Properties", {}))

    # ------------------------------------------------------------------ names and attributes
    def _name_resources(self) -> None:
        """Every resource's physical name; a name built from another's (a log group named after its
        function) waits for that one, as CloudFormation orders them by their references."""
        pending = dict(self.resources)
        while pending:
            named = {}
            for lid, resource in pending.items():
                try:
                    named[lid] = self._physical_id(lid, resource)
                except KeyError:  # refers to a resource not named yet
                    continue
            if not named:
                raise TemplateError(f"resource names refer to each other in a circle: {', '.join(sorted(pending))}")
            self.physical_ids.update(named)
            pending = {lid: r for lid, r in pending.items() if lid not in named}

    def _physical_id(self, logical_id: str, resource: dict[str, Any]) -> str:
        """Stable names (same stack name -> same names), shaped like CloudFormation's generated ones."""
        props = resource.get("Properties", {})
        explicit = {"AWS::S3::Bucket": "BucketName", "AWS::SQS::Queue": "QueueName",
                    "AWS::DynamoDB::Table": "TableName", "AWS::Lambda::Function": "FunctionName",
                    "AWS::StepFunctions::StateMachine": "StateMachineName", "AWS::Events::Rule": "Name",
                    "AWS::Logs::LogGroup": "LogGroupName",
                    "AWS::Cognito::UserPoolGroup": "GroupName"}.get(resource["Type"])
        if explicit and explicit in props:
            return str(self.resolve(props[explicit]))
        suffix = hashlib.sha256(f"{self.name}/{logical_id}".encode()).hexdigest()[:12].upper()
        name = f"{self.name}-{logical_id}-{suffix}"
        if resource["Type"] == "AWS::S3::Bucket":
            return name.lower()[:63]
        return name[:64]

    def ref(self, logical_id: str) -> str:
        if logical_id in self.parameters:
            return self.parameters[logical_id]
        if logical_id not in self.resources:
            raise TemplateError(f"Ref to unknown resource {logical_id}")
        kind, pid = self.resources[logical_id]["Type"], self.physical_ids[logical_id]
        return {
            "AWS::SQS::Queue": f"{self.queue_url_base or f'https://sqs.{self.region}.amazonaws.com'}/{ACCOUNT_ID}/{pid}",
            "AWS::StepFunctions::StateMachine": self.arn("states", f"stateMachine:{pid}"),
            "AWS::SNS::Topic": self.arn("sns", pid),
        }.get(kind, pid)

    @property
    def partition(self) -> str:
        return self.parameters["AWS::Partition"]

    def arn(self, service: str, resource: str) -> str:
        if service == "s3":
            return f"arn:{self.partition}:s3:::{resource}"
        return f"arn:{self.partition}:{service}:{self.region}:{ACCOUNT_ID}:{resource}"

    def get_att(self, logical_id: str, attribute: str) -> str:
        kind, pid = self.resources[logical_id]["Type"], self.physical_ids[logical_id]
        if attribute == "Arn":
            return {
                "AWS::S3::Bucket": self.arn("s3", pid),
                "AWS::SQS::Queue": self.arn("sqs", pid),
                "AWS::DynamoDB::Table": self.arn("dynamodb", f"table/{pid}"),
                "AWS::Lambda::Function": self.arn("lambda", f"function:{pid}"),
                "AWS::StepFunctions::StateMachine": self.arn("states", f"stateMachine:{pid}"),
                "AWS::Logs::LogGroup": self.arn("logs", f"log-group:{pid}:*"),
                "AWS::IAM::Role": f"arn:{self.partition}:iam::{ACCOUNT_ID}:role/{pid}",
                "AWS::CloudWatch::Alarm": self.arn("cloudwatch", f"alarm:{pid}"),
                "AWS::Events::Rule": self.arn("events", f"rule/{pid}"),
                "AWS::Cognito::UserPool": self.arn("cognito-idp", f"userpool/{pid}"),
            }.get(kind) or _unsupported(logical_id, attribute)
        if kind == "AWS::Cognito::UserPool" and attribute in ("ProviderURL", "ProviderName"):
            return f"cognito-idp.{self.region}.amazonaws.com/{pid}"
        if attribute in ("QueueName", "Name"):
            return pid
        if attribute == "QueueUrl":
            return self.ref(logical_id)
        return _unsupported(logical_id, attribute)

    # ------------------------------------------------------------------ intrinsic functions
    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, arg), = value.items()
            fn = _INTRINSICS.get(key)
            if fn:
                return fn(self, arg)
        return {k: r for k, r in ((k, self.resolve(v)) for k, v in value.items()) if r is not _NO_VALUE}

    def _ref(self, name: str) -> Any:
        return _NO_VALUE if name == "AWS::NoValue" else self.ref(name)

    def _get_att(self, arg: Any) -> str:
        logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
        return self.get_att(logical_id, self.resolve(attribute))

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.resources:
                return str(self.get_att(*name.split(".", 1)))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def _if(self, arg: list[Any]) -> Any:
        condition, if_true, if_false = arg
        return self.resolve(if_true if self.conditions[condition] else if_false)


_NO_VALUE = object()


def _unsupported(logical_id: str, attribute: str) -> str:
    raise TemplateError(f"the twin cannot resolve Fn::GetAtt {logical_id}.{attribute}")


_INTRINSICS = {
    "Ref": lambda s, a: s._ref(a),
    "Fn::GetAtt": lambda s, a: s._get_att(a),
    "Fn::Sub": lambda s, a: s._sub(a),
    "Fn::Join": lambda s, a: a[0].join(str(x) for x in s.resolve(a[1])),
    "Fn::Select": lambda s, a: s.resolve(a[1])[int(s.resolve(a[0]))],
    "Fn::Split": lambda s, a: s.resolve(a[1]).split(a[0]),
    "Fn::If": lambda s, a: s._if(a),
    "Fn::Equals": lambda s, a: s.resolve(a[0]) == s.resolve(a[1]),
    "Fn::Not": lambda s, a: not s.resolve(a[0]),
    "Fn::And": lambda s, a: all(s.resolve(x) for x in a),
    "Fn::Or": lambda s, a: any(s.resolve(x) for x in a),
    "Condition": lambda s, a: s.conditions[a],
}


def _inline_local_paths(raw: dict[str, Any], root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Replace local CodeUri/DefinitionUri with what the transform accepts offline, remembering the paths.

    `sam build`/`sam package` do the same job by uploading; the twin runs the code in place instead.
    """
    code_dirs: dict[str, Path] = {}
    definition_files: dict[str, Path] = {}
    globals_code = raw.get("Globals", {}).get("Function", {}).get("CodeUri")
    for logical_id, resource in raw.get("Resources", {}).items():
        props = resource.setdefault("Properties", {})
        if resource.get("Type") == "AWS::Serverless::Function":
            code_uri = props.get("CodeUri", globals_code)
            if not isinstance(code_uri, str) or code_uri.startswith("s3://"):
                raise TemplateError(f"{logical_id}: the twin runs local code only (CodeUri must be a folder)")
            code_dirs[logical_id] = (root / code_uri).resolve()
            props["CodeUri"] = f"s3://{PLACEHOLDER_CODE_BUCKET}/{logical_id}.zip"
        elif resource.get("Type") == "AWS::Serverless::StateMachine" and isinstance(props.get("DefinitionUri"), str):
            path = (root / props.pop("DefinitionUri")).resolve()
            definition_files[logical_id] = path
            props["Definition"] = json.loads(path.read_text())
    return code_dirs, definition_files


def state_machine_definition(stack: Stack, logical_id: str) -> str:
    """The definition string with DefinitionSubstitutions applied, as Step Functions receives it."""
    props = stack.properties(logical_id)
    definition = props.get("DefinitionString")
    if definition is None:
        definition = json.dumps(props["Definition"])
    substitutions = props.get("DefinitionSubstitutions", {})

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in substitutions:
            raise TemplateError(f"{logical_id}: ${{{name}}} has no DefinitionSubstitutions entry")
        return str(substitutions[name])

    return re.sub(r"\$\{([^}]+)\}", replace, definition)


