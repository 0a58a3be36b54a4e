"""Layer runs under mocks, shared by the tests (each layer config runs once per session).

Downstream layers are fed the *exports of the upstream mocked runs*, so a
renamed export breaks the consumer's ``require_output`` here, not in AWS.
"""
from __future__ import annotations

import logging

import pytest

# tests/infra is no package, so pytest puts this folder on sys.path (`harness`); the
# layers import the installed `infra` package.
from harness import DATA_SECRETS, run_layer
CERT = "arn:aws:acm:us-east-1:123456789012:certificate/abc"


@pytest.fixture(scope="session")
def network_run():
    return run_layer("network")


@pytest.fixture(scope="session")
def network_prod_run():
    return run_layer("network", {"availabilityZones": 3, "natGatewayStrategy": "OnePerAz",
                                 "vpcEndpoints": True, "tier": "prod"}, stack="prod")


@pytest.fixture(scope="session")
def data_upstream(network_run, messaging_run):
    """What the data layer reads: the network, and messaging's alert topic for its alarms."""
    return {"network": network_run.exports, "messaging": messaging_run.exports}


@pytest.fixture(scope="session")
def data_run(data_upstream):
    return run_layer("data", secrets=DATA_SECRETS, stack_outputs=data_upstream)


@pytest.fixture(scope="session")
def data_prod_run(network_prod_run, messaging_run):
    return run_layer(
        "data",
        {"dbMultiAz": True, "dbDeletionProtection": True, "dbBackupRetentionDays": 14, "tier": "prod",
         "pineconeDeletionProtection": True, "networkStack": "acme/network/prod"},
        stack="prod", secrets=DATA_SECRETS,
        stack_outputs={"network": network_prod_run.exports, "messaging": messaging_run.exports},
    )


@pytest.fixture(scope="session")
def messaging_run():
    return run_layer("messaging", {"alertEmail": "oncall@example.com"})


@pytest.fixture(scope="session")
def messaging_quiet_run():
    return run_layer("messaging", stack="quiet")


@pytest.fixture(scope="session")
def upstream(network_run, data_run, messaging_run):
    return {"network": network_run.exports, "data": data_run.exports, "messaging": messaging_run.exports}


@pytest.fixture(scope="session")
def compute_run(upstream):
    """The default shape: HTTPS with a certificate, no domain of its own."""
    return run_layer("compute", {"certificateArn": CERT}, stack_outputs=upstream)


@pytest.fixture(scope="session")
def compute_plain_run(upstream):
    """The explicit plain-HTTP opt-in of a throwaway stack, reachable from one address."""
    return run_layer("compute", {"allowPlainHttp": True, "albIngressCidr": "203.0.113.10/32"},
                     stack_outputs=upstream)


@pytest.fixture(scope="session")
def compute_gpu_run(upstream):
    return run_layer("compute", {"emuGpu": True, "certificateArn": CERT, "emuMaxTasks": 2,
                                 "domainName": "search.example.com", "hostedZoneId": "Z0123456789ABC"},
                     stack_outputs=upstream)


@pytest.fixture(scope="session")
def all_runs(network_run, network_prod_run, data_run, data_prod_run, messaging_run,
             messaging_quiet_run, compute_run, compute_plain_run, compute_gpu_run):
    return {
        "network": network_run, "network-prod": network_prod_run,
        "data": data_run, "data-prod": data_prod_run,
        "messaging": messaging_run, "messaging-quiet": messaging_quiet_run,
        "compute": compute_run, "compute-plain": compute_plain_run, "compute-gpu-https": compute_gpu_run,
    }


def pytest_configure(config):
    # Runs that are meant to fail leave futures whose errors asyncio logs at exit.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    # Provider SDKs warn about their own deprecated resources on import.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws.*")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_awsx.*")
    config.addinivalue_line("filterwarnings", "ignore:coroutine .* was never awaited:RuntimeWarning")
