"""Creates a translated credvault template as a stack in moto's CloudFormation, as `sam deploy` would.

usage: create_stack.py ENDPOINT STACK_NAME TEMPLATE_JSON PARAMETERS_JSON CODE_BUCKET CODE_KEY
Prints one JSON object: the stack status, its outputs, and each resource with its status.
"""
import io
import json
import sys
import time
import zipfile

import boto3


def main():
    endpoint, stack, template_path, parameters, bucket, key = sys.argv[1:7]
    session = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    s3 = session.client("s3", endpoint_url=endpoint)
    cfn = session.client("cloudformation", endpoint_url=endpoint)
    # What `sam package` would have uploaded: a zip holding the function's bootstrap.
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=key, Body=code.getvalue())
    with open(template_path, encoding="utf-8") as f:
        body = f.read()
    params = [{"ParameterKey": k, "ParameterValue": v} for k, v in json.loads(parameters).items()]
    cfn.create_stack(StackName=stack, TemplateBody=body, Parameters=params, Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"])
    deadline = time.time() + 120
    while True:
        description = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        if not description["StackStatus"].endswith("IN_PROGRESS") or time.time() > deadline:
            break
        time.sleep(0.5)
    created = {
        r["LogicalResourceId"]: r.get("PhysicalResourceId", "")
        for r in cfn.describe_stack_resources(StackName=stack)["StackResources"]
        if r.get("LogicalResourceId") and r.get("ResourceStatus") == "CREATE_COMPLETE"
    }
    wanted = json.loads(body)["Resources"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    # moto's CloudFormation makes every AWS::KMS::Key symmetric. Asymmetric keys are made here through
    # the KMS API from the template's own KeySpec and KeyUsage, and replace the stack's in the outputs.
    kms = session.client("kms", endpoint_url=endpoint)
    substituted = {}
    for logical_id, resource in wanted.items():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::KMS::Key" and props.get("KeySpec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT":
            key = kms.create_key(KeySpec=props["KeySpec"], KeyUsage=props["KeyUsage"], Description=props.get("Description", ""))
            substituted[logical_id] = key["KeyMetadata"]["KeyId"]
            for name, value in list(outputs.items()):
                if value == created.get(logical_id):
                    outputs[name] = substituted[logical_id]
    print(json.dumps({
        "status": description["StackStatus"],
        "reason": description.get("StackStatusReason", ""),
        "outputs": outputs,
        "created": created,
        "substituted": substituted,
        # What moto's CloudFormation skipped, by type (README, "Deployment rehearsal"); resources under a
        # condition are listed apart (the rehearsal's parameters leave the optional ones out).
        "notCreated": sorted({r["Type"] for lid, r in wanted.items() if lid not in created and "Condition" not in r}),
        "conditionalNotCreated": sorted(lid for lid, r in wanted.items() if lid not in created and "Condition" in r),
    }))


main()
