"""The template's Object Lock settings on a real S3 server (SeaweedFS), which enforces WORM.

moto accepts a shortened COMPLIANCE retention; SeaweedFS refuses it as AWS does. It enforces no IAM,
so these tests are about the lock, not about who asks.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError

pytestmark = pytest.mark.integration

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "cloudformation" / "coexarchive.yaml"
SEGMENT = (
    "archive/v1/chain=100200300/date=2026-01-02/00000000000000000000-00000000000000000099.parquet"
)


def template_default_retention() -> dict[str, Any]:
    """The archive bucket's DefaultRetention, with the template's default years filled in."""
    template = yaml.safe_load(TEMPLATE.read_text())
    rule = template["Resources"]["ArchiveBucket"]["Properties"]["ObjectLockConfiguration"]["Rule"]
    retention = dict(rule["DefaultRetention"])
    years_parameter = retention["Years"]["Ref"]
    retention["Years"] = int(template["Parameters"][years_parameter]["Default"])
    return retention


@pytest.fixture
def locked(seaweed: Any) -> tuple[Any, str, str, datetime]:
    """A bucket configured as the template says, holding one COMPLIANCE-locked segment."""
    client = seaweed.client()
    bucket = f"worm-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    client.put_object_lock_configuration(
        Bucket=bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": template_default_retention()},
        },
    )
    retain_until = (datetime.now(UTC) + timedelta(days=3 * 366)).replace(microsecond=0)
    put = client.put_object(
        Bucket=bucket,
        Key=SEGMENT,
        Body=b"sealed",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=retain_until,
    )
    return client, bucket, put["VersionId"], retain_until


def refused(call: Any, **kwargs: Any) -> None:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] in {400, 403, 409}


def test_the_template_retention_is_compliance_mode() -> None:
    assert template_default_retention() == {"Mode": "COMPLIANCE", "Years": 7}


def test_compliance_retention_cannot_be_shortened(locked: tuple[Any, str, str, datetime]) -> None:
    client, bucket, version, retain_until = locked
    shorter = {"Mode": "COMPLIANCE", "RetainUntilDate": retain_until - timedelta(days=30)}
    refused(
        client.put_object_retention,
        Bucket=bucket,
        Key=SEGMENT,
        VersionId=version,
        Retention=shorter,
    )


def test_compliance_retention_cannot_be_shortened_with_bypass(
    locked: tuple[Any, str, str, datetime],
) -> None:
    client, bucket, version, retain_until = locked
    shorter = {"Mode": "COMPLIANCE", "RetainUntilDate": retain_until - timedelta(days=30)}
    refused(
        client.put_object_retention,
        Bucket=bucket,
        Key=SEGMENT,
        VersionId=version,
        Retention=shorter,
        BypassGovernanceRetention=True,
    )


def test_compliance_mode_cannot_be_downgraded_to_governance(
    locked: tuple[Any, str, str, datetime],
) -> None:
    client, bucket, version, retain_until = locked
    governance = {"Mode": "GOVERNANCE", "RetainUntilDate": retain_until}
    refused(
        client.put_object_retention,
        Bucket=bucket,
        Key=SEGMENT,
        VersionId=version,
        Retention=governance,
        BypassGovernanceRetention=True,
    )


def test_a_locked_version_cannot_be_deleted(locked: tuple[Any, str, str, datetime]) -> None:
    client, bucket, version, _ = locked
    refused(client.delete_object, Bucket=bucket, Key=SEGMENT, VersionId=version)
    refused(
        client.delete_object,
        Bucket=bucket,
        Key=SEGMENT,
        VersionId=version,
        BypassGovernanceRetention=True,
    )
    assert client.get_object(Bucket=bucket, Key=SEGMENT, VersionId=version)["Body"].read() == (
        b"sealed"
    )


def test_compliance_retention_can_be_extended(locked: tuple[Any, str, str, datetime]) -> None:
    client, bucket, version, retain_until = locked
    longer = {"Mode": "COMPLIANCE", "RetainUntilDate": retain_until + timedelta(days=365)}
    client.put_object_retention(Bucket=bucket, Key=SEGMENT, VersionId=version, Retention=longer)
    kept = client.get_object_retention(Bucket=bucket, Key=SEGMENT, VersionId=version)
    assert kept["Retention"]["RetainUntilDate"] >= longer["RetainUntilDate"]
