"""infra/cloudformation/coexarchive.yaml deployed into moto: buckets, keys, policies and roles.

moto's CloudFormation creates the KMS keys, the roles and their policies, and the buckets with their
encryption, but skips the other bucket properties (Object Lock, versioning, public access block,
ownership, logging, lifecycle) and the bucket-policy and Secrets Manager resources. ``deploy`` fills
exactly those gaps with the boto3 calls CloudFormation would make, generated from the template's own
resolved values, so every assertion below still checks what the template says.

IAM is enforced by moto only for the role sessions in the ``enforced`` fixture. moto cannot evaluate
the bucket policy's conditions (TLS, lock mode, retention floor, If-None-Match), nor KMS key
policies, so those are asserted on the deployed documents instead.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
import yaml
from botocore.exceptions import ClientError
from moto import mock_aws, settings
from moto.iam.access_control import IAMPolicy, PermissionResult, S3IAMRequest

pytestmark = pytest.mark.filterwarnings(
    "ignore:Tried to parse .* but it.s not supported by moto:UserWarning"
)

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "cloudformation" / "coexarchive.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"
PREFIX = "coexarchive"
ARCHIVE = f"{PREFIX}-archive-{ACCOUNT}"
RAW = f"{PREFIX}-raw-{ACCOUNT}"
LOGS = f"{PREFIX}-s3-access-logs-{ACCOUNT}"
SEGMENT = (
    "archive/v1/chain=100200300/date=2026-01-02/00000000000000000000-00000000000000000099.parquet"
)
CHECKPOINT = "checkpoints/chain=100200300/00000000000000000100"
RAW_OBJECT = "raw/date=2026-01-02/receiver-a-00000000000000000001.jsonl.zst"
NO_VALUE = object()


def load_template() -> dict[str, Any]:
    template: dict[str, Any] = yaml.safe_load(TEMPLATE.read_text())
    return template


# --------------------------------------------------------------------------------------------------
# A small resolver of the intrinsics the template uses, against the stack moto deployed.
# --------------------------------------------------------------------------------------------------


class Resolver:
    def __init__(self, template: dict[str, Any], parameters: dict[str, str]) -> None:
        self.template = template
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in template["Parameters"].items()
        }
        self.parameters.update(parameters)
        self.parameters.update(
            {
                "AWS::AccountId": ACCOUNT,
                "AWS::Region": REGION,
                "AWS::Partition": "aws",
                "AWS::StackName": "coexarchive",
            }
        )
        self.physical: dict[str, str] = {}
        self.arns: dict[str, str] = {}

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def active(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, resource in self.template["Resources"].items():
            if "Condition" not in resource or self.condition(resource["Condition"]):
                yield name, resource

    def ref(self, name: str) -> str:
        return self.parameters[name] if name in self.parameters else self.physical[name]

    def get_att(self, name: str, attribute: str) -> str:
        assert attribute == "Arn", attribute
        return self.arns[name]

    def substitute(self, text: str) -> str:
        def one(match: re.Match[str]) -> str:
            name = match.group(1)
            if "." in name and not name.startswith("AWS::"):
                resource, attribute = name.split(".", 1)
                return self.get_att(resource, attribute)
            return self.ref(name)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [item for item in map(self.resolve, node) if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((key, value),) = node.items()
            if key == "Ref":
                return NO_VALUE if value == "AWS::NoValue" else self.ref(value)
            if key == "Fn::Sub":
                return self.substitute(value)
            if key == "Fn::GetAtt":
                return self.get_att(*value)
            if key == "Fn::Equals":
                return self.resolve(value[0]) == self.resolve(value[1])
            if key == "Fn::If":
                return self.resolve(value[1] if self.condition(value[0]) else value[2])
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's LifecycleConfiguration rule shape → the S3 API's."""
    api: dict[str, Any] = {"ID": rule["Id"], "Status": rule["Status"], "Filter": {"Prefix": ""}}
    if "ExpirationInDays" in rule:
        api["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "NoncurrentVersionExpiration" in rule:
        days = int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        api["NoncurrentVersionExpiration"] = {"NoncurrentDays": days}
    if "AbortIncompleteMultipartUpload" in rule:
        days = int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        api["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    return api


def _apply_bucket(s3: Any, name: str, props: dict[str, Any]) -> None:
    """The bucket properties moto's CloudFormation skips, applied as CloudFormation would."""
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration=props["VersioningConfiguration"])
    if "ObjectLockConfiguration" in props:
        lock = props["ObjectLockConfiguration"]
        retention = dict(lock["Rule"]["DefaultRetention"])
        retention["Years"] = int(retention["Years"])
        s3.put_object_lock_configuration(
            Bucket=name,
            ObjectLockConfiguration={
                "ObjectLockEnabled": lock["ObjectLockEnabled"],
                "Rule": {"DefaultRetention": retention},
            },
        )
    s3.put_public_access_block(
        Bucket=name, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
    )
    s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=props["OwnershipControls"])
    if "LoggingConfiguration" in props:
        logging = props["LoggingConfiguration"]
        target = {
            "TargetBucket": logging["DestinationBucketName"],
            "TargetPrefix": logging["LogFilePrefix"],
        }
        s3.put_bucket_logging(Bucket=name, BucketLoggingStatus={"LoggingEnabled": target})
    rules = [_lifecycle_rule(rule) for rule in props["LifecycleConfiguration"]["Rules"]]
    s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})


