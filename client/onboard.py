"""Give another team's service its own identity: an app client of the stack's user pool (client-credentials grant,
the scopes it may use) admitted to the API's JWT authorizer.

API Gateway accepts a Cognito access token only when its client_id is in the authorizer's audience, so a new
client is two steps: create it, then add its id to the audience. On AWS the audience is the stack's parameter
PartnerClientIds, changed with a stack update (so the next deploy keeps it); the twin has no CloudFormation, so
there the authorizer itself is updated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from contracts.stack import Target

SCOPES = {"submit": "photos.submit", "read": "photos.read", "review": "reviews.decide"}
TEAM_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")


class OnboardError(Exception):
    """The team's name, its scopes or the stack are not what onboarding needs; the message says why."""


@dataclass
class Onboarded:
    client_id: str
    client_name: str
    scopes: list[str]
    audience_note: str
    secret_command: str


def parse_scopes(text: str, prefix: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCOPES]
    if not names or unknown:
        raise OnboardError(f"--scopes takes a comma-separated list of {', '.join(SCOPES)}"
                           + (f"; {unknown[0]!r} is not one" if unknown else ""))
    return [prefix + SCOPES[s] for s in dict.fromkeys(names)]


def onboard_team(target: Target, team: str, scope_names: str, *, on_twin: bool) -> Onboarded:
    if not TEAM_NAME.match(team):
        raise OnboardError(f"team name {team!r}: 1-40 lower-case letters, digits and hyphens, "
                           "starting with a letter or digit")
    pool = target.outputs.get("UserPoolId")
    if not pool:
        raise OnboardError(f"{target.description} has no user pool (output UserPoolId): "
                           "deploy the current template first")
    scopes = parse_scopes(scope_names, target.outputs.get("ApiScopePrefix", "vehicle-classifier/"))
    cognito = target.client("cognito-idp")
    name = f"team-{team}"
    existing = [c for page in cognito.get_paginator("list_user_pool_clients").paginate(UserPoolId=pool, MaxResults=60)
                for c in page["UserPoolClients"] if c["ClientName"] == name]
    if existing:
        raise OnboardError(f"team {team!r} already has app client {existing[0]['ClientId']}")
    client = cognito.create_user_pool_client(
        UserPoolId=pool, ClientName=name, GenerateSecret=True, AllowedOAuthFlowsUserPoolClient=True,
        AllowedOAuthFlows=["client_credentials"], AllowedOAuthScopes=scopes, SupportedIdentityProviders=["COGNITO"],
        AccessTokenValidity=60, TokenValidityUnits={"AccessToken": "minutes"}, EnableTokenRevocation=True,
        PreventUserExistenceErrors="ENABLED")["UserPoolClient"]
    client_id = client["ClientId"]
    try:
        note = _admit_on_twin(target, client_id) if on_twin else _admit_on_stack(target, client_id)
    except Exception:
        # A client the API will never admit is of no use to the team: take it back, say why.
        cognito.delete_user_pool_client(UserPoolId=pool, ClientId=client_id)
        raise
    where = f" --endpoint-url {target.endpoint_url}" if target.endpoint_url else ""
    secret = (f"aws{where} cognito-idp describe-user-pool-client --user-pool-id {pool} --client-id {client_id} "
              "--query UserPoolClient.ClientSecret --output text")
    return Onboarded(client_id, name, scopes, note, secret)


def _admit_on_twin(target: Target, client_id: str) -> str:
    apigw = target.client("apigatewayv2")
    api_id = target.outputs["ApiId"]
    for route in apigw.get_routes(ApiId=api_id)["Items"]:
        if route.get("AuthorizationType") != "JWT":
            continue
        authorizer = apigw.get_authorizer(ApiId=api_id, AuthorizerId=route["AuthorizerId"])
        jwt = authorizer["JwtConfiguration"]
        if client_id not in jwt["Audience"]:
            audience = [*jwt["Audience"], client_id]
            apigw.update_authorizer(ApiId=api_id, AuthorizerId=route["AuthorizerId"],
                                    JwtConfiguration={"Issuer": jwt["Issuer"], "Audience": audience})
    return "added to the API's JWT authorizer audience (the twin's stand-in for the stack parameter PartnerClientIds)"


def _admit_on_stack(target: Target, client_id: str) -> str:
    cloudformation = target.client("cloudformation")
    stack_name = target.outputs["StackName"]
    described = cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0]
    parameters = []
    for p in described.get("Parameters", []):
        if p["ParameterKey"] == "PartnerClientIds":
            ids = [i for i in p.get("ParameterValue", "").split(",") if i]
            parameters.append({"ParameterKey": "PartnerClientIds", "ParameterValue": ",".join([*ids, client_id])})
        else:
            parameters.append({"ParameterKey": p["ParameterKey"], "UsePreviousValue": True})
    cloudformation.update_stack(StackName=stack_name, UsePreviousTemplate=True, Parameters=parameters,
                                Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"])
    return (f"stack {stack_name} is being updated to add it to PartnerClientIds, the API's audience; it can call the "
            f"API once `aws cloudformation wait stack-update-complete --stack-name {stack_name}` returns")
