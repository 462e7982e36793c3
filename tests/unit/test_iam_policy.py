"""The IAM policy cannot go stale: every S3 client call in the source maps to an action
(destinations/s3/permissions.py), and every such action is in the README's policy and in the
doctor's hint."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

from ingestd.destinations.s3.permissions import (
    BUCKET_ACTIONS,
    CLIENT_ACTIONS,
    KMS_ACTIONS,
    permissions_hint,
    s3_actions,
)

ROOT = Path(__file__).parents[2]
SRC = ROOT / "src" / "ingestd"
# Where ingestd talks to S3: the destination, the stale-upload sweep and the doctor's S3 checks
# (its SFTP check holds a paramiko client, which is no S3 client).
CALLERS = [
    *sorted((SRC / "destinations" / "s3").glob("*.py")),
    SRC / "housekeeping.py",
    SRC / "doctor" / "s3.py",
]


def _is_client(node: ast.expr) -> bool:
    """``client``, ``self.client``, ``dest.client``: the boto3 S3 client by its one name."""
    return (isinstance(node, ast.Name) and node.id == "client") or (
        isinstance(node, ast.Attribute) and node.attr == "client"
    )


def client_methods(path: Path) -> set[str]:
    """The S3 operations a module calls: ``client.op(...)``, and ``client.get_paginator("op")``
    for the paginated ones."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if not _is_client(node.func.value):
            continue
        if node.func.attr == "get_paginator":
            arg = node.args[0]
            assert isinstance(arg, ast.Constant) and isinstance(arg.value, str), path
            found.add(arg.value)
        else:
            found.add(node.func.attr)
    return found


def used_methods() -> set[str]:
    return set().union(*(client_methods(p) for p in CALLERS))


def readme_policy() -> dict[str, list[str]]:
    """The README's policy JSON: its Resource -> actions."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### S3 permissions (IAM policy)", 1)[1]
    block = re.search(r"```json\n(.*?)```", section, re.DOTALL)
    assert block is not None
    policy = json.loads(block.group(1))
    return {s["Resource"]: s["Action"] for s in policy["Statement"]}


def test_the_scan_sees_the_calls_we_know() -> None:
    """The AST scan works: it finds calls of each kind (plain and paginated)."""
    used = used_methods()
    assert {"put_object", "upload_part", "delete_object", "head_object"} <= used
    assert {"list_multipart_uploads", "list_parts"} <= used
    assert "get_paginator" not in used


def test_every_client_call_has_an_iam_action() -> None:
    missing = used_methods() - set(CLIENT_ACTIONS)
    assert not missing, f"add the IAM action of {sorted(missing)} to permissions.py"


def test_no_action_is_listed_for_a_call_ingestd_no_longer_makes() -> None:
    assert set(CLIENT_ACTIONS) <= used_methods()


def test_readme_policy_allows_every_action_on_the_right_resource() -> None:
    policy = readme_policy()
    bucket = policy["arn:aws:s3:::BUCKET"]
    objects = policy["arn:aws:s3:::BUCKET/PREFIX*"]
    kms = next(
        actions for resource, actions in policy.items() if resource.startswith("arn:aws:kms")
    )
    assert set(bucket) == BUCKET_ACTIONS
    assert set(objects) == set(s3_actions()) - BUCKET_ACTIONS
    assert set(kms) == set(KMS_ACTIONS)


def test_doctor_hint_names_every_action() -> None:
    """What ``ingestd doctor`` says when S3 answers AccessDenied to its listing."""
    from types import SimpleNamespace

    from botocore.exceptions import ClientError

    from ingestd import doctor

    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ListObjectsV2")
    dest = SimpleNamespace(bucket="scans", endpoint_url=None)
    hint = doctor.s3_hint("main", dest, denied)  # type: ignore[arg-type]
    for action in [*s3_actions(), *KMS_ACTIONS]:
        assert action in hint, action
    assert permissions_hint() in hint