class Stack:
    """The deployed stack: resolved template, physical ids, and admin clients."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.s3 = boto3.client("s3", region_name=REGION)
        self.iam = boto3.client("iam", region_name=REGION)
        self.kms = boto3.client("kms", region_name=REGION)
        self.secrets = boto3.client("secretsmanager", region_name=REGION)

    def props(self, logical_id: str) -> dict[str, Any]:
        resource = self.resolver.template["Resources"][logical_id]
        props: dict[str, Any] = self.resolver.resolve(resource["Properties"])
        return props

    def arn(self, logical_id: str) -> str:
        return self.resolver.arns[logical_id]

    def bucket_policy(self, bucket: str) -> dict[str, Any]:
        policy: dict[str, Any] = json.loads(self.s3.get_bucket_policy(Bucket=bucket)["Policy"])
        return policy

    def statement(self, bucket: str, sid: str) -> dict[str, Any]:
        (found,) = [s for s in self.bucket_policy(bucket)["Statement"] if s.get("Sid") == sid]
        return found


def deploy(parameters: dict[str, str] | None = None, *, bucket_policies: bool = True) -> Stack:
    """Deploy the template as stack ``<NamePrefix>`` (several stacks share one moto account).

    moto applies a bucket policy to object requests but ignores its principals and the condition
    operators it does not know (Bool, Null, Numeric*), so the TLS-only statement would refuse every
    object request there; ``bucket_policies=False`` leaves those of the locked buckets out for
    the IAM tests.
    """
    template = load_template()
    parameters = parameters or {}
    name = parameters.get("NamePrefix", PREFIX)
    cloudformation = boto3.client("cloudformation", region_name=REGION)
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE.read_text(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    (described,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
    assert described["StackStatus"] == "CREATE_COMPLETE"
    resolver = Resolver(template, parameters)
    stack = Stack(resolver)
    summaries = cloudformation.list_stack_resources(StackName=name)
    for summary in summaries["StackResourceSummaries"]:
        if summary["LogicalResourceId"]:
            resolver.physical[summary["LogicalResourceId"]] = summary["PhysicalResourceId"]
    for logical, resource in resolver.active():
        kind, physical = resource["Type"], resolver.physical.get(logical, "")
        if kind == "AWS::S3::Bucket":
            resolver.arns[logical] = f"arn:aws:s3:::{physical}"
        elif kind == "AWS::KMS::Key":
            resolver.arns[logical] = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{physical}"
        elif kind == "AWS::IAM::Role":
            resolver.arns[logical] = stack.iam.get_role(RoleName=physical)["Role"]["Arn"]
    # Policies first: moto, like S3, checks the log bucket's policy when logging is switched on.
    ordered = sorted(resolver.active(), key=lambda item: item[1]["Type"] == "AWS::S3::Bucket")
    for logical, resource in ordered:
        kind = resource["Type"]
        if kind == "AWS::S3::Bucket":
            _apply_bucket(stack.s3, resolver.physical[logical], stack.props(logical))
        elif kind == "AWS::KMS::Key":
            # moto's CloudFormation stores the key policy as a dict, which its KMS API then cannot
            # read back; store the same resolved policy as the JSON document KMS keeps.
            policy = json.dumps(stack.props(logical)["KeyPolicy"])
            stack.kms.put_key_policy(
                KeyId=resolver.physical[logical], PolicyName="default", Policy=policy
            )
        elif kind == "AWS::IAM::Role":
            # Same story as the key policies: re-store the resolved inline policies as JSON.
            for policy in stack.props(logical)["Policies"]:
                stack.iam.put_role_policy(
                    RoleName=resolver.physical[logical],
                    PolicyName=policy["PolicyName"],
                    PolicyDocument=json.dumps(policy["PolicyDocument"]),
                )
        elif kind == "AWS::S3::BucketPolicy":
            props = stack.props(logical)
            if not bucket_policies and props["Bucket"] != resolver.physical["AccessLogBucket"]:
                continue
            stack.s3.put_bucket_policy(
                Bucket=props["Bucket"], Policy=json.dumps(props["PolicyDocument"])
            )
        elif kind == "AWS::SecretsManager::Secret":
            props = stack.props(logical)
            created = stack.secrets.create_secret(
                Name=props["Name"], KmsKeyId=props["KmsKeyId"], Description=props["Description"]
            )
            resolver.physical[logical] = created["ARN"]
        elif kind == "AWS::SecretsManager::ResourcePolicy":
            props = stack.props(logical)
            stack.secrets.put_resource_policy(
                SecretId=props["SecretId"],
                ResourcePolicy=json.dumps(props["ResourcePolicy"]),
                BlockPublicPolicy=props["BlockPublicPolicy"],
            )
    return stack


@pytest.fixture(scope="module")
def aws() -> Iterator[None]:
    """One moto account for the module: a deploy costs about a second."""
    with mock_aws():
        yield


@pytest.fixture(scope="module")
def stack(aws: None) -> Stack:
    return deploy()


@pytest.fixture(scope="module")
def secret_stack(aws: None) -> Stack:
    parameters = {"NamePrefix": "coexsecret", "SigningKeyStore": "secret"}
    return deploy(parameters | {"RequireConditionalWrites": "false"})


@pytest.fixture(scope="module")
def kms_stack(aws: None) -> Stack:
    """The planned KMS signer's stack: its key policy is tested before the signer exists."""
    return deploy({"NamePrefix": "coexkms", "SigningKeyStore": "kms"})


