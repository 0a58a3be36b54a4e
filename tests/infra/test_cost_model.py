"""The capacity model's monthly figures for the defaults describe the stacks the mocks build."""
import pytest
import yaml

from benchmarks import capacity
from harness import ALARM, REPO
from infra.network import INTERFACE_ENDPOINT_SERVICES


def default(layer, key):
    return yaml.safe_load((REPO / layer / "Pulumi.yaml").read_text())["config"][key]["default"]


def test_infrastructure_doc_carries_the_models_table():
    assert "\n".join(capacity.defaults_table()) in (REPO / "docs" / "infrastructure.md").read_text(), \
        "docs/infrastructure.md's Monthly cost table is out of date: paste benchmarks.capacity.defaults_table()"


def test_the_model_counts_what_the_default_stacks_create(network_run, data_run, messaging_run, compute_run):
    alarms = sum(len(run.of_type(ALARM)) for run in (data_run, messaging_run, compute_run))
    assert capacity.DEFAULT_ALARMS == alarms
    # The stack's own secrets, and the one RDS manages for the master password.
    assert capacity.DEFAULT_SECRETS == len(data_run.of_type("aws:secretsmanager/secret:Secret")) + 1
    assert capacity.INTERFACE_ENDPOINTS == len(INTERFACE_ENDPOINT_SERVICES)
    assert capacity.DEFAULT_KMS_KEYS == sum(len(run.of_type("aws:kms/key:Key"))
                                            for run in (network_run, data_run, messaging_run, compute_run))
    assert capacity.DEFAULT_DASHBOARDS == len(compute_run.of_type("aws:cloudwatch/dashboard:Dashboard"))
    (acl,) = compute_run.of_type("aws:wafv2/webAcl:WebAcl")
    assert len(acl.inputs["rules"]) == capacity.WAF_RULES and default("compute", "wafRateLimit") == 1000
    assert capacity.DEFAULT_AZS == default("network", "availabilityZones")
    assert capacity.DB_STORAGE_GB == default("data", "dbAllocatedStorage")
    assert capacity.EMU_ON_DEMAND_TASKS == default("compute", "emuOnDemandTasks")
    assert default("compute", "emuFargateSpot") is True
    sizes = {"emu": (capacity.EMU_VCPU, capacity.EMU_MEMORY_GB),
             "frontend": (capacity.FRONTEND_VCPU, capacity.FRONTEND_MEMORY_GB),
             "pelican": (capacity.PELICAN_VCPU, capacity.PELICAN_MEMORY_GB)}
    for app, (vcpu, memory_gb) in sizes.items():
        assert (default("compute", f"{app}Cpu") / 1024, default("compute", f"{app}Memory") / 1024) == (vcpu, memory_gb)
    # One cluster runs Container Insights by default, one NAT gateway.
    assert default("compute", "containerInsights") == "auto"
    assert default("network", "natGatewayStrategy") == "Single"
    assert default("network", "vpcEndpoints") is False and default("network", "s3GatewayEndpoint") is True


def test_emu_tasks_above_the_base_are_priced_at_spot():
    on_demand = capacity.emu_task_month_usd("cpu")
    spot = capacity.fargate_month_usd(capacity.EMU_VCPU, capacity.EMU_MEMORY_GB, spot=True)
    assert spot == pytest.approx(on_demand * (1 - capacity.q("fargate_spot_discount")))
    assert capacity.emu_fleet_month_usd("cpu", 1) == pytest.approx(on_demand)
    assert capacity.emu_fleet_month_usd("cpu", 3) == pytest.approx(on_demand + 2 * spot)
    assert capacity.emu_fleet_month_usd("gpu", 3) == pytest.approx(3 * capacity.emu_task_month_usd("gpu"))


def test_interface_endpoints_break_even_where_the_table_says():
    (row,) = [r for r in capacity.default_month_costs() if r.item == "Interface endpoints"]
    monthly = 6 * 2 * 0.01 * 730
    assert f"on: {monthly:,.2f} USD/month" in row.note
    assert f"~{monthly / (0.045 - 0.01):,.0f} GB/month" in row.note
    assert row.usd_month == 0

