"""The twin's front door: what API Gateway and Cognito do on AWS that moto does not.

- ``authorizer``: API Gateway's JWT authorizer (signature against the pool's JWKS, issuer, expiry, audience or
  client_id, the route's scopes).
- ``token_endpoint``: Cognito's OAuth 2.0 token endpoint: the client-credentials, authorization-code (PKCE) and
  refresh-token grants.
- ``managed_login``: Cognito's managed login (/oauth2/authorize, /login, /logout) on the token endpoint's port, and
  ``user_grants``: the codes and refresh tokens a sign-in leaves for the token endpoint.
- ``gateway``: the HTTP API's data plane - routes, authorizers, throttling and stage settings as moto's
  apigatewayv2 holds them (created from the template), Lambda proxy integrations with payload format 2.0.
- ``post_policy``: S3's checks of a presigned POST (signature, expiry, every condition), in front of moto.
"""
