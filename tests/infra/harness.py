"""Run a layer's Pulumi program under mocks, in isolation, and record what it registers.

Each run gets a fresh root stack (so stack transformations and exports do not
leak between layers), its own config map and its own StackReference outputs.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import runpy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import settings as _settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
REGION = "us-east-1"
ORG = "acme"


# The apps' own Pinecone keys, each different from Pulumi's (pineconeApiKey).
PINECONE_APP_KEYS = {"pineconeFrontendApiKey": "pcsk-frontend-key", "pineconeEmuApiKey": "pcsk-emu-key",
                     "pineconeOperatorApiKey": "pcsk-operator-key"}
DATA_SECRETS = {"pineconeApiKey": "pcsk-test-key", "editorPassword": "editor-pass", **PINECONE_APP_KEYS}

SECRET_SIG = "4dabf18193072939515e22adb298388d"

# Type tokens of the resources the tests look up.
SG = "aws:ec2/securityGroup:SecurityGroup"
INGRESS = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
EGRESS = "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule"
SERVICE = "aws:ecs/service:Service"
CLUSTER = "aws:ecs/cluster:Cluster"
TASKDEF = "aws:ecs/taskDefinition:TaskDefinition"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
TARGET = "aws:appautoscaling/target:Target"
POLICY = "aws:appautoscaling/policy:Policy"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
SECRET_VERSION = "aws:secretsmanager/secretVersion:SecretVersion"
QUEUE = "aws:sqs/queue:Queue"
ALB = "aws:lb/loadBalancer:LoadBalancer"
DB = "aws:rds/instance:Instance"
INDEX = "pinecone:index/index:Index"
API_KEY = "pinecone:index/apiKey:ApiKey"
IMAGE = "docker-build:index:Image"
VPC = "awsx:ec2:Vpc"


def unwrap_secrets(value: Any, path: str = "", found: list | None = None) -> Any:
    """Replace serialized secrets by their values; collect the paths that were secret."""
    if isinstance(value, dict):
        if SECRET_SIG in value and "value" in value:
            if found is not None:
                found.append(path)
            return unwrap_secrets(value["value"], path, found)
        return {k: unwrap_secrets(v, f"{path}.{k}" if path else k, found) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


@dataclass
class Recorded:
    typ: str
    name: str
    inputs: dict
    outputs: dict
    custom: bool
    secret_paths: list = field(default_factory=list)

    def __repr__(self) -> str:  # keep assertion messages short
        return f"<{self.typ} {self.name}>"


def _service(typ: str) -> str:
    # "aws:sqs/queue:Queue" -> "sqs"
    return typ.split(":")[1].split("/")[0]


# ARN formats by service (AWS docs: "Identify AWS resources with Amazon Resource Names");
# any other service gets arn:aws:<service>:<region>:<account>:<resource type>/<name>.
ARN_FORMATS = {
    "sqs": "arn:aws:sqs:{region}:{account}:{name}",
    "sns": "arn:aws:sns:{region}:{account}:{name}",
    "secretsmanager": "arn:aws:secretsmanager:{region}:{account}:secret:{name}-AbCdEf",
    "iam": "arn:aws:iam::{account}:{kind}/{name}",
    "s3": "arn:aws:s3:::{name}",
    "kms": "arn:aws:kms:{region}:{account}:key/{name}",
}


def _arn(typ: str, name: str) -> str:
    svc, kind = _service(typ), typ.split(":")[-1].lower()
    if svc == "cloudwatch" and "logGroup" in typ:
        return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{name}"
    default = f"arn:aws:{svc}:{{region}}:{{account}}:{{kind}}/{{name}}"
    return ARN_FORMATS.get(svc, default).format(region=REGION, account=ACCOUNT, kind=kind, name=name)


def fake_outputs(typ: str, name: str, inputs: dict) -> dict:
    """Provider-computed outputs the programs read."""
    out: dict[str, Any] = {}
    physical = inputs.get("name") or f"{name}-phys"
    if typ == "awsx:ec2:Vpc":
        out = {
            "vpcId": "vpc-0abc",
            "publicSubnetIds": ["subnet-pub-a", "subnet-pub-b"],
            "privateSubnetIds": ["subnet-priv-a", "subnet-priv-b"],
        }
    elif typ == "pinecone:index/index:Index":
        out = {"host": f"{inputs.get('name', name)}-x1y2.svc.aped-4627-b74a.pinecone.io"}
    elif typ == "pinecone:index/apiKey:ApiKey":
        out = {"key": f"pcsk-created-{inputs.get('name', name)}"}
    elif typ.startswith("aws:"):
        out = {"arn": _arn(typ, physical), "name": physical}
        if typ == "aws:sqs/queue:Queue":
            out["url"] = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{physical}"
        elif typ == "aws:rds/instance:Instance":
            out.update(
                address=f"{physical}.c0ffee.{REGION}.rds.amazonaws.com",
                port=5432,
                masterUserSecrets=[
                    {"secretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!db-1234-AbCdEf",
                     "secretStatus": "active", "kmsKeyId": "alias/aws/secretsmanager"}
                ],
            )
        elif typ == "aws:ecr/repository:Repository":
            out["repositoryUrl"] = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{physical}"
        elif typ == "aws:lb/loadBalancer:LoadBalancer":
            out.update(dnsName=f"{physical}-123.{REGION}.elb.amazonaws.com",
                       arnSuffix=f"app/{physical}/abc", zoneId="Z35SXDOTRQ7X7K")
        elif typ == "aws:lb/targetGroup:TargetGroup":
            out["arnSuffix"] = f"targetgroup/{physical}/def"
        elif typ == "aws:s3/bucket:Bucket":
            out["bucket"] = physical
        elif typ == "aws:ecs/capacityProvider:CapacityProvider":
            out["name"] = physical
    elif typ == "docker-build:index:Image":
        # The first tag's repository with the pushed digest, as pulumi-docker-build's `ref` reads.
        repository = str((inputs.get("tags") or [name])[0]).rsplit(":", 1)[0]
        out = {"digest": f"sha256:{'a' * 64}", "ref": f"{repository}@sha256:{'a' * 64}"}
    return out


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self, stack_outputs: dict[str, dict]):
        self.stack_outputs = stack_outputs
        self.resources: list[Recorded] = []
        self.calls: list[tuple[str, dict]] = []
        self.stack_refs: list[str] = []
        self.stack_transforms: list = []
        self.random_passwords = 0

    def register_transform(self, transform) -> None:
        # The mock monitor does not run stack transforms; new_resource does, as the engine would.
        self.stack_transforms.append(transform)

    def _transformed(self, args: pulumi.runtime.MockResourceArgs) -> dict:
        props = dict(args.inputs)
        for transform in self.stack_transforms:
            result = transform(pulumi.ResourceTransformArgs(
                custom=bool(args.custom), type_=args.typ, name=args.name, props=props,
                opts=pulumi.ResourceOptions()))
            if result is not None:
                props = dict(result.props)
        return props

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        if args.typ == "pulumi:pulumi:StackReference":
            ref = args.inputs["name"]
            self.stack_refs.append(ref)
            project = ref.split("/")[1]
            return f"{ref}", {"name": ref, "outputs": self.stack_outputs.get(project, {}),
                              "secretOutputNames": []}
        raw_inputs = self._transformed(args)
        computed = fake_outputs(args.typ, args.name, raw_inputs)
        # Remote components (awsx) have outputs unlike their inputs: echo nothing back.
        outputs = {**raw_inputs, **computed} if args.custom else computed
        secret_paths: list[str] = []
        inputs = unwrap_secrets(json.loads(json.dumps(raw_inputs, default=str)), found=secret_paths)
        self.resources.append(
            Recorded(args.typ, args.name, inputs, outputs, bool(args.custom), secret_paths)
        )
        return f"{args.name}-id", outputs

    def call(self, args: pulumi.runtime.MockCallArgs):
        self.calls.append((args.token, dict(args.args)))
        if args.token == "aws:ecr/getAuthorizationToken:getAuthorizationToken":
            return {"userName": "AWS", "password": "token-password",
                    "proxyEndpoint": f"https://{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com",
                    "authorizationToken": "QVdTOnRva2Vu", "expiresAt": "2030-01-01T00:00:00Z",
                    "id": REGION, "registryId": ACCOUNT, "region": REGION}
        if args.token == "aws:ssm/getParameter:getParameter":
            return {"name": args.args.get("name"), "value": "ami-0gpu1234", "type": "String",
                    "arn": "arn:aws:ssm:::parameter/x", "id": args.args.get("name"),
                    "insecureValue": "ami-0gpu1234", "version": 1, "withDecryption": False}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": ACCOUNT, "arn": f"arn:aws:iam::{ACCOUNT}:user/x",
                    "id": ACCOUNT, "userId": "AIDA"}
        if args.token == "aws:secretsmanager/getRandomPassword:getRandomPassword":
            # A new value on every call, as the real data source gives on every run.
            self.random_passwords += 1
            return {"randomPassword": f"mock-random-password-{self.random_passwords}", "id": "random"}
        if args.token == "aws:elb/getServiceAccount:getServiceAccount":
            # The Elastic Load Balancing account of us-east-1 (AWS docs: ALB access logs).
            return {"arn": "arn:aws:iam::127311923021:root", "id": "127311923021"}
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws",
                    "reverseDnsPrefix": "com.amazonaws"}
        return {}


@dataclass
class LayerRun:
    project: str
    resources: list[Recorded]
    exports: dict[str, Any]
    stack_refs: list[str]
    calls: list[tuple[str, dict]] = field(default_factory=list)
    stack_transforms: list = field(default_factory=list)
    # Resource options by "<type>::<logical name>" (depends_on, custom_timeouts, ignore_changes),
    # as the program passed them: the mocks never see options.
    options: dict[str, pulumi.ResourceOptions] = field(default_factory=dict)

    def of_type(self, typ: str) -> list[Recorded]:
        return [r for r in self.resources if r.typ == typ]

    def one(self, typ: str, name_suffix: str = "") -> Recorded:
        found = [r for r in self.of_type(typ) if r.name.endswith(name_suffix)]
        assert len(found) == 1, f"expected one {typ} named *{name_suffix}, got {found}"
        return found[0]

    def opts(self, typ: str, name: str) -> pulumi.ResourceOptions:
        return self.options[f"{typ}::{name}"]

    def by_name(self, name: str) -> Recorded:
        found = [r for r in self.resources if r.name == name]
        assert len(found) == 1, f"expected one resource named {name}, got {found}"
        return found[0]


def run_layer(project: str, config: dict[str, Any] | None = None, *,
              stack: str = "dev", secrets: dict[str, str] | None = None,
              stack_outputs: dict[str, dict] | None = None) -> LayerRun:
    """Run ``<repo>/<project>/__main__.py`` under fresh mocks and return what it did.

    Provider resources fill unset inputs from the environment (the pinecone provider's
    apiKey from PINECONE_API_KEY, aws's from AWS_*), and other suites in the same pytest
    process export a local stack's variables: the program runs without them, so what it
    declares depends on its config alone."""
    with _without_provider_environment():
        return _run_layer(project, config, stack=stack, secrets=secrets, stack_outputs=stack_outputs)


PROVIDER_ENV_PREFIXES = ("PINECONE_", "AWS_")


@contextlib.contextmanager
def _without_provider_environment():
    saved = {k: v for k, v in os.environ.items() if k.startswith(PROVIDER_ENV_PREFIXES)}
    for key in saved:
        del os.environ[key]
    try:
        yield
    finally:
        os.environ.update(saved)


def _ensure_event_loop() -> None:
    """pulumi's runtime makes its futures on the main thread's current event loop. A test
    that ran asyncio.run() earlier in the same process (the order differs from worker to
    worker under pytest-xdist) leaves the thread without one, so set a fresh one."""
    policy = asyncio.get_event_loop_policy()
    try:
        policy.get_event_loop()
    except RuntimeError:
        policy.set_event_loop(policy.new_event_loop())


def _run_layer(project: str, config: dict[str, Any] | None, *, stack: str, secrets: dict[str, str] | None,
               stack_outputs: dict[str, dict] | None) -> LayerRun:
    _ensure_event_loop()
    mocks = RecordingMocks(stack_outputs or {})
    _settings.ROOT.set(None)  # a new root Stack: no transformations or exports carried over
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, organization=ORG)
    all_config = {"aws:region": REGION}
    for key, value in (config or {}).items():
        full = key if ":" in key else f"{project}:{key}"
        all_config[full] = value if isinstance(value, str) else json.dumps(value)
    secret_keys = []
    for key, value in (secrets or {}).items():
        full = key if ":" in key else f"{project}:{key}"
        all_config[full] = value
        secret_keys.append(full)
    pulumi.runtime.set_all_config(all_config, secret_keys)
    _settings.SETTINGS.rpc_manager.clear()
    _settings.SETTINGS.outputs.clear()

    main = REPO / project / "__main__.py"
    options: dict[str, pulumi.ResourceOptions] = {}

    def record_options(args: pulumi.ResourceTransformationArgs):
        options[f"{args.type_}::{args.name}"] = args.opts
        return None

    def program():
        pulumi.runtime.register_stack_transformation(record_options)
        runpy.run_path(str(main), run_name="__main__")

    _sync_await(run_pulumi_func(program))

    root = _settings.get_root_resource()
    exports = {k: _resolve(v) for k, v in root.outputs.items()}
    return LayerRun(project, mocks.resources, exports, mocks.stack_refs, mocks.calls,
                    mocks.stack_transforms, options)


def _resolve(value: Any) -> Any:
    return _sync_await(pulumi.Output.from_input(value).future())
