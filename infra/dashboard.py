"""A CloudWatch dashboard over the whole pipeline, as plain JSON."""
from __future__ import annotations

import json
from typing import Mapping


def _metric_widget(title: str, metrics: list, region: str, x: int, y: int, stat: str = "Average") -> dict:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": 12,
        "height": 6,
        "properties": {"title": title, "metrics": metrics, "region": region, "stat": stat, "period": 60,
                       "view": "timeSeries"},
    }


def dashboard_body(
    *,
    region: str,
    alb_suffix: str,
    target_group_suffix: str,
    services: Mapping[str, tuple[str, str]],
    jobs_queue: str,
    dlq: str,
    metrics_namespace: str,
    deployment: str,
) -> str:
    """``services`` maps an app name to ``(cluster name, service name)``; pelican puts its
    figures to ``metrics_namespace`` with dimension Deployment = ``deployment``."""
    widgets = [
        _metric_widget(
            "Frontend requests and errors",
            [
                ["AWS/ApplicationELB", "RequestCount", "LoadBalancer", alb_suffix, {"stat": "Sum"}],
                ["AWS/ApplicationELB", "HTTPCode_Target_5XX_Count", "LoadBalancer", alb_suffix, {"stat": "Sum"}],
                ["AWS/ApplicationELB", "HTTPCode_ELB_5XX_Count", "LoadBalancer", alb_suffix, {"stat": "Sum"}],
            ],
            region, 0, 0, stat="Sum",
        ),
        _metric_widget(
            "Frontend latency and healthy targets",
            [
                ["AWS/ApplicationELB", "TargetResponseTime", "LoadBalancer", alb_suffix, {"stat": "p95"}],
                ["AWS/ApplicationELB", "HealthyHostCount", "TargetGroup", target_group_suffix,
                 "LoadBalancer", alb_suffix, {"yAxis": "right"}],
            ],
            region, 12, 0,
        ),
        _metric_widget(
            "Service CPU %",
            [["AWS/ECS", "CPUUtilization", "ClusterName", c, "ServiceName", s, {"label": app}]
             for app, (c, s) in services.items()],
            region, 0, 6,
        ),
        _metric_widget(
            "Running tasks",
            [["ECS/ContainerInsights", "RunningTaskCount", "ClusterName", c, "ServiceName", s, {"label": app}]
             for app, (c, s) in services.items()],
            region, 12, 6,
        ),
        _metric_widget(
            "Jobs queue",
            [
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", jobs_queue],
                ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", jobs_queue, {"yAxis": "right"}],
            ],
            region, 0, 12, stat="Maximum",
        ),
        _metric_widget(
            "Dead letters",
            [["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dlq]],
            region, 12, 12, stat="Maximum",
        ),
        # What emu and pelican scale on (infra/scaling.py).
        _metric_widget(
            "Changes waiting (emu scales on it) and oldest unshipped change, s (pelican)",
            [
                [metrics_namespace, "ChangesWaiting", "Deployment", deployment],
                [metrics_namespace, "OldestUnshippedChangeAgeSeconds", "Deployment", deployment,
                 {"yAxis": "right"}],
            ],
            region, 0, 18, stat="Maximum",
        ),
    ]
    return json.dumps({"widgets": widgets})