# --------------------------------------------------------------------------------------------------
# Buckets
# --------------------------------------------------------------------------------------------------


def assert_compliance_years(retention: dict[str, Any], years: int) -> None:
    # moto reports an unset Days as 0.
    assert (retention["Mode"], retention["Years"], retention.get("Days", 0)) == (
        "COMPLIANCE",
        years,
        0,
    )


@pytest.mark.parametrize(("bucket", "years"), [(ARCHIVE, 7), (RAW, 7)])
def test_bucket_is_locked_in_compliance_mode_by_default(
    stack: Stack, bucket: str, years: int
) -> None:
    lock = stack.s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    assert_compliance_years(lock["Rule"]["DefaultRetention"], years)
    assert stack.s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_retention_years_and_names_are_parameters(aws: None) -> None:
    parameters = {"NamePrefix": "acme-wa", "ArchiveRetentionYears": "10", "RawRetentionYears": "6"}
    stack = deploy(parameters)
    for kind, years in [("archive", 10), ("raw", 6)]:
        bucket = f"acme-wa-{kind}-{ACCOUNT}"
        lock = stack.s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
        assert_compliance_years(lock["Rule"]["DefaultRetention"], years)
    stack.s3.head_bucket(Bucket=f"acme-wa-s3-access-logs-{ACCOUNT}")
    for role in ("receiver", "ingest", "auditor", "legal"):
        stack.iam.get_role(RoleName=f"acme-wa-{role}")


@pytest.mark.parametrize("bucket", [ARCHIVE, RAW])
def test_bucket_encrypts_with_the_customer_managed_key(stack: Stack, bucket: str) -> None:
    config = stack.s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    (rule,) = config["Rules"]
    default = rule["ApplyServerSideEncryptionByDefault"]
    assert default["SSEAlgorithm"] == "aws:kms"
    assert default["KMSMasterKeyID"] == stack.arn("StorageKey")
    key = stack.kms.describe_key(KeyId=default["KMSMasterKeyID"])["KeyMetadata"]
    assert key["KeyManager"] == "CUSTOMER"
    assert stack.kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"]


