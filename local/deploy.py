"""Create a transformed template's resources in the emulated AWS services, as CloudFormation would.

Only the resource types the workflow needs at run time are created; the rest (alarms, dashboard, SNS,
log groups, managed policies) are listed as not emulated. Functions are handed to the local Lambda runtime
with temporary credentials of their own IAM role, as Lambda gives them (moto checks those calls against the
role's policies: local/moto_strict.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from local.lambda_runtime import LambdaRuntime, LocalFunction
from local.template import Stack, state_machine_definition

log = logging.getLogger("twin.deploy")

CREATED_TYPES = ("AWS::IAM::Role", "AWS::S3::Bucket", "AWS::SQS::Queue", "AWS::DynamoDB::Table",
                 "AWS::Lambda::Function", "AWS::StepFunctions::StateMachine", "AWS::Events::Rule",
                 "AWS::Cognito::UserPool", "AWS::Cognito::UserPoolDomain", "AWS::Cognito::UserPoolResourceServer",
                 "AWS::Cognito::UserPoolClient", "AWS::Cognito::UserPoolGroup", "AWS::ApiGatewayV2::Api",
                 "AWS::ApiGatewayV2::Stage", "AWS::ApiGatewayV2::Authorizer", "AWS::ApiGatewayV2::Integration",
                 "AWS::ApiGatewayV2::Route")


@dataclass
class Deployment:
    stack: Stack
    outputs: dict[str, str]
    functions: dict[str, LocalFunction] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)  # logical id -> type
    # logical id -> temporary credentials of the state machine's role (what it acts with, as in Step Functions)
    state_machine_credentials: dict[str, dict[str, str]] = field(default_factory=dict)
    apis: dict[str, str] = field(default_factory=dict)  # logical id -> the HTTP API's id in apigatewayv2


def deploy(stack: Stack, clients, runtime: LambdaRuntime, api_function_concurrency: int | None = None) -> Deployment:
    """``clients(service)`` returns a boto3 client for the emulator; functions an HTTP API invokes get
    ``api_function_concurrency`` workers each (the runtime's default otherwise)."""
    deployment = Deployment(stack=stack, outputs={})
    for lid, resource in stack.resources.items():
        if resource["Type"] not in CREATED_TYPES:
            deployment.skipped[lid] = resource["Type"]
    for lid in stack.of_type("AWS::IAM::Role"):
        _role(clients("iam"), stack.physical_ids[lid], stack.properties(lid))
    for lid in stack.of_type("AWS::S3::Bucket"):
        _bucket(clients("s3"), stack.physical_ids[lid], stack.properties(lid))
    # Dead-letter queues first: a redrive policy names its target queue, which must exist.
    queues = sorted(stack.of_type("AWS::SQS::Queue"), key=lambda lid: "RedrivePolicy" in stack.properties(lid))
    for lid in queues:
        props = stack.properties(lid)
        attributes = {k: str(props[k]) for k in ("MessageRetentionPeriod", "VisibilityTimeout", "DelaySeconds")
                      if k in props}
        if "RedrivePolicy" in props:
            attributes["RedrivePolicy"] = json.dumps(props["RedrivePolicy"])
        clients("sqs").create_queue(QueueName=stack.physical_ids[lid], Attributes=attributes)
    for lid in stack.of_type("AWS::DynamoDB::Table"):
        props = stack.properties(lid)
        clients("dynamodb").create_table(TableName=stack.physical_ids[lid], KeySchema=props["KeySchema"],
                                         AttributeDefinitions=props["AttributeDefinitions"],
                                         BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"))
    # In CloudFormation's order of dependencies: an app client whose callback is on an API comes after the API,
    # and the API's own authorizers, integrations and routes after that client (template.yaml: ReviewClient).
    apis = set(stack.of_type("AWS::ApiGatewayV2::Api"))
    on_api = {lid for lid in stack.of_type("AWS::Cognito::UserPoolClient") if stack.references(lid) & apis}
    _identity(stack, clients("cognito-idp"), skip=on_api)
    for lid in apis:
        deployment.apis[lid] = _http_api(stack, lid, clients("apigatewayv2"))
    for lid in on_api:
        _app_client(stack, lid, clients("cognito-idp"))
    _api_resources(stack, clients("apigatewayv2"))
    behind_api = stack.api_functions()
    for lid in stack.of_type("AWS::Lambda::Function"):
        function = _function(stack, lid)
        role = stack.properties(lid).get("Role")
        if role:
            credentials = role_credentials(clients("sts"), role, function.name)
            function = dataclasses.replace(function, credentials={
                "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
                "AWS_SESSION_TOKEN": credentials["SessionToken"]})
        runtime.add(function, api_function_concurrency if lid in behind_api else None)
        deployment.functions[lid] = function
    for lid in stack.of_type("AWS::StepFunctions::StateMachine"):
        props = stack.properties(lid)
        clients("stepfunctions").create_state_machine(
            name=stack.physical_ids[lid], definition=state_machine_definition(stack, lid), roleArn=props["RoleArn"],
            type=props.get("StateMachineType", "STANDARD"))
        deployment.state_machine_credentials[lid] = role_credentials(clients("sts"), props["RoleArn"],
                                                                     stack.physical_ids[lid])
    for lid in stack.of_type("AWS::Events::Rule"):
        props = stack.properties(lid)
        events = clients("events")
        name = stack.physical_ids[lid]
        events.put_rule(Name=name, EventPattern=json.dumps(props["EventPattern"]),
                        State=props.get("State", "ENABLED"), EventBusName=props.get("EventBusName", "default"))
        events.put_targets(Rule=name, EventBusName=props.get("EventBusName", "default"), Targets=props["Targets"])
    deployment.outputs = {k: str(stack.resolve(v["Value"])) for k, v in stack.outputs.items()
                          if stack.conditions.get(v.get("Condition", ""), True)}
    log.info("deployed %s: %d resources created, %d not emulated (%s)", stack.name,
             len(stack.resources) - len(deployment.skipped), len(deployment.skipped),
             ", ".join(sorted(set(deployment.skipped.values()))))
    return deployment


def role_credentials(sts, role_arn: str, session_name: str) -> dict[str, str]:
    """Temporary credentials of a role (STS's AccessKeyId, SecretAccessKey, SessionToken), as AWS services
    give the principals that act with it."""
    return sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name[:64])["Credentials"]


def _role(iam, name: str, props: dict[str, Any]) -> None:
    """The role and its inline policies (what the twin's checks read); AWS managed policies only grant logs and
    X-Ray here, which the twin does not emulate."""
    iam.create_role(RoleName=name, Path=props.get("Path", "/"),
                    AssumeRolePolicyDocument=json.dumps(props["AssumeRolePolicyDocument"]))
    for policy in props.get("Policies", []):
        # SAM's policy templates leave out Version, which IAM accepts (as 2008-10-17) and moto refuses.
        document = {"Version": "2012-10-17", **policy["PolicyDocument"]}
        iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))


