"""Prints infra/template.yaml as JSON, for the Rust tests that compare it with the code.

The template uses only long-form intrinsic functions, so plain YAML reads it.
"""
import json
import sys

import yaml

with open(sys.argv[1], encoding="utf-8") as f:
    print(json.dumps(yaml.safe_load(f)))