@pytest.mark.parametrize("bucket", [ARCHIVE, RAW, LOGS])
def test_bucket_blocks_public_access_and_acls(stack: Stack, bucket: str) -> None:
    block = stack.s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    ownership = stack.s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]
    assert ownership["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]


@pytest.mark.parametrize(("bucket", "prefix"), [(ARCHIVE, "s3/archive/"), (RAW, "s3/raw/")])
def test_bucket_logs_access_to_the_log_bucket(stack: Stack, bucket: str, prefix: str) -> None:
    enabled = stack.s3.get_bucket_logging(Bucket=bucket)["LoggingEnabled"]
    assert enabled == {"TargetBucket": LOGS, "TargetPrefix": prefix}
    delivery = stack.statement(LOGS, "S3ServerAccessLogsDelivery")
    assert delivery["Principal"] == {"Service": "logging.s3.amazonaws.com"}


@pytest.mark.parametrize("bucket", [ARCHIVE, RAW, LOGS])
def test_bucket_policy_refuses_plain_http(stack: Stack, bucket: str) -> None:
    deny = stack.statement(bucket, "DenyInsecureTransport")
    assert deny["Effect"] == "Deny"
    assert deny["Principal"] == "*"
    assert deny["Action"] == "s3:*"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert sorted(deny["Resource"]) == [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]


@pytest.mark.parametrize("bucket", [ARCHIVE, RAW])
def test_bucket_policy_refuses_weak_retention_and_foreign_keys(stack: Stack, bucket: str) -> None:
    floor = stack.statement(bucket, "DenyRetentionBelowFloor")
    assert floor["Effect"] == "Deny"
    assert floor["Condition"] == {
        "NumericLessThan": {"s3:object-lock-remaining-retention-days": "1095"}
    }
    mode = stack.statement(bucket, "DenyNonComplianceLockMode")
    assert mode["Condition"]["StringNotEquals"] == {"s3:object-lock-mode": "COMPLIANCE"}
    foreign = stack.statement(bucket, "DenyOtherKmsKey")
    wanted = {"s3:x-amz-server-side-encryption-aws-kms-key-id": stack.arn("StorageKey")}
    assert foreign["Condition"]["StringNotEquals"] == wanted


@pytest.mark.parametrize("bucket", [ARCHIVE, RAW])
def test_bucket_policy_denies_tampering_to_every_application_role(
    stack: Stack, bucket: str
) -> None:
    deny = stack.statement(bucket, "DenyTamperingByApplicationRoles")
    roles = {stack.arn(r) for r in ("ReceiverRole", "IngestRole", "AuditorRole", "LegalRole")}
    assert set(deny["Principal"]["AWS"]) == roles
    for action in (
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:BypassGovernanceRetention",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutLifecycleConfiguration",
        "s3:PutBucketPolicy",
        "s3:PutBucketVersioning",
    ):
        assert action in deny["Action"]


def test_small_objects_are_create_only_unless_switched_off(
    stack: Stack, secret_stack: Stack
) -> None:
    create_only = stack.statement(ARCHIVE, "DenyOverwritingPuts")
    assert create_only["Condition"] == {"Null": {"s3:if-none-match": "true"}}
    assert f"arn:aws:s3:::{ARCHIVE}/checkpoints/*" in create_only["Resource"]
    other = f"coexsecret-archive-{ACCOUNT}"
    sids = {s.get("Sid") for s in secret_stack.bucket_policy(other)["Statement"]}
    assert "DenyOverwritingPuts" not in sids


def test_locked_buckets_never_expire_objects(stack: Stack) -> None:
    for bucket in (ARCHIVE, RAW):
        rules = stack.s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        assert all("Expiration" not in rule for rule in rules)
        assert all("NoncurrentVersionExpiration" not in rule for rule in rules)


def test_buckets_and_keys_survive_stack_deletion() -> None:
    resources = load_template()["Resources"]
    for name, resource in resources.items():
        if resource["Type"] in {"AWS::S3::Bucket", "AWS::KMS::Key", "AWS::SecretsManager::Secret"}:
            assert resource.get("DeletionPolicy") == "Retain", name
            assert resource.get("UpdateReplacePolicy") == "Retain", name


# --------------------------------------------------------------------------------------------------
# Signing key, apart from storage credentials
# --------------------------------------------------------------------------------------------------


def _statements(policy: str | dict[str, Any]) -> list[dict[str, Any]]:
    document = json.loads(policy) if isinstance(policy, str) else policy
    statements: list[dict[str, Any]] = document["Statement"]
    return statements


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def test_the_default_signing_store_is_one_the_pipeline_can_sign_with(stack: Stack) -> None:
    # coexarchive signs with a key file (fetched from the secret); it has no KMS signer yet, so a
    # default that created a KMS signing key would deploy a key nothing signs with.
    parameter = load_template()["Parameters"]["SigningKeyStore"]
    assert parameter["Default"] == "secret"
    assert "PLANNED" in parameter["Description"]
    assert "SigningSecret" in stack.resolver.physical
    assert "SigningKey" not in stack.resolver.physical
    described = stack.secrets.describe_secret(SecretId=f"{PREFIX}/checkpoint-signing-key")
    assert described["KmsKeyId"] != stack.resolver.physical["StorageKey"]
    guide = (Path(__file__).resolve().parents[2] / "infra" / "README.md").read_text()
    assert "| `SigningKeyStore` | `secret` |" in guide
    assert "planned, not usable yet" in guide


def test_only_ingest_may_use_the_signing_key(kms_stack: Stack) -> None:
    stack = kms_stack
    template_key = load_template()["Resources"]["SigningKey"]["Properties"]
    assert (template_key["KeySpec"], template_key["KeyUsage"]) == (
        "ECC_NIST_EDWARDS25519",
        "SIGN_VERIFY",
    )
    policy = stack.kms.get_key_policy(KeyId=stack.arn("SigningKey"), PolicyName="default")
    signers = [s for s in _statements(policy["Policy"]) if "kms:Sign" in _actions(s)]
    assert [s["Principal"] for s in signers] == [{"AWS": stack.arn("IngestRole")}]
    for statement in _statements(policy["Policy"]):
        assert "kms:*" not in _actions(statement)
        assert not any(a.startswith("kms:Sign") or a == "kms:S*" for a in _actions(statement)[1:])
    assert stack.arn("SigningKey") != stack.arn("StorageKey")


def test_signing_secret_is_readable_by_ingest_alone(secret_stack: Stack) -> None:
    described = secret_stack.secrets.describe_secret(SecretId="coexsecret/checkpoint-signing-key")
    assert described["KmsKeyId"] == secret_stack.resolver.physical["SigningSecretKey"]
    assert described["KmsKeyId"] != secret_stack.resolver.physical["StorageKey"]
    policy = secret_stack.secrets.get_resource_policy(SecretId=described["ARN"])
    (deny,) = _statements(policy["ResourcePolicy"])
    assert deny["Effect"] == "Deny"
    assert deny["Principal"] == "*"
    not_ingest = {"ArnNotEquals": {"aws:PrincipalArn": secret_stack.arn("IngestRole")}}
    assert deny["Condition"] == not_ingest
    key_policy = secret_stack.kms.get_key_policy(
        KeyId=secret_stack.arn("SigningSecretKey"), PolicyName="default"
    )
    decrypters = [s for s in _statements(key_policy["Policy"]) if "kms:Decrypt" in _actions(s)]
    assert [s["Principal"] for s in decrypters] == [{"AWS": secret_stack.arn("IngestRole")}]


# --------------------------------------------------------------------------------------------------
# Roles, with moto enforcing IAM for their sessions
# --------------------------------------------------------------------------------------------------

# moto (5.2 and later) authorises an S3 request under its API operation name (`ListObjectVersions`,
# `HeadObject`, `PutObjectLockConfiguration`), while AWS authorises it under an IAM action that is
# often named differently (`s3:ListBucketVersions`, `s3:GetObject`,
# `s3:PutBucketObjectLockConfiguration`), and by the version id for versioned deletes and reads.
# Translate, so the role policies are tested as AWS reads them: a denial then means the template
# denies it, not that moto looked for an action name no policy can grant.
_IAM_ACTION_FOR_OPERATION = {
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
    "HeadBucket": "ListBucket",
    "HeadObject": "GetObject",
    "DeleteObjects": "DeleteObject",
    "CreateMultipartUpload": "PutObject",
    "UploadPart": "PutObject",
    "CompleteMultipartUpload": "PutObject",
    "GetObjectLockConfiguration": "GetBucketObjectLockConfiguration",
    "PutObjectLockConfiguration": "PutBucketObjectLockConfiguration",
    "GetBucketLifecycleConfiguration": "GetLifecycleConfiguration",
    "PutBucketLifecycleConfiguration": "PutLifecycleConfiguration",
    "GetBucketEncryption": "GetEncryptionConfiguration",
    "PutBucketEncryption": "PutEncryptionConfiguration",
    "DeleteBucketEncryption": "PutEncryptionConfiguration",
}
_VERSIONED_ACTION = {"GetObject": "GetObjectVersion", "DeleteObject": "DeleteObjectVersion"}


def iam_action(operation: str, querystring: dict[str, Any]) -> str:
    """The IAM action AWS checks for an S3 API operation (the one the policies must name)."""
    action = _IAM_ACTION_FOR_OPERATION.get(operation, operation)
    if "versionId" in querystring:
        action = _VERSIONED_ACTION.get(action, action)
    return action


RoleClient = Callable[[str], Any]


IAM_PREFIX = "coexiam"
IAM_ARCHIVE = f"{IAM_PREFIX}-archive-{ACCOUNT}"
IAM_RAW = f"{IAM_PREFIX}-raw-{ACCOUNT}"


@pytest.fixture(scope="module")
def iam_stack(aws: None) -> Stack:
    return deploy({"NamePrefix": IAM_PREFIX}, bucket_policies=False)


@pytest.fixture(scope="module")
def sessions(iam_stack: Stack) -> dict[str, Any]:
    """Seed sealed objects as admin; S3 clients for a session of each role."""
    stack = iam_stack
    retain = datetime.now(UTC) + timedelta(days=3 * 366)
    for bucket, key in [(IAM_ARCHIVE, SEGMENT), (IAM_ARCHIVE, CHECKPOINT), (IAM_RAW, RAW_OBJECT)]:
        stack.s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=b"sealed",
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=retain,
        )
    sts = boto3.client("sts", region_name=REGION)
    clients: dict[str, Any] = {}
    for role in ("receiver", "ingest", "auditor", "legal"):
        arn = stack.iam.get_role(RoleName=f"{IAM_PREFIX}-{role}")["Role"]["Arn"]
        creds = sts.assume_role(RoleArn=arn, RoleSessionName=f"test-{role}")["Credentials"]
        clients[role] = boto3.client(
            "s3",
            region_name=REGION,
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
        )
    return clients


