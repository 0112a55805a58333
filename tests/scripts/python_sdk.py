"""Drives the vault with the unmodified Authress Python SDK (PyPI `authress`, pinned in
tests/requirements.txt): a service client reads a user's credential, and the token the SDK signed is
reported so the Rust test can hold the vault's lifetime bound against what the SDK really makes.
Inputs come from the environment (tests/tests/authress_python_sdk.rs); prints one JSON line."""
import base64
import json
import os

from authress import AuthressClient
from authress.utils.service_client_token_provider import ServiceClientTokenProvider


def claims(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def main():
    vault, key = os.environ["VAULT_URL"], os.environ["BACKEND_KEY"]
    token = claims(ServiceClientTokenProvider(key, vault).get_client_token())
    client = AuthressClient(authress_api_url=vault, service_client_access_key=key)
    credentials = client.connections.get_connection_credentials(os.environ["CONNECTION_ID"], os.environ["USER_ID"])
    print(json.dumps({"accessToken": credentials.access_token, "lifetime": token["exp"] - token["iat"]}))


main()