def _bucket(s3, name: str, props: dict[str, Any]) -> None:
    # Encryption, public-access block and policies change nothing on a loopback emulator: not emulated; CORS is.
    s3.create_bucket(Bucket=name)
    if props.get("CorsConfiguration"):
        # CloudFormation's CorsRules, Id and MaxAge are the API's CORSRules, ID and MaxAgeSeconds.
        names = {"Id": "ID", "MaxAge": "MaxAgeSeconds"}
        rules = [{names.get(k, k): v for k, v in rule.items()} for rule in props["CorsConfiguration"]["CorsRules"]]
        s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": rules})
    if props.get("NotificationConfiguration", {}).get("EventBridgeConfiguration", {}).get("EventBridgeEnabled"):
        s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}})


def _function(stack: Stack, logical_id: str) -> LocalFunction:
    props = stack.properties(logical_id)
    name = stack.physical_ids[logical_id]
    return LocalFunction(
        name=name, arn=stack.get_att(logical_id, "Arn"), code_dir=stack.code_dirs[logical_id],
        handler=props["Handler"],
        environment={k: str(v) for k, v in props.get("Environment", {}).get("Variables", {}).items()},
        timeout_s=float(props.get("Timeout", 3)), memory_mb=int(props.get("MemorySize", 128)))


def _identity(stack: Stack, cognito, skip: set[str]) -> None:
    """The user pool and what hangs off it. Cognito chooses the ids of pools and app clients, so their physical
    ids become known only here (as in CloudFormation, where a Ref to them resolves after creation)."""
    for lid in stack.of_type("AWS::Cognito::UserPool"):
        props = stack.properties(lid)
        settings = {k: props[k] for k in ("Policies", "AdminCreateUserConfig", "UsernameConfiguration",
                                          "AccountRecoverySetting", "AutoVerifiedAttributes", "Schema") if k in props}
        pool = cognito.create_user_pool(PoolName=props.get("UserPoolName", stack.physical_ids[lid]), **settings)
        stack.physical_ids[lid] = pool["UserPool"]["Id"]
    for lid in stack.of_type("AWS::Cognito::UserPoolDomain"):
        props = stack.properties(lid)
        cognito.create_user_pool_domain(Domain=props["Domain"], UserPoolId=props["UserPoolId"])
        stack.physical_ids[lid] = props["Domain"]
    for lid in stack.of_type("AWS::Cognito::UserPoolResourceServer"):
        props = stack.properties(lid)
        cognito.create_resource_server(UserPoolId=props["UserPoolId"], Identifier=props["Identifier"],
                                       Name=props["Name"], Scopes=props.get("Scopes", []))
    for lid in stack.of_type("AWS::Cognito::UserPoolGroup"):
        props = stack.properties(lid)
        cognito.create_group(UserPoolId=props["UserPoolId"], GroupName=props["GroupName"],
                             **{k: props[k] for k in ("Description", "Precedence") if k in props})
    for lid in stack.of_type("AWS::Cognito::UserPoolClient"):
        if lid not in skip:
            _app_client(stack, lid, cognito)