@pytest.fixture
def enforced(sessions: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> RoleClient:
    """Role clients, with moto checking every request against the role's IAM policies."""
    create = S3IAMRequest.__init__

    def with_aws_action(request: S3IAMRequest, *args: Any, action: str, **kwargs: Any) -> None:
        create(request, *args, action=action, **kwargs)
        query = parse_qs(urlsplit(request._path).query, keep_blank_values=True)
        request._action = f"s3:{iam_action(action, query)}"

    monkeypatch.setattr(S3IAMRequest, "__init__", with_aws_action)
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    return sessions.__getitem__


@pytest.mark.parametrize(
    ("operation", "querystring", "action"),
    [
        ("ListObjectVersions", {"versions": [""]}, "ListBucketVersions"),
        ("ListObjectsV2", {"list-type": ["2"]}, "ListBucket"),
        ("HeadObject", {}, "GetObject"),
        ("GetObject", {"versionId": ["v1"]}, "GetObjectVersion"),
        ("DeleteObject", {"versionId": ["v1"]}, "DeleteObjectVersion"),
        ("DeleteObject", {}, "DeleteObject"),
        ("PutObjectLockConfiguration", {"object-lock": [""]}, "PutBucketObjectLockConfiguration"),
        ("PutObjectLegalHold", {"legal-hold": [""]}, "PutObjectLegalHold"),
    ],
)
def test_operations_are_authorised_under_their_iam_action(
    operation: str, querystring: dict[str, Any], action: str
) -> None:
    assert iam_action(operation, querystring) == action


def denied(call: Callable[..., Any], **kwargs: Any) -> None:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    assert caught.value.response["Error"]["Code"] == "AccessDenied"


def _version(auditor: Any, bucket: str, key: str) -> str:
    (version,) = auditor.list_object_versions(Bucket=bucket, Prefix=key)["Versions"]
    version_id: str = version["VersionId"]
    return version_id


# ingest


def test_ingest_cannot_delete_a_sealed_object(enforced: RoleClient) -> None:
    denied(enforced("ingest").delete_object, Bucket=IAM_ARCHIVE, Key=SEGMENT)


def test_ingest_cannot_delete_a_sealed_object_version(enforced: RoleClient) -> None:
    version = _version(enforced("auditor"), IAM_ARCHIVE, CHECKPOINT)
    denied(enforced("ingest").delete_object, Bucket=IAM_ARCHIVE, Key=CHECKPOINT, VersionId=version)


def test_ingest_cannot_delete_raw_evidence(enforced: RoleClient) -> None:
    denied(enforced("ingest").delete_object, Bucket=IAM_RAW, Key=RAW_OBJECT)


def test_ingest_cannot_batch_delete(enforced: RoleClient) -> None:
    ingest = enforced("ingest")
    result = ingest.delete_objects(Bucket=IAM_ARCHIVE, Delete={"Objects": [{"Key": SEGMENT}]})
    assert [e["Code"] for e in result["Errors"]] == ["AccessDenied"]


def test_ingest_cannot_change_the_bucket_policy(enforced: RoleClient) -> None:
    policy = json.dumps({"Version": "2012-10-17", "Statement": []})
    denied(enforced("ingest").put_bucket_policy, Bucket=IAM_ARCHIVE, Policy=policy)
    denied(enforced("ingest").delete_bucket_policy, Bucket=IAM_ARCHIVE)


def test_ingest_cannot_change_the_object_lock_configuration(enforced: RoleClient) -> None:
    shorter = {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
    }
    denied(
        enforced("ingest").put_object_lock_configuration,
        Bucket=IAM_ARCHIVE,
        ObjectLockConfiguration=shorter,
    )


def test_ingest_cannot_add_an_expiry_lifecycle(enforced: RoleClient) -> None:
    expire = {"Rules": [{"ID": "x", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}}]}
    denied(
        enforced("ingest").put_bucket_lifecycle_configuration,
        Bucket=IAM_ARCHIVE,
        LifecycleConfiguration=expire,
    )


