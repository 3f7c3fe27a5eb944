"""The ID column of `netplane stats`/`top`: Docker's short id, not a cut-off cgroup path."""

from __future__ import annotations

from stats.client import rows, short_id


def test_short_id() -> None:
    assert short_id("0123456789abcdef" * 4, "/docker/web") == "0123456789ab"
    # a cgroup watched by path has its path as id and name: the column stays empty
    assert short_id("/netplane/lab/h1", "/netplane/lab/h1") == ""
    assert short_id("web-1", "/docker/web") == "web-1"


def test_rows_of_a_cgroup_source_have_no_cut_off_path() -> None:
    out = rows({"/netplane/lab/h1": [{"id": "/netplane/lab/h1", "pids": {"current": 3}}]})
    assert out[0]["name"] == "/netplane/lab/h1" and out[0]["id"] == "" and out[0]["pids"] == 3
