"""Writes one API Gateway v2 (HTTP API, payload 2.0) event per public route, for `cargo lambda invoke`
and the smoke test, under functions/<function>/events/. The routes come from infra/template.yaml.

usage: python tests/scripts/make_events.py   (run from the workspace root; rerun when routes change)
"""
import json
import os
import re

import yaml

FUNCTIONS = {"LoginCallbackFunction": "login-callback", "CredentialFetchFunction": "credential-fetch", "GrantManagementFunction": "grant-management"}
# Concrete values for path parameters, as a client would send them (percent-encoded).
VALUES = {
    "connectionId": "con_demo", "userId": "con_demo%7Calice", "authenticationRequestId": "req_smoke",
    "clientId": "sc_smoke", "keyId": "key_smoke", "roleId": "ro_smoke", "recordId": "rec_smoke",
    "resourceUri": "Connections%2Fcon_demo", "permission": "connections:credentials:read",
}
BODIES = {
    ("POST", "/api/authentication"): {
        "connectionId": "con_demo", "redirectUrl": "https://app.example.com/after-login",
        # S256 of the RFC 7636 appendix B verifier
        "codeChallenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "codeChallengeMethod": "S256",
    },
    ("POST", "/api/authentication/oauth/tokens"): {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": "not-a-token",
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token", "audience": "con_demo",
    },
    ("POST", "/api/authentication/{authenticationRequestId}/tokens"): {
        "grant_type": "authorization_code", "code": "not-a-code", "code_verifier": "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
        "redirect_uri": "https://app.example.com/after-login",
    },
}
QUERIES = {
    ("GET", "/api/callback/{connectionId}"): "code=smoke&state=unknown",
    ("GET", "/logout"): "redirect_uri=https%3A%2F%2Fapp.example.com%2Fafter-login&client_id=app_smoke",
}


def event(method, path):
    raw_path = re.sub(r"\{(\w+)\}", lambda m: VALUES[m.group(1)], path)
    params = {name: VALUES[name].replace("%7C", "|").replace("%2F", "/") for name in re.findall(r"\{(\w+)\}", path)}
    body = BODIES.get((method, path))
    query = QUERIES.get((method, path), "")
    route_key = f"{method} {path}"
    e = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": {"host": "vault.example.com", "content-type": "application/json", "x-forwarded-proto": "https", "user-agent": "credvault-smoke"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "smoke", "domainName": "vault.example.com", "domainPrefix": "vault",
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "credvault-smoke"},
            "requestId": "smoke-request", "routeKey": route_key, "stage": "$default", "time": "27/Nov/2026:00:00:00 +0000", "timeEpoch": 1795737600000,
        },
        "isBase64Encoded": False,
    }
    if params:
        e["pathParameters"] = params
    if query:
        e["queryStringParameters"] = dict(pair.split("=", 1) for pair in query.split("&"))
    if body is not None:
        e["body"] = json.dumps(body)
    return e


def file_name(method, path):
    words = [w.strip("{}").replace(".", "").replace("-", "") for w in path.split("/") if w]
    return f"{method.lower()}-" + "-".join(words).lower() + ".json"


def main():
    with open("infra/template.yaml", encoding="utf-8") as f:
        template = yaml.safe_load(f)
    for logical_id, function in FUNCTIONS.items():
        directory = os.path.join("functions", function, "events")
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            os.remove(os.path.join(directory, name))
        for e in template["Resources"][logical_id]["Properties"]["Events"].values():
            method, path = e["Properties"]["Method"], e["Properties"]["Path"]
            with open(os.path.join(directory, file_name(method, path)), "w", encoding="utf-8") as out:
                json.dump(event(method, path), out, indent=2)
                out.write("\n")


main()