def test_ingest_cannot_suspend_versioning(enforced: RoleClient) -> None:
    denied(
        enforced("ingest").put_bucket_versioning,
        Bucket=IAM_ARCHIVE,
        VersioningConfiguration={"Status": "Suspended"},
    )


def test_ingest_cannot_write_raw_or_the_access_log(enforced: RoleClient) -> None:
    denied(
        enforced("ingest").put_object, Bucket=IAM_RAW, Key="raw/date=2026-01-02/forged", Body=b"x"
    )
    for chain in ("access-log", "holds"):
        for key in (
            f"archive/v1/chain={chain}/date=2026-01-02/forged.parquet",
            f"manifests/chain={chain}/00000000000000000000.json",
            f"intents/chain={chain}/00000000000000000000-0123456789abcdef",
            f"checkpoints/chain={chain}/00000000000000000001",
            f"dedup/v1/chain={chain}/date=2026-01-02/forged.ids.zst",
        ):
            denied(enforced("ingest").put_object, Bucket=IAM_ARCHIVE, Key=key, Body=b"x")


def test_ingest_cannot_bypass_governance_or_retention_settings(iam_stack: Stack) -> None:
    # moto's S3 does not ask for s3:BypassGovernanceRetention when the bypass header is sent, nor
    # for the bucket-configuration actions it does not route; ask moto's IAM evaluator directly.
    for action in (
        "s3:BypassGovernanceRetention",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutLifecycleConfiguration",
        "s3:DeleteObjectVersion",
        "s3:PutEncryptionConfiguration",
        "s3:PutBucketLogging",
    ):
        for resource in (f"arn:aws:s3:::{IAM_ARCHIVE}", f"arn:aws:s3:::{IAM_ARCHIVE}/{SEGMENT}"):
            assert (
                decide(iam_stack, f"{IAM_PREFIX}-ingest", action, resource)
                is PermissionResult.DENIED
            )


