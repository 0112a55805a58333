"""Translates infra/template.yaml (SAM) into plain CloudFormation JSON with aws-sam-translator, as
`sam deploy` would after `sam package` uploaded the code: CodeUri becomes the given S3 location.

usage: translate_template.py TEMPLATE CODE_BUCKET CODE_KEY [--for-moto] > cloudformation.json

With --for-moto, what moto's CloudFormation cannot create is left out (see README, "Deployment
rehearsal"): the published version and alias of credential-fetch, and so its provisioned concurrency;
and credential-events' stream event source mapping, through which moto invokes the function on every
table write and fails on binary attributes ("Object of type bytes is not JSON serializable").
"""
import json
import os
import sys

import yaml
from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform


class NoManagedPolicies:
    """The template names no AWS managed policies; nothing to look up."""

    def load(self):
        return {}


def main():
    # The translator resolves pseudo parameters from a boto session: give it a region, no account.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    template_path, bucket, key = sys.argv[1:4]
    with open(template_path, encoding="utf-8") as f:
        template = yaml.safe_load(f)
    template["Globals"]["Function"]["CodeUri"] = f"s3://{bucket}/{key}"
    if "--for-moto" in sys.argv[4:]:
        for resource in template["Resources"].values():
            if resource["Type"] == "AWS::Serverless::Function":
                resource["Properties"].pop("AutoPublishAlias", None)
                resource["Properties"].pop("ProvisionedConcurrencyConfig", None)
                events = resource["Properties"].get("Events", {})
                for name in [n for n, e in events.items() if e.get("Type") == "DynamoDB"]:
                    events.pop(name)
    try:
        translated = transform(template, {}, NoManagedPolicies())
    except InvalidDocumentException as e:
        for cause in e.causes:
            print(cause.message, file=sys.stderr)
        sys.exit(1)
    print(json.dumps(translated))


main()
