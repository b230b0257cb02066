"""Starting the embedded Ray cluster: a start-up that times out is tried again, then reported plainly."""

from __future__ import annotations

import pytest

import actors.cluster as cluster
from rayscribe.errors import RayscribeError


def test_a_start_that_keeps_timing_out_is_retried_then_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict] = []
    ended: list[int] = []

    def slow_init(**kwargs: object) -> None:
        calls.append(kwargs)
        raise Exception("The current node timed out during startup. This could happen because ...")

    monkeypatch.setattr(cluster.ray, "init", slow_init)
    monkeypatch.setattr(cluster.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(cluster.ray, "shutdown", lambda: None)  # the session's own connection must survive
    monkeypatch.setattr(cluster, "end_children", lambda: ended.append(1))
    with pytest.raises(RayscribeError) as caught, cluster.ray_session():
        pass
    assert len(calls) == cluster.START_ATTEMPTS == len(ended)
    assert calls[0]["address"] == "local"
    message = str(caught.value)
    assert "could not start an embedded Ray cluster" in message and "--address auto" in message


def test_a_start_that_times_out_once_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def flaky_init(**kwargs: object) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise Exception("The current node timed out during startup.")

    monkeypatch.setattr(cluster.ray, "init", flaky_init)
    monkeypatch.setattr(cluster.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(cluster.ray, "shutdown", lambda: None)
    monkeypatch.setattr(cluster, "end_children", lambda: None)
    with cluster.ray_session() as started:
        assert started is True
    assert len(calls) == 2


def test_other_start_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def broken_init(**kwargs: object) -> None:
        calls.append(1)
        raise ValueError("bad num_cpus")

    monkeypatch.setattr(cluster.ray, "init", broken_init)
    monkeypatch.setattr(cluster.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(cluster.ray, "shutdown", lambda: None)
    with pytest.raises(ValueError, match="bad num_cpus"), cluster.ray_session():
        pass
    assert calls == [1]