def test_ingest_puts_sealed_objects_with_their_retention(enforced: RoleClient) -> None:
    ingest = enforced("ingest")
    assert ingest.get_object(Bucket=IAM_RAW, Key=RAW_OBJECT)["Body"].read() == b"sealed"
    retain = datetime.now(UTC) + timedelta(days=7 * 366)
    for key in (
        SEGMENT.replace("00099", "00199"),
        "intents/chain=100200300/00000000000000000100-0123456789abcdef",
        CHECKPOINT.replace("0100", "0200"),
    ):
        ingest.put_object(
            Bucket=IAM_ARCHIVE,
            Key=key,
            Body=b"next",
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=retain,
        )
    ingest.put_object_retention(
        Bucket=IAM_ARCHIVE, Key=SEGMENT, Retention={"Mode": "COMPLIANCE", "RetainUntilDate": retain}
    )


# receiver


def test_receiver_cannot_read_the_archive(enforced: RoleClient) -> None:
    denied(enforced("receiver").get_object, Bucket=IAM_ARCHIVE, Key=SEGMENT)


def test_receiver_cannot_read_back_raw_objects(enforced: RoleClient) -> None:
    denied(enforced("receiver").get_object, Bucket=IAM_RAW, Key=RAW_OBJECT)


@pytest.mark.parametrize(
    ("bucket", "key"),
    [
        (IAM_RAW, "quarantine/x"),
        (IAM_RAW, "rawx/date=2026-01-02/a"),
        (IAM_ARCHIVE, "raw/date=2026-01-02/a"),
        (IAM_ARCHIVE, SEGMENT),
        (IAM_ARCHIVE, CHECKPOINT),
    ],
)
def test_receiver_cannot_write_outside_raw(enforced: RoleClient, bucket: str, key: str) -> None:
    denied(enforced("receiver").put_object, Bucket=bucket, Key=key, Body=b"x")


def test_receiver_cannot_delete_or_set_retention(enforced: RoleClient) -> None:
    receiver = enforced("receiver")
    denied(receiver.delete_object, Bucket=IAM_RAW, Key=RAW_OBJECT)
    past = datetime.now(UTC) + timedelta(days=1)
    denied(
        receiver.put_object_retention,
        Bucket=IAM_RAW,
        Key=RAW_OBJECT,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": past},
    )


def test_receiver_adds_raw_objects(enforced: RoleClient) -> None:
    enforced("receiver").put_object(
        Bucket=IAM_RAW, Key="raw/date=2026-01-02/receiver-a-2.jsonl.zst", Body=b"{}"
    )


# auditor


@pytest.mark.parametrize(
    ("bucket", "key"),
    [
        (IAM_ARCHIVE, SEGMENT),
        (IAM_ARCHIVE, CHECKPOINT),
        (IAM_ARCHIVE, "archive/v1/chain=holds/date=2026-01-02/x.parquet"),
        (IAM_ARCHIVE, "manifests/chain=900000000000001/00000000000000000000.json"),
        (IAM_ARCHIVE, "access-log/x"),
        (IAM_RAW, "raw/x"),
    ],
)
def test_auditor_cannot_write_outside_the_access_log(
    enforced: RoleClient, bucket: str, key: str
) -> None:
    denied(enforced("auditor").put_object, Bucket=bucket, Key=key, Body=b"x")


def test_auditor_cannot_delete_or_hold(enforced: RoleClient) -> None:
    auditor = enforced("auditor")
    denied(auditor.delete_object, Bucket=IAM_ARCHIVE, Key=SEGMENT)
    denied(
        auditor.put_object_legal_hold, Bucket=IAM_ARCHIVE, Key=SEGMENT, LegalHold={"Status": "OFF"}
    )


