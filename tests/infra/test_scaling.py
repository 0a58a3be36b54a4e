"""Scaling on work: the sizes compute derives from the peak rate and the per-task
estimates (infra/scaling.py), the config that overrides them, and what is refused."""
import pytest

from harness import POLICY, TARGET, run_layer
from infra import scaling
from infra.ecs import ScalingSignal

CERT = "arn:aws:acm:us-east-1:123456789012:certificate/abc"


def bounds(run, app):
    target = run.one(TARGET, f"-{app}-scaling").inputs
    return target["minCapacity"], target["maxCapacity"]


def target_value(run, suffix):
    return run.one(POLICY, suffix).inputs["targetTrackingScalingPolicyConfiguration"]["targetValue"]


def test_a_higher_peak_sizes_more_tasks_and_config_overrides_the_targets(upstream):
    run = run_layer("compute", {"certificateArn": CERT, "peakChangesPerSecond": 5000, "emuChangesPerTask": 9000,
                                "pelicanUnshippedAgeTargetSeconds": 45},
                    stack_outputs=upstream, stack="busy")
    # emu: ceil(2 x 5,000 / 250) = 40; pelican: ceil(2 x 5,000 / 5,000) = 2.
    assert bounds(run, "emu") == (1, 40) and bounds(run, "pelican") == (1, 2)
    assert target_value(run, "-emu-changes-waiting") == 9000
    assert target_value(run, "-pelican-unshipped-age") == 45


def test_given_maximums_are_kept(upstream):
    run = run_layer("compute", {"certificateArn": CERT, "emuMinTasks": 2, "emuMaxTasks": 7, "pelicanMaxTasks": 3},
                    stack_outputs=upstream, stack="given")
    assert bounds(run, "emu") == (2, 7) and bounds(run, "pelican") == (1, 3)


def test_gpu_emu_targets_what_a_gpu_task_clears_and_hosts_follow_the_tasks(compute_gpu_run):
    # 1,000 changes/s (an estimate) x 60 s; emuMaxTasks 2 given, gpuMaxInstances left to follow it.
    assert target_value(compute_gpu_run, "-emu-changes-waiting") == 60_000
    assert bounds(compute_gpu_run, "emu") == (1, 2)
    assert compute_gpu_run.one("aws:autoscaling/group:Group").inputs["maxSize"] == 2


@pytest.mark.parametrize("config, message", [
    ({"emuMinTasks": 0}, "at least 1"),
    ({"emuMinTasks": 5, "emuMaxTasks": 3}, "must not be below the fewest"),
    ({"pelicanUnshippedAgeTargetSeconds": 0}, "target must be positive"),
    ({"emuChangesPerTask": -1}, "emuChangesPerTask must be positive"),
])
def test_scaling_that_could_not_work_is_refused_at_preview(upstream, config, message):
    with pytest.raises(Exception, match=message):
        run_layer("compute", {"certificateArn": CERT, **config}, stack_outputs=upstream, stack="refused")


def test_sized_max_tasks():
    sized = scaling.sized_max_tasks
    assert sized(0, peak_changes_per_second=500, per_task_changes_per_second=250, min_tasks=1) == 4
    assert sized(0, peak_changes_per_second=10, per_task_changes_per_second=250, min_tasks=3) == 3
    assert sized(0, peak_changes_per_second=10, per_task_changes_per_second=5000, min_tasks=1,
                 floor_above_min=1) == 2
    assert sized(9, peak_changes_per_second=10, per_task_changes_per_second=250, min_tasks=1) == 9
    with pytest.raises(ValueError):
        sized(0, peak_changes_per_second=0, per_task_changes_per_second=250, min_tasks=1)


def test_emu_target_is_a_minute_of_one_tasks_work_unless_given():
    assert scaling.emu_changes_per_task_target(0, gpu=False) == 250 * 60
    assert scaling.emu_changes_per_task_target(0, gpu=True) == 1000 * 60
    assert scaling.emu_changes_per_task_target(1234, gpu=True) == 1234


def test_pinecone_write_ceiling():
    # 50 MB/s over ~6 KB records binds before 100 upserts/s of ~168 records each.
    ceiling = scaling.pinecone_namespace_changes_per_second()
    assert ceiling == 50_000_000 // 6_000
    assert scaling.pinecone_namespace_changes_per_second(record_bytes=100) == 100 * (
        (2 * 1024 * 1024 - 64 * 1024) // scaling.UPSERT_RECORD_BOUND_BYTES)
    assert scaling.pinecone_ceiling_warning(4, 250) is None
    warning = scaling.pinecone_ceiling_warning(40, 250)
    assert "emuMaxTasks=40" in warning and f"~{ceiling}/s" in warning


def test_a_signal_needs_a_positive_target():
    with pytest.raises(ValueError, match="positive"):
        ScalingSignal("x", "ProductSearch", "ChangesWaiting", {}, target=0)
