"""The deadlines ECS and the ALB impose are set explicitly and handed to the
apps from one value each: emu's stopTimeout, the ALB's idle timeout against the
frontend's keep-alive, and the frontend's read-only root with bounded scratch space."""
import pytest

from conftest import CERT
from harness import ALB, TASKDEF, run_layer
from test_hardening import container, env


def test_emu_is_told_its_own_stop_timeout(compute_run):
    emu = container(compute_run, "-emu")
    assert emu["stopTimeout"] == 120  # Fargate's maximum, set rather than ECS's 30 s default
    assert env(compute_run, "-emu")["EMU_STOP_TIMEOUT_SECONDS"] == "120"


def test_stop_timeout_follows_config(upstream):
    run = run_layer("compute", {"emuStopTimeoutSeconds": 45, "certificateArn": CERT}, stack_outputs=upstream, stack="stop45")
    assert container(run, "-emu")["stopTimeout"] == 45
    assert env(run, "-emu")["EMU_STOP_TIMEOUT_SECONDS"] == "45"


def test_frontend_keep_alive_comes_from_the_albs_idle_timeout(upstream):
    run = run_layer("compute", {"albIdleTimeoutSeconds": 300, "certificateArn": CERT}, stack_outputs=upstream, stack="idle300")
    assert run.one(ALB, "-web").inputs["idleTimeout"] == 300
    assert env(run, "-frontend")["LOAD_BALANCER_IDLE_TIMEOUT_SECONDS"] == "300"


def test_frontend_trusts_forwarded_headers_only_from_the_vpc(compute_run, upstream):
    assert env(compute_run, "-frontend")["FRONTEND_TRUSTED_PROXIES"] == upstream["network"]["vpcCidrBlock"]


def test_frontend_root_is_read_only_with_bounded_scratch(compute_run):
    front = container(compute_run, "-frontend")
    assert front["readonlyRootFilesystem"] is True
    assert front["mountPoints"] == [{"sourceVolume": "scratch", "containerPath": "/scratch", "readOnly": False}]
    task = compute_run.one(TASKDEF, "-frontend").inputs
    assert task["volumes"] == [{"name": "scratch"}]
    assert task["ephemeralStorage"] == {"sizeInGib": 21}
    written = env(compute_run, "-frontend")
    assert all(written[name].startswith("/scratch") for name in ("HOME", "TMPDIR", "GRADIO_TEMP_DIR", "HF_HOME"))
    # emu and pelican keep their defaults
    assert "readonlyRootFilesystem" not in container(compute_run, "-pelican")


def test_an_editor_login_facing_the_internet_gets_the_waf_by_default(compute_run):
    acl = compute_run.one("aws:wafv2/webAcl:WebAcl").inputs
    assert acl["rules"][0]["statement"]["rateBasedStatement"]["limit"] == 1000


@pytest.mark.parametrize("config", [
    {"allowPlainHttp": True},  # a throwaway stack: no editor login
    {"certificateArn": CERT, "albIngressCidr": "203.0.113.0/24"},  # not facing the internet
])
def test_the_waf_can_go_where_no_login_faces_the_internet(upstream, config):
    run = run_layer("compute", {**config, "wafRateLimit": 0}, stack_outputs=upstream, stack="nowaf")
    assert run.of_type("aws:wafv2/webAcl:WebAcl") == []


def test_no_waf_in_front_of_an_open_editor_login_is_refused(upstream):
    with pytest.raises(Exception, match="editing is on and the ALB admits the whole internet"):
        run_layer("compute", {"certificateArn": CERT, "wafRateLimit": 0}, stack_outputs=upstream, stack="openlogin")


def test_waf_rate_rule_blocks_a_fast_address(upstream):
    run = run_layer("compute", {"wafRateLimit": 300, "certificateArn": CERT}, stack_outputs=upstream, stack="waf")
    acl = run.one("aws:wafv2/webAcl:WebAcl").inputs
    (rule,) = acl["rules"]
    assert rule["action"] == {"block": {}}
    assert rule["statement"]["rateBasedStatement"] == {"limit": 300, "aggregateKeyType": "IP"}
    assert acl["scope"] == "REGIONAL" and acl["defaultAction"] == {"allow": {}}
    association = run.one("aws:wafv2/webAclAssociation:WebAclAssociation").inputs
    assert association["resourceArn"] == run.one(ALB, "-web").outputs["arn"]