def test_auditor_reads_everything_and_appends_to_the_access_log(enforced: RoleClient) -> None:
    auditor = enforced("auditor")
    assert auditor.get_object(Bucket=IAM_ARCHIVE, Key=SEGMENT)["Body"].read() == b"sealed"
    assert auditor.get_object(Bucket=IAM_RAW, Key=RAW_OBJECT)["Body"].read() == b"sealed"
    # Each of these is authorised under an IAM action named unlike its API operation.
    assert auditor.head_object(Bucket=IAM_ARCHIVE, Key=SEGMENT)["ContentLength"] == len(b"sealed")
    listed = auditor.list_objects_v2(Bucket=IAM_ARCHIVE, Prefix=SEGMENT)["Contents"]
    assert [o["Key"] for o in listed] == [SEGMENT]
    version = _version(auditor, IAM_ARCHIVE, SEGMENT)
    body = auditor.get_object(Bucket=IAM_ARCHIVE, Key=SEGMENT, VersionId=version)["Body"].read()
    assert body == b"sealed"
    for key in (
        "archive/v1/chain=access-log/date=2026-01-02/00000000000000000000-00000000000000000000-ab.parquet",
        "manifests/chain=access-log/00000000000000000000.json",
        "intents/chain=access-log/00000000000000000000-0123456789abcdef",
        "checkpoints/chain=access-log/00000000000000000001",
        "dedup/v1/chain=access-log/date=2026-01-02/00000000000000000000-ab.ids.zst",
    ):
        auditor.put_object(Bucket=IAM_ARCHIVE, Key=key, Body=b"{}")


# legal


def test_legal_cannot_delete_or_change_retention(enforced: RoleClient) -> None:
    legal = enforced("legal")
    denied(legal.delete_object, Bucket=IAM_ARCHIVE, Key=SEGMENT)
    soon = datetime.now(UTC) + timedelta(days=1)
    denied(
        legal.put_object_retention,
        Bucket=IAM_ARCHIVE,
        Key=SEGMENT,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": soon},
    )


def test_legal_cannot_write_sealed_objects(enforced: RoleClient) -> None:
    denied(enforced("legal").put_object, Bucket=IAM_ARCHIVE, Key=SEGMENT, Body=b"x")
    denied(
        enforced("legal").put_object,
        Bucket=IAM_ARCHIVE,
        Key="manifests/chain=access-log/00000000000000000000.json",
        Body=b"x",
    )


def test_legal_places_and_releases_holds(enforced: RoleClient) -> None:
    legal = enforced("legal")
    for bucket, key in [(IAM_ARCHIVE, SEGMENT), (IAM_RAW, RAW_OBJECT)]:
        legal.put_object_legal_hold(Bucket=bucket, Key=key, LegalHold={"Status": "ON"})
        assert legal.get_object_legal_hold(Bucket=bucket, Key=key)["LegalHold"] == {"Status": "ON"}
        legal.put_object_legal_hold(Bucket=bucket, Key=key, LegalHold={"Status": "OFF"})
    for key in (
        "manifests/chain=holds/00000000000000000000.json",
        "intents/chain=holds/00000000000000000000-0123456789abcdef",
    ):
        legal.put_object(Bucket=IAM_ARCHIVE, Key=key, Body=b"{}")


# every role


def decide(stack: Stack, role: str, action: str, resource: str) -> PermissionResult:
    """moto's IAM decision for ``role`` from its inline and attached policies."""
    documents = [
        stack.iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
        for name in stack.iam.list_role_policies(RoleName=role)["PolicyNames"]
    ]
    for attached in stack.iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
        policy = stack.iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
        version = stack.iam.get_policy_version(
            PolicyArn=attached["PolicyArn"], VersionId=policy["DefaultVersionId"]
        )
        documents.append(version["PolicyVersion"]["Document"])
    results = {
        IAMPolicy(json.dumps(d) if isinstance(d, dict) else d).is_action_permitted(action, resource)
        for d in documents
    }
    if PermissionResult.DENIED in results:
        return PermissionResult.DENIED
    if PermissionResult.PERMITTED in results:
        return PermissionResult.PERMITTED
    return PermissionResult.NEUTRAL


@pytest.mark.parametrize("role", ["receiver", "ingest", "auditor", "legal"])
def test_no_role_may_tamper_with_buckets_or_keys(iam_stack: Stack, role: str) -> None:
    for action in (
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:BypassGovernanceRetention",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutBucketPolicy",
        "s3:DeleteBucket",
        "kms:ScheduleKeyDeletion",
        "kms:PutKeyPolicy",
    ):
        assert decide(iam_stack, f"{IAM_PREFIX}-{role}", action, "*") is PermissionResult.DENIED


@pytest.mark.parametrize("role", ["receiver", "auditor", "legal"])
def test_storage_roles_get_no_signing_permission(iam_stack: Stack, role: str) -> None:
    key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/any-signing-key"
    assert (
        decide(iam_stack, f"{IAM_PREFIX}-{role}", "kms:Sign", key) is not PermissionResult.PERMITTED
    )
    secret = (
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{IAM_PREFIX}/checkpoint-signing-key-x"
    )
    assert (
        decide(iam_stack, f"{IAM_PREFIX}-{role}", "secretsmanager:GetSecretValue", secret)
        is not PermissionResult.PERMITTED
    )
