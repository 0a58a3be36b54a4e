"""The capacity model: from measured unit costs to tasks, backfill times and monthly cost.

    python -m benchmarks.capacity [results/cost.json] [docs/scaling.md]

Reads what one change costs (results/cost.json, written by the cost benchmark: figures
per 1,000 changes unless named otherwise) and combines it with the published quotas
and prices in QUOTAS below, each with its source and the date it was read, into
docs/scaling.md: for 1M, 100M and 1B products and 10, 1,000 and 10,000 changes/s, what
limits first, how many emu tasks on CPU and on GPU, how long a full backfill takes,
and what a month costs. Every figure it derives is an estimate: it holds only as well
as the measured shapes match the catalog and the prices still hold.
"""
from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

PRODUCTS = (1_000_000, 100_000_000, 1_000_000_000)
RATES = (10, 1_000, 10_000)
SECONDS_PER_MONTH = 730 * 3600  # AWS prices a month as 730 hours


@dataclass(frozen=True)
class Quota:
    """One published limit or price, with where it was read."""

    value: float
    unit: str
    source: str
    read: str
    note: str = ""


READ = "2026-12-07"
# Published limits and prices (AWS us-east-1, Pinecone Standard plan on AWS us-east-1).
QUOTAS: dict[str, Quota] = {
    "pinecone_upsert_requests_per_s": Quota(
        100, "upsert requests/s per namespace",
        "Pinecone docs, Rate limits (docs.pinecone.io/reference/api/database-limits/rate-limits)", READ),
    "pinecone_upsert_bytes_per_s": Quota(
        50_000_000, "upsert bytes/s per namespace", "Pinecone docs, Limits (docs.pinecone.io/docs/limits)", READ),
    "pinecone_query_requests_per_s": Quota(
        100, "query requests/s per namespace",
        "Pinecone docs, Rate limits (docs.pinecone.io/reference/api/database-limits/rate-limits)", READ,
        "indexes on Dedicated Read Nodes are not subject to read unit limits (same page)"),
    "pinecone_write_unit_usd": Quota(
        4.0 / 1e6, "USD per write unit",
        "Pinecone pricing, Standard on-demand, AWS us-east-1 (pinecone.io/pricing), as captured by "
        "docs.flexprice.io's Pinecone teardown on 2026-11-04", READ),
    "pinecone_read_unit_usd": Quota(16.0 / 1e6, "USD per read unit", "as pinecone_write_unit_usd", READ),
    "pinecone_storage_gb_month_usd": Quota(0.33, "USD per GB-month", "as pinecone_write_unit_usd", READ),
    "pinecone_minimum_month_usd": Quota(
        50.0, "USD per month, Standard plan minimum",
        "Pinecone docs, Understanding cost (docs.pinecone.io/guides/manage-cost/understanding-cost)", READ),
    "pinecone_import_advised_records": Quota(
        10_000_000, "records from which import is advised over upsert",
        "Pinecone docs, Data ingestion overview (docs.pinecone.io/guides/index-data/data-ingestion-overview)", READ,
        "import is priced on the data read; its rate was not confirmed here, so import cost is not computed"),
    "sqs_fifo_high_throughput_tps": Quota(
        70_000, "transactions/s per API action, high-throughput FIFO, us-east-1",
        "AWS docs, Amazon SQS message quotas (docs.aws.amazon.com/AWSSimpleQueueService/latest/"
        "SQSDeveloperGuide/quotas-messages.html)", READ, "UNVERIFIED: the page's region list was cut off when read"),
    "sqs_fifo_request_usd": Quota(
        0.50 / 1e6, "USD per FIFO request (64 KiB chunk)", "AWS SQS pricing (aws.amazon.com/sqs/pricing)", READ,
        "the page itself was not in the search corpus; the rate as cloudburn.io and factualminds.com quote it "
        "(March and June 2026, us-east-1, flat)"),
    "fargate_vcpu_second_usd": Quota(
        0.000011244, "USD per vCPU-second, Linux/x86, us-east-1",
        "AWS Fargate pricing (aws.amazon.com/fargate/pricing), via the api-evangelist ECS pricing transcript", READ),
    "fargate_gb_hour_usd": Quota(
        0.004445, "USD per GB-hour, Linux/x86, us-east-1", "AWS Fargate pricing (aws.amazon.com/fargate/pricing)",
        READ, "the page renders rates dynamically; the rate as vantage.sh and wring.co quote it (2026)"),
    "g4dn_xlarge_hour_usd": Quota(
        0.526, "USD per hour, on demand, us-east-1", "AWS EC2 on-demand pricing; docs/deploy.md's ~$0.53", READ,
        "UNVERIFIED against the pricing page"),
    "fargate_spot_discount": Quota(
        0.5, "fraction off the Fargate on-demand rate",
        "AWS Fargate pricing (aws.amazon.com/fargate/pricing), Spot: 50 to 70% off, varying; as fortem.dev "
        "quotes it (June 2026)", READ, "the low end of the range, so Spot is not costed too cheap"),
    "nat_gateway_hour_usd": Quota(
        0.045, "USD per NAT gateway-hour, us-east-1", "Amazon VPC pricing (aws.amazon.com/vpc/pricing)", READ,
        "plus 0.045 USD per GB processed"),
    "nat_gateway_gb_usd": Quota(0.045, "USD per GB through a NAT gateway", "as nat_gateway_hour_usd", READ),
    "interface_endpoint_hour_usd": Quota(
        0.01, "USD per interface endpoint-hour per AZ, us-east-1",
        "AWS PrivateLink pricing (aws.amazon.com/privatelink/pricing)", READ,
        "plus 0.01 USD per GB processed; gateway endpoints (S3) are free"),
    "interface_endpoint_gb_usd": Quota(0.01, "USD per GB through an interface endpoint",
                                       "as interface_endpoint_hour_usd", READ),
    "cloudwatch_metric_month_usd": Quota(
        0.30, "USD per custom metric-month (first 10,000)",
        "Amazon CloudWatch pricing (aws.amazon.com/cloudwatch/pricing)", READ,
        "Container Insights (standard) metrics are billed as custom metrics (AWS docs, Container Insights)"),
    "container_insights_metrics_per_cluster": Quota(
        40, "ECS/ContainerInsights metrics of a cluster with one service",
        "AWS docs, Amazon ECS Container Insights metrics: about 16 metrics by cluster, by service and by task "
        "family", READ, "UNVERIFIED count: an estimate from the metric list, not a bill"),
    "cloudwatch_alarm_month_usd": Quota(
        0.10, "USD per standard-resolution alarm metric-month", "as cloudwatch_metric_month_usd", READ),
    "alb_hour_usd": Quota(
        0.0225, "USD per ALB-hour, us-east-1", "Elastic Load Balancing pricing (aws.amazon.com/elasticloadbalancing/"
        "pricing)", READ, "plus 0.008 USD per LCU-hour"),
    "public_ipv4_hour_usd": Quota(
        0.005, "USD per public IPv4 address-hour", "Amazon VPC pricing (aws.amazon.com/vpc/pricing)", READ),
    "rds_t4g_micro_hour_usd": Quota(
        0.016, "USD per db.t4g.micro-hour, PostgreSQL, Single-AZ, us-east-1",
        "Amazon RDS for PostgreSQL pricing (aws.amazon.com/rds/postgresql/pricing)", READ,
        "Multi-AZ doubles it; UNVERIFIED against the pricing page (docs/deploy.md's ~$12/month)"),
    "rds_gp3_gb_month_usd": Quota(0.115, "USD per gp3 GB-month, Single-AZ", "as rds_t4g_micro_hour_usd", READ),
    "secret_month_usd": Quota(
        0.40, "USD per secret-month", "AWS Secrets Manager pricing (aws.amazon.com/secrets-manager/pricing)", READ,
        "plus 0.05 USD per 10,000 API calls"),
    "kms_key_month_usd": Quota(
        1.0, "USD per customer managed KMS key-month", "AWS KMS pricing (aws.amazon.com/kms/pricing)", READ,
        "with automatic rotation each new backing key adds 1 USD/month; cloudburn.io (March 2026) quotes the "
        "May 2024 change that stops the increase after the second rotation"),
    "waf_web_acl_month_usd": Quota(
        5.0, "USD per WAF web ACL-month", "AWS WAF pricing (aws.amazon.com/waf/pricing)", READ,
        "the page itself was not in the search corpus; the rate as c3x.dev and awsnegotiations.com quote it (2026)"),
    "waf_rule_month_usd": Quota(1.0, "USD per WAF rule-month", "as waf_web_acl_month_usd", READ),
    "waf_million_requests_usd": Quota(0.60, "USD per million requests a web ACL inspects",
                                      "as waf_web_acl_month_usd", READ),
    "cloudwatch_dashboard_month_usd": Quota(
        3.0, "USD per CloudWatch dashboard-month", "as cloudwatch_metric_month_usd", READ,
        "an account's first 3 dashboards (up to 50 metrics each) are free; UNVERIFIED against the pricing page"),
}

