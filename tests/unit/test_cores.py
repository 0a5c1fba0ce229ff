"""The cores a process may use: its affinity, bounded by its cgroup's CPU quota."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from c360_platform.config import available_cores, cgroup_cpu_quota, cpu_processes_from_env


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_v2_quota_rounds_up_and_an_ancestors_lower_one_wins(tmp_path: Path) -> None:
    root = tree(
        tmp_path / "cg",
        {
            "cgroup.controllers": "cpu memory\n",
            "kubepods/cpu.max": "50000 100000\n",
            "kubepods/pod1/cpu.max": "150000 100000\n",
            "kubepods/pod1/ctr/cpu.max": "max 100000\n",
        },
    )
    proc = tree(tmp_path, {"self-cgroup": "0::/kubepods/pod1/ctr\n"}) / "self-cgroup"
    assert cgroup_cpu_quota(root, proc) == 0.5
    assert available_cores(root, proc) == 1

    (root / "kubepods/cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_quota(root, proc) == 1.5
    assert available_cores(root, proc) == min(2, len(os.sched_getaffinity(0)))


def test_v1_quota_in_a_container_reads_its_own_mount_and_no_quota_leaves_the_affinity(
    tmp_path: Path,
) -> None:
    # In a container the cgroup path names the host's hierarchy; the mount is its own.
    root = tree(
        tmp_path / "cg",
        {"cpu,cpuacct/cpu.cfs_quota_us": "100000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"},
    )
    proc = tree(tmp_path, {"self-cgroup": "4:cpu,cpuacct:/docker/abc\n1:name=systemd:/\n"})
    assert cgroup_cpu_quota(root, proc / "self-cgroup") == 1.0
    assert available_cores(root, proc / "self-cgroup") == 1

    (root / "cpu,cpuacct/cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_quota(root, proc / "self-cgroup") is None
    assert available_cores(root, proc / "self-cgroup") == len(os.sched_getaffinity(0))
    assert cgroup_cpu_quota(root, tmp_path / "missing") is None


def test_the_cpu_pool_defaults_to_the_cores_less_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("C360_CPU_PROCESSES", raising=False)
    assert cpu_processes_from_env() == available_cores() - 1
    monkeypatch.setenv("C360_CPU_PROCESSES", "3")
    assert cpu_processes_from_env() == 3