def _app_client(stack: Stack, logical_id: str, cognito) -> None:
    client = cognito.create_user_pool_client(**stack.properties(logical_id))
    stack.physical_ids[logical_id] = client["UserPoolClient"]["ClientId"]


def _api_resources(stack: Stack, apigw) -> None:
    """Authorizers, integrations and routes declared as resources of their own (beside an API's OpenAPI body)."""
    for kind, create, id_key in (("Authorizer", apigw.create_authorizer, "AuthorizerId"),
                                 ("Integration", apigw.create_integration, "IntegrationId"),
                                 ("Route", apigw.create_route, "RouteId")):
        for lid in stack.of_type(f"AWS::ApiGatewayV2::{kind}"):
            stack.physical_ids[lid] = create(**stack.properties(lid))[id_key]


_OPENAPI_CORS = {"allowOrigins": "AllowOrigins", "allowMethods": "AllowMethods", "allowHeaders": "AllowHeaders",
                 "exposeHeaders": "ExposeHeaders", "maxAge": "MaxAge", "allowCredentials": "AllowCredentials"}


def _http_api(stack: Stack, logical_id: str, apigw) -> str:
    """An HTTP API: from its OpenAPI body (what SAM's transform writes) as apigatewayv2 calls, since moto's
    import leaves authorizers and route scopes out, or as declared (routes then come as resources of their own:
    _api_resources); then its stages. The twin's gateway serves what this holds."""
    props = stack.properties(logical_id)
    body = props.get("Body") or {}
    if not body:
        api_id = apigw.create_api(**{k: v for k, v in props.items() if k in ("Name", "ProtocolType", "Description",
                                                                            "CorsConfiguration")})["ApiId"]
        stack.physical_ids[logical_id] = api_id
        _stages(stack, logical_id, api_id, apigw)
        return api_id
    cors = {_OPENAPI_CORS[k]: v for k, v in (body.get("x-amazon-apigateway-cors") or {}).items() if k in _OPENAPI_CORS}
    api = apigw.create_api(Name=str(body.get("info", {}).get("title", stack.physical_ids[logical_id])),
                           ProtocolType="HTTP", **({"CorsConfiguration": cors} if cors else {}))
    api_id = api["ApiId"]
    stack.physical_ids[logical_id] = api_id
    authorizers = {}
    for name, scheme in body.get("components", {}).get("securitySchemes", {}).items():
        spec = scheme.get("x-amazon-apigateway-authorizer", {})
        if spec.get("type") == "jwt":
            jwt = spec["jwtConfiguration"]
            authorizers[name] = apigw.create_authorizer(
                ApiId=api_id, Name=name, AuthorizerType="JWT", IdentitySource=[spec["identitySource"]],
                JwtConfiguration={"Issuer": jwt["issuer"], "Audience": list(jwt["audience"])})["AuthorizerId"]
    for path, methods in body.get("paths", {}).items():
        for method, operation in methods.items():
            integration = operation["x-amazon-apigateway-integration"]
            integration_id = apigw.create_integration(
                ApiId=api_id, IntegrationType=integration["type"].upper(), IntegrationUri=integration["uri"],
                IntegrationMethod=integration.get("httpMethod", "POST"),
                PayloadFormatVersion=integration.get("payloadFormatVersion", "2.0"))["IntegrationId"]
            route_key = "$default" if method == "x-amazon-apigateway-any-method" and path == "/$default" \
                else f"{'ANY' if method == 'x-amazon-apigateway-any-method' else method.upper()} {path}"
            security = (operation.get("security") or [{}])[0]
            auth = {}
            if security:
                ((scheme, scopes),) = security.items()
                auth = {"AuthorizationType": "JWT", "AuthorizerId": authorizers[scheme], "AuthorizationScopes": scopes}
            apigw.create_route(ApiId=api_id, RouteKey=route_key, Target=f"integrations/{integration_id}", **auth)
    _stages(stack, logical_id, api_id, apigw)
    return api_id


def _stages(stack: Stack, logical_id: str, api_id: str, apigw) -> None:
    for lid, stage in stack.of_type("AWS::ApiGatewayV2::Stage").items():
        if stage["Properties"].get("ApiId") != {"Ref": logical_id}:
            continue
        props = {k: v for k, v in stack.properties(lid).items() if k != "ApiId"}
        # Parameters arrive as strings; CloudFormation converts them to the property's type, as here.
        for settings in [props.get("DefaultRouteSettings", {}), *props.get("RouteSettings", {}).values()]:
            for name, kind in (("ThrottlingRateLimit", float), ("ThrottlingBurstLimit", int)):
                if name in settings:
                    settings[name] = kind(float(settings[name]))
        apigw.create_stage(ApiId=api_id, **props)