# The stack's task sizes (compute/Pulumi.yaml defaults).
EMU_VCPU, EMU_MEMORY_GB = 2, 8
PELICAN_VCPU, PELICAN_MEMORY_GB = 0.25, 0.5
FRONTEND_VCPU, FRONTEND_MEMORY_GB = 1, 4
# emu tasks kept on regular Fargate (compute's emuOnDemandTasks); the rest run on Fargate Spot.
EMU_ON_DEMAND_TASKS = 1
HOURS_PER_MONTH = 730
# The defaults' shape: two AZs (network's availabilityZones), six interface endpoint
# services (infra/network.py), a 20 GB database (data's dbAllocatedStorage), seven secrets
# (three Pinecone keys, the editor's, two app roles', RDS's master secret) and ten alarms
# (data's four, compute's unshipped changes, login failures and the two vacuum alarms,
# messaging's dead-letter depth and oldest job).
DEFAULT_AZS = 2
INTERFACE_ENDPOINTS = 6
DB_STORAGE_GB = 20
DEFAULT_SECRETS = 7
DEFAULT_ALARMS = 10
# One customer managed KMS key (messaging's topic), one dashboard (compute), and a WAF web
# ACL with one rate-based rule (compute's wafRateLimit, on by default; infra/loadbalancer.py).
DEFAULT_KMS_KEYS = 1
DEFAULT_DASHBOARDS = 1
WAF_RULES = 1
# Fleet caps for a backfill, assumptions of this model, not quotas.
BACKFILL_CPU_TASKS, BACKFILL_GPU_TASKS = 50, 10


def q(name: str) -> float:
    """A quota's value."""
    return QUOTAS[name].value


@dataclass(frozen=True)
class Shape:
    """What 1,000 changes of one kind cost, from results/cost.json."""

    index_requests: float
    read_units: float
    write_units: float
    sqs_requests: float
    model_texts: float
    emu_cpu_s_per_change: float
    pelican_cpu_s_per_change: float

    @classmethod
    def from_json(cls, data: dict) -> Shape:
        return cls(**{f: float(data[f]) for f in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Costs:
    """results/cost.json, read."""

    record_bytes: int
    shapes: dict[str, Shape]
    raw_texts_per_s: dict[str, float]
    overlap_ratio: float
    measured_at: str

    @classmethod
    def load(cls, path: Path) -> Costs:
        data = json.loads(Path(path).read_text())
        return cls(record_bytes=int(data["record_bytes"]["total"]),
                   shapes={name: Shape.from_json(s) for name, s in data["shapes"].items()},
                   raw_texts_per_s={k: float(v) for k, v in data["raw_model_texts_per_s"].items()},
                   overlap_ratio=float(data["latency_overlap"]["ratio"]),
                   measured_at=str(data.get("measured_at", "?")))


def task_rate(costs: Costs, shape: Shape, device: str) -> float:
    """Changes/s one emu task clears: the model's rate through the pipeline (the measured
    overlap ratio) per text a change needs, and on CPU also the task's vCPUs over the CPU a
    change costs."""
    texts_per_change = max(shape.model_texts / 1000, 1e-9)
    rate = costs.raw_texts_per_s[device] * costs.overlap_ratio / texts_per_change
    if device == "cpu":
        rate = min(rate, EMU_VCPU / shape.emu_cpu_s_per_change)
    return rate


def ceilings(costs: Costs, shape: Shape) -> dict[str, float]:
    """Changes/s each shared limit allows, by name."""
    changes_per_index_request = 1000 / max(shape.index_requests, 1e-9)
    changes_per_sqs_request = 1000 / max(shape.sqs_requests, 1e-9)
    return {
        "Pinecone upsert bytes/s per namespace": q("pinecone_upsert_bytes_per_s") / costs.record_bytes,
        "Pinecone upsert requests/s per namespace": q("pinecone_upsert_requests_per_s") * changes_per_index_request,
        "SQS FIFO transactions/s": q("sqs_fifo_high_throughput_tps") * changes_per_sqs_request,
    }


def emu_task_month_usd(device: str) -> float:
    """One emu task running a month."""
    if device == "gpu":
        return q("g4dn_xlarge_hour_usd") * 730
    return (EMU_VCPU * q("fargate_vcpu_second_usd") * 3600 + EMU_MEMORY_GB * q("fargate_gb_hour_usd")) * 730


def fargate_month_usd(vcpu: float, memory_gb: float, *, spot: bool = False) -> float:
    """One Fargate task (Linux/x86) running a month; on Spot at the modelled discount."""
    on_demand = (vcpu * q("fargate_vcpu_second_usd") * 3600 + memory_gb * q("fargate_gb_hour_usd")) * HOURS_PER_MONTH
    return on_demand * (1 - q("fargate_spot_discount")) if spot else on_demand


def emu_fleet_month_usd(device: str, tasks: int) -> float:
    """`tasks` emu tasks for a month: on CPU the first EMU_ON_DEMAND_TASKS on regular
    Fargate and the rest on Fargate Spot (compute's emuFargateSpot default); GPU hosts on demand."""
    if device == "gpu":
        return tasks * emu_task_month_usd("gpu")
    on_demand = min(tasks, EMU_ON_DEMAND_TASKS)
    return (on_demand * emu_task_month_usd("cpu")
            + (tasks - on_demand) * fargate_month_usd(EMU_VCPU, EMU_MEMORY_GB, spot=True))


@dataclass(frozen=True)
class FixedCost:
    """One line of what the stack's defaults cost a month, running idle."""

    item: str
    default: str
    usd_month: float
    note: str


def default_month_costs() -> list[FixedCost]:
    """The fixed monthly cost of each default that costs (or saves) money, before traffic:
    per-GB charges and Pinecone usage are in the notes and the tables above."""
    hours = HOURS_PER_MONTH
    endpoints_on = INTERFACE_ENDPOINTS * DEFAULT_AZS * q("interface_endpoint_hour_usd") * hours
    saving_per_gb = q("nat_gateway_gb_usd") - q("interface_endpoint_gb_usd")
    insights = q("container_insights_metrics_per_cluster") * q("cloudwatch_metric_month_usd")
    emu_on_demand = emu_task_month_usd("cpu")
    emu_spot = fargate_month_usd(EMU_VCPU, EMU_MEMORY_GB, spot=True)
    waf_on = q("waf_web_acl_month_usd") + WAF_RULES * q("waf_rule_month_usd")
    return [
        FixedCost("NAT gateway", "Single (natGatewayStrategy)", q("nat_gateway_hour_usd") * hours,
                  f"plus {q('nat_gateway_gb_usd'):.3f} USD/GB; OnePerAz (prod) multiplies by the AZ count"),
        FixedCost("S3 gateway endpoint", "on (s3GatewayEndpoint)", 0.0,
                  "free; image layers from ECR skip the NAT's per-GB charge"),
        FixedCost("Interface endpoints", "off (vpcEndpoints)", 0.0,
                  f"on: {endpoints_on:,.2f} USD/month ({INTERFACE_ENDPOINTS} services x {DEFAULT_AZS} AZs); "
                  f"they save {saving_per_gb:.3f} USD/GB over NAT, so pay off above "
                  f"~{endpoints_on / saving_per_gb:,.0f} GB/month of AWS API and image traffic"),
        FixedCost("Container Insights", "emu's cluster only (containerInsights auto)", insights,
                  f"~{insights:,.2f} USD/month per cluster with one service; prod turns on all three "
                  f"(~{3 * insights:,.2f}); emu's scaling needs its DesiredTaskCount"),
        FixedCost("emu on Fargate", f"{EMU_VCPU} vCPU / {EMU_MEMORY_GB} GB, 1 task on demand", emu_on_demand,
                  f"each task above emuOnDemandTasks runs on Spot: ~{emu_spot:,.2f} USD/month instead of "
                  f"{emu_on_demand:,.2f} (emuFargateSpot)"),
        FixedCost("frontend on Fargate", f"{FRONTEND_VCPU} vCPU / {FRONTEND_MEMORY_GB} GB, 1 task",
                  fargate_month_usd(FRONTEND_VCPU, FRONTEND_MEMORY_GB), "prod: at least 2 tasks, autoscaled"),
        FixedCost("pelican on Fargate", f"{PELICAN_VCPU} vCPU / {PELICAN_MEMORY_GB} GB, 1 task",
                  fargate_month_usd(PELICAN_VCPU, PELICAN_MEMORY_GB), ""),
        FixedCost("ALB", "1", q("alb_hour_usd") * hours, "plus LCU-hours; access logs add S3 storage"),
        FixedCost("Public IPv4", f"{DEFAULT_AZS + 1} addresses (ALB per AZ, NAT)",
                  (DEFAULT_AZS + 1) * q("public_ipv4_hour_usd") * hours, ""),
        FixedCost("RDS PostgreSQL", f"db.t4g.micro, Single-AZ, {DB_STORAGE_GB} GB gp3",
                  q("rds_t4g_micro_hour_usd") * hours + DB_STORAGE_GB * q("rds_gp3_gb_month_usd"),
                  "dbMultiAz (prod) doubles it"),
        FixedCost("Secrets Manager", f"{DEFAULT_SECRETS} secrets (3 Pinecone keys among them)",
                  DEFAULT_SECRETS * q("secret_month_usd"), "plus API calls"),
        FixedCost("CloudWatch alarms", f"{DEFAULT_ALARMS} alarms (the two vacuum alarms among them)",
                  DEFAULT_ALARMS * q("cloudwatch_alarm_month_usd"),
                  "target tracking adds its own; pelican's custom metrics are billed as metrics"),
        FixedCost("KMS key", f"{DEFAULT_KMS_KEYS} customer managed key (the dead-letter topic's), rotated yearly",
                  DEFAULT_KMS_KEYS * q("kms_key_month_usd"), "each yearly rotation adds 1 USD/month, the first two only"),
        FixedCost("WAF rate rule", "on (wafRateLimit 1000)", waf_on,
                  f"1 web ACL, {WAF_RULES} rule, plus {q('waf_million_requests_usd'):.2f} USD per million requests; "
                  "0 turns it off where no editor login faces the internet"),
        FixedCost("CloudWatch dashboard", f"{DEFAULT_DASHBOARDS}", DEFAULT_DASHBOARDS * q("cloudwatch_dashboard_month_usd"),
                  "free when it is one of the account's first 3"),
        FixedCost("Performance Insights", "auto: off on db.t4g.micro (dbPerformanceInsights)", 0.0,
                  "7 days' retention is free; on by default for larger classes"),
        FixedCost("Pinecone", "Standard plan, serverless", q("pinecone_minimum_month_usd"),
                  "the monthly minimum; usage above it in the tables above"),
    ]


def defaults_table() -> list[str]:
    """default_month_costs() as Markdown table lines, with the total."""
    rows = default_month_costs()
    lines = ["| item | default | USD/month (est.) | note |", "| --- | --- | ---: | --- |"]
    lines += [f"| {r.item} | {r.default} | {r.usd_month:,.2f} | {r.note} |" for r in rows]
    lines.append(f"| **total** | | **{sum(r.usd_month for r in rows):,.2f}** | idle, before traffic |")
    return lines


def steady_month_usd(costs: Costs, shape: Shape, products: int, rate: float, device: str, tasks: int) -> float:
    """A month at `rate` changes/s: emu and pelican tasks, Pinecone writes, reads and
    storage, SQS requests (queries not included)."""
    changes = rate * SECONDS_PER_MONTH
    pelican_tasks = max(1, math.ceil(rate * shape.pelican_cpu_s_per_change / PELICAN_VCPU))
    pelican = pelican_tasks * (PELICAN_VCPU * q("fargate_vcpu_second_usd") * 3600
                               + PELICAN_MEMORY_GB * q("fargate_gb_hour_usd")) * 730
    pinecone = (changes / 1000 * (shape.write_units * q("pinecone_write_unit_usd")
                                  + shape.read_units * q("pinecone_read_unit_usd"))
                + products * costs.record_bytes / 1e9 * q("pinecone_storage_gb_month_usd"))
    pinecone = max(pinecone, q("pinecone_minimum_month_usd"))
    sqs = changes / 1000 * shape.sqs_requests * q("sqs_fifo_request_usd")
    return emu_fleet_month_usd(device, tasks) + pelican + pinecone + sqs


def duration(seconds: float) -> str:
    """Seconds as the largest sensible unit."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:,.0f} s"


def report(costs: Costs) -> str:
    """docs/scaling.md's text."""
    steady, backfill = costs.shapes["scattered"], costs.shapes["backfill"]
    lines = [
        "# Scaling: what limits first, and what it costs",
        "",
        f"Written by `python -m benchmarks.capacity` from `results/cost.json` (measured {costs.measured_at}) and "
        "the published quotas and prices below. **Every figure here is an estimate**: it holds as well as the "
        "measured change shapes match your catalog and the prices still hold. Steady rates use the `scattered` "
        "shape, backfills the `backfill` shape. Queries are not costed.",
        "",
        "## Steady changes",
        "",
        "| products | changes/s | limits first | emu tasks CPU / GPU | month, CPU / GPU (USD, est.) |",
        "| ---: | ---: | --- | ---: | ---: |",
    ]
    cpu_rate, gpu_rate = task_rate(costs, steady, "cpu"), task_rate(costs, steady, "gpu")
    limits = ceilings(costs, steady)
    first_name, first_value = min(limits.items(), key=lambda item: item[1])
    for products in PRODUCTS:
        for rate in RATES:
            cpu_tasks, gpu_tasks = math.ceil(rate / cpu_rate), math.ceil(rate / gpu_rate)
            limited = (f"{first_name} (~{first_value:,.0f} changes/s): raise it or split namespaces"
                       if rate > first_value else "emu tasks (add more)")
            lines.append(
                f"| {products:,} | {rate:,} | {limited} | {cpu_tasks:,} / {gpu_tasks:,} | "
                f"{steady_month_usd(costs, steady, products, rate, 'cpu', cpu_tasks):,.0f} / "
                f"{steady_month_usd(costs, steady, products, rate, 'gpu', gpu_tasks):,.0f} |")
    b_limits = ceilings(costs, backfill)
    b_ceiling = min(b_limits.values())
    b_cpu, b_gpu = task_rate(costs, backfill, "cpu"), task_rate(costs, backfill, "gpu")
    cpu_fleet = min(BACKFILL_CPU_TASKS * b_cpu, b_ceiling)
    gpu_fleet = min(BACKFILL_GPU_TASKS * b_gpu, b_ceiling)
    lines += [
        "",
        "## Full backfill",
        "",
        f"At most {BACKFILL_CPU_TASKS} CPU or {BACKFILL_GPU_TASKS} GPU tasks (assumptions), and never faster than "
        f"one namespace accepts (~{b_ceiling:,.0f} changes/s). One CPU task does ~{b_cpu:,.0f} changes/s, one GPU "
        f"task ~{b_gpu:,.0f}.",
        "",
        "| products | CPU fleet | GPU fleet | Pinecone write units (USD, est.) | bulk import instead? |",
        "| ---: | ---: | ---: | ---: | --- |",
    ]
    for products in PRODUCTS:
        writes = products / 1000 * backfill.write_units * q("pinecone_write_unit_usd")
        advice = ("yes: Pinecone advises import from object storage from 10M records"
                  if products >= q("pinecone_import_advised_records") else "no: the pipeline is simpler")
        lines.append(f"| {products:,} | {duration(products / cpu_fleet)} | {duration(products / gpu_fleet)} | "
                     f"{writes:,.0f} | {advice} |")
    lines += [
        "",
        "## Queries",
        "",
        f"A namespace takes {q('pinecone_query_requests_per_s'):.0f} query requests/s. Past that, or where "
        "sustained query load makes read units the larger bill, move the index to Dedicated Read Nodes "
        "(provisioned read capacity, not subject to read unit limits) or shard the catalog across namespaces "
        "and query them in parallel; the 1B-product rows need one or both.",
        "",
        "## The defaults, per month",
        "",
        "What the stack costs a month with its defaults (dev tier, us-east-1), running idle: the fixed part "
        "of every row above. docs/infrastructure.md, \"Monthly cost\", carries the same table.",
        "",
        *defaults_table(),
        "",
        "## Published quotas and prices",
        "",
        "| name | value | unit | source | read | note |",
        "| --- | ---: | --- | --- | --- | --- |",
    ]
    lines += [f"| `{name}` | {quota.value:g} | {quota.unit} | {quota.source} | {quota.read} | {quota.note} |"
              for name, quota in QUOTAS.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Reads the cost file (argv[0], default results/cost.json), writes the report
    (argv[1], default docs/scaling.md)."""
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0]) if args else Path("results/cost.json")
    target = Path(args[1]) if len(args) > 1 else Path("docs/scaling.md")
    target.write_text(report(Costs.load(source)))
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
