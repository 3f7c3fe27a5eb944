"""C reader vs pure-Python reader on the same file contents: identical results, and the
values we expect from real kernel formats (v1 and v2, copied from this and other kernels).

The files are real files in a temporary directory, read through each reader's real I/O path
(C: kept fds + pread, Python: kept fds and re-open-every-time); no root needed.
"""

from __future__ import annotations

import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stats.cgroups import CgroupSpec, Kind
from stats.cgroups.creader import AVAILABLE, CReader
from stats.cgroups.pyreader import PyReader

V1_MEM_STAT = """cache 1204224
rss 98304000
rss_huge 0
shmem 0
mapped_file 135168
swap 0
pgfault 26012
pgmajfault 3
inactive_file 409600
total_cache 2204224
total_rss 104857600
total_mapped_file 270336
total_swap 4096
total_pgfault 26100
total_pgmajfault 7
total_inactive_anon 0
total_active_anon 104857600
total_inactive_file 819200
total_active_file 1384024
"""
V2_MEM_STAT = """anon 104857600
file 2204224
kernel 1052672
file_mapped 270336
file_dirty 0
shmem 0
inactive_anon 104857600
active_anon 0
inactive_file 819200
active_file 1384024
pgfault 26100
pgmajfault 7
"""
V2_CPU_STAT = """usage_usec 1500123
user_usec 1000100
system_usec 500023
nice_usec 0
nr_periods 10
nr_throttled 2
throttled_usec 3000
nr_bursts 0
burst_usec 0
"""
BLKIO = """254:0 Read 8392704
254:0 Write 16777216
254:0 Sync 25169920
254:0 Async 0
254:0 Discard 0
254:0 Total 25169920
8:16 Read 4096
8:16 Write 0
8:16 Total 4096
Total 25174016
"""
BLKIO_OPS = """254:0 Read 17
254:0 Write 9
254:0 Total 26
Total 26
"""
IO_STAT = """254:0 rbytes=8392704 wbytes=16777216 rios=17 wios=9 dbytes=0 dios=0
8:16 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0
"""
NETDEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:    1234      12    0    0    0     0          0         0     1234      12    0    0    0     0       0          0
  eth0: 9876543   6543    1    2    0     0          0         0   123456    789    3    4    0     0       0          0
"""

V1_FILES = {
    Kind.V1_CPUACCT_PERCPU: "1000000000 2500000000 \n",
    Kind.V1_CPUACCT_STAT: "user 250\nsystem 75\n",
    Kind.V1_CPU_STAT: "nr_periods 10\nnr_throttled 2\nthrottled_time 3000000\nnr_bursts 0\nburst_time 0\n",
    Kind.V1_MEM_USAGE: "110000000\n",
    Kind.V1_MEM_MAX_USAGE: "120000000\n",
    Kind.V1_MEM_FAILCNT: "3\n",
    Kind.V1_MEM_STAT: V1_MEM_STAT,
    Kind.V1_BLKIO_BYTES: BLKIO,
    Kind.V1_BLKIO_OPS: BLKIO_OPS,
    Kind.PIDS_CURRENT: "14\n",
    Kind.PIDS_MAX: "max\n",
    Kind.PROCS: "101\n102\n",
    Kind.NETDEV: NETDEV,
}
V2_FILES = {
    Kind.V2_CPU_STAT: V2_CPU_STAT,
    Kind.V2_MEM_CURRENT: "110000000\n",
    Kind.V2_MEM_PEAK: "120000000\n",
    Kind.V2_MEM_STAT: V2_MEM_STAT,
    Kind.V2_MEM_SWAP: "4096\n",
    Kind.V2_MEM_EVENTS: "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n",
    Kind.V2_IO_STAT: IO_STAT,
    Kind.PIDS_CURRENT: "14\n",
    Kind.PIDS_MAX: "64\n",
    Kind.PROCS: "101\n",
    Kind.THREADS: "101\n102\n103\n",
}

READERS = ["c", "python", "python-reopen"]


def _reader(name: str):
    if name == "c":
        assert AVAILABLE, "the C extension is not built (scripts/install.sh builds it)"
        return CReader()
    return PyReader(keep_open=name == "python")


def _spec(tmp: Path, files: dict[Kind, str], key: str = "k") -> CgroupSpec:
    out = []
    for kind, text in files.items():
        p = tmp / f"{kind.name.lower()}"
        p.write_bytes(text.encode("latin-1"))
        out.append((kind, str(p)))
    return CgroupSpec(key=key, files=tuple(out))


def _read_all(spec: CgroupSpec):
    results = []
    for name in READERS:
        r = _reader(name)
        try:
            results.append(r.read(spec))
        finally:
            r.close()
    return results


def test_v1_formats(tmp_path: Path) -> None:
    c, py, reopen = _read_all(_spec(tmp_path, V1_FILES))
    assert c == py == reopen
    assert c.ok
    assert c.cpu.usage_ns == 3_500_000_000 and c.cpu.per_cpu_ns == (1_000_000_000, 2_500_000_000)
    assert (c.cpu.user_ns, c.cpu.system_ns) == (2_500_000_000, 750_000_000)
    assert (c.cpu.nr_periods, c.cpu.nr_throttled, c.cpu.throttled_ns) == (10, 2, 3_000_000)
    m = c.memory
    assert (m.usage_bytes, m.max_usage_bytes, m.failcnt) == (110_000_000, 120_000_000, 3)
    assert (m.rss_bytes, m.cache_bytes, m.mapped_file_bytes, m.swap_bytes) == (104857600, 2204224, 270336, 4096)
    assert (m.pgfault, m.pgmajfault, m.inactive_file_bytes) == (26100, 7, 819200)
    assert m.working_set_bytes == 110_000_000 - 819200
    assert [(d.major, d.minor, d.read_bytes, d.write_bytes, d.read_ops, d.write_ops) for d in c.io] == [
        (254, 0, 8392704, 16777216, 17, 9), (8, 16, 4096, 0, 0, 0)]
    assert (c.pids.current, c.pids.limit, c.pids.processes) == (14, -1, 2)
    assert [(i.name, i.rx_bytes, i.rx_packets, i.rx_errors, i.rx_dropped, i.tx_bytes, i.tx_packets,
             i.tx_errors, i.tx_dropped) for i in c.network] == [
        ("lo", 1234, 12, 0, 0, 1234, 12, 0, 0), ("eth0", 9876543, 6543, 1, 2, 123456, 789, 3, 4)]
    j = c.to_json()
    assert j["cpu"]["usage_seconds"] == 3.5 and j["memory"]["working_set_bytes"] == 110_000_000 - 819200


def test_v2_formats(tmp_path: Path) -> None:
    c, py, reopen = _read_all(_spec(tmp_path, V2_FILES))
    assert c == py == reopen
    assert c.ok
    assert (c.cpu.usage_ns, c.cpu.user_ns, c.cpu.system_ns) == (1_500_123_000, 1_000_100_000, 500_023_000)
    assert c.cpu.per_cpu_ns == () and c.cpu.throttled_ns == 3_000_000
    m = c.memory
    assert (m.usage_bytes, m.max_usage_bytes, m.swap_bytes, m.failcnt) == (110_000_000, 120_000_000, 4096, 5)
    assert (m.rss_bytes, m.cache_bytes, m.mapped_file_bytes) == (104857600, 2204224, 270336)
    assert m.working_set_bytes == 110_000_000 - 819200
    assert [(d.major, d.minor, d.read_bytes, d.write_bytes, d.read_ops, d.write_ops) for d in c.io] == [
        (254, 0, 8392704, 16777216, 17, 9), (8, 16, 4096, 0, 1, 0)]
    assert (c.pids.current, c.pids.limit, c.pids.processes) == (14, 64, 1)


def test_working_set_floors_at_zero(tmp_path: Path) -> None:
    files = {Kind.V2_MEM_CURRENT: "1000\n", Kind.V2_MEM_STAT: "inactive_file 5000\n"}
    for res in _read_all(_spec(tmp_path, files)):
        assert res.memory.working_set_bytes == 0


def test_errors_are_per_file_and_identical(tmp_path: Path) -> None:
    spec = _spec(tmp_path, {Kind.V1_CPUACCT_PERCPU: "5 6\n", Kind.V1_MEM_USAGE: "not a number\n"})
    spec = CgroupSpec(key="k", files=spec.files + (
        (Kind.V1_MEM_STAT, str(tmp_path / "missing")),
        (Kind.PIDS_CURRENT, str(tmp_path)),  # a directory: EISDIR
    ))
    c, py, reopen = _read_all(spec)
    assert c == py == reopen
    errs = dict(c.errors)
    assert set(errs) == {"v1_mem_usage", "v1_mem_stat", "pids_current"}
    assert errs["v1_mem_usage"].endswith("Invalid argument")
    assert errs["v1_mem_stat"].endswith("No such file or directory")
    assert errs["pids_current"].endswith("Is a directory")
    assert c.cpu is not None and c.memory is None and c.pids is None and not c.vanished


def test_large_procs_file_is_counted_whole(tmp_path: Path) -> None:
    text = "".join(f"{i}\n" for i in range(100_000, 130_000))  # ~210 kB, several preads
    for res in _read_all(_spec(tmp_path, {Kind.PROCS: text})):
        assert res.pids.processes == 30_000


def test_caps_on_cpus_devices_interfaces(tmp_path: Path) -> None:
    files = {
        Kind.V1_CPUACCT_PERCPU: " ".join(["1"] * 300) + "\n",
        Kind.V2_IO_STAT: "".join(f"8:{i} rbytes=1 wbytes=2 rios=3 wios=4\n" for i in range(40)),
        Kind.NETDEV: "h1\nh2\n" + "".join(f"if{i}: " + " ".join(["1"] * 16) + "\n" for i in range(40)),
    }
    c, py, reopen = _read_all(_spec(tmp_path, files))
    assert c == py == reopen
    assert len(c.cpu.per_cpu_ns) == 256 and c.cpu.usage_ns == 300
    assert len(c.io) == 32 and len(c.network) == 32


# Fuzz: random contents built from the tokens the parsers look for, plus noise.
TOKENS = st.sampled_from([
    "user", "system", "total_rss", "total_cache", "total_inactive_file", "rss", "anon", "file",
    "file_mapped", "inactive_file", "pgfault", "usage_usec", "max", "nr_periods", "throttled_time",
    "8:0", "254:16", "Read", "Write", "Total", "rbytes=", "wbytes=", "rios=", "wios=", "=", ":",
    " ", "  ", "\t", "\n", "\n", "lo:", "eth0:", "x", "-", "12", "0", "18446744073709551615",
    "99999999999999999999999", "7",
])
CONTENT = st.lists(TOKENS, max_size=60).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from([k for k in Kind]), text=CONTENT)
def test_fuzz_c_and_python_agree(tmp_path: Path, kind: Kind, text: str) -> None:
    files = {kind: text}
    if kind is Kind.NETDEV:
        files = {kind: "h1\nh2\n" + text}
    c, py, reopen = _read_all(_spec(tmp_path, files, key=os.urandom(4).hex()))
    assert c == py == reopen


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts=st.fixed_dictionaries({k: CONTENT for k in Kind}))
def test_fuzz_all_kinds_together(tmp_path: Path, texts: dict[Kind, str]) -> None:
    c, py, reopen = _read_all(_spec(tmp_path, texts, key=os.urandom(4).hex()))
    assert c == py == reopen


def test_open_file_limit_is_raised_as_needed(tmp_path: Path) -> None:
    """2,400 kept descriptors with a soft limit of 512: the readers raise the limit instead of
    failing with EMFILE (in a child process, so this test's own limit is untouched)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import resource, sys
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from stats.cgroups import CgroupSpec, Kind
        from stats.cgroups.creader import CReader
        from stats.cgroups.pyreader import PyReader
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
        f = Path({str(tmp_path)!r}) / "usage"
        f.write_text("42\\n")
        specs = [CgroupSpec(key=str(i), files=tuple((Kind.V1_MEM_USAGE, str(f)) for _ in range(12)))
                 for i in range(200)]
        for r in (CReader(), PyReader()):
            res = r.read_many(specs)
            assert all(s.ok and s.memory.usage_bytes == 42 for s in res), [s.errors for s in res if not s.ok][:1]
            assert r.open_fds() == 2400, r.open_fds()
        print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    """)
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 4800 + 256


def test_falls_back_to_python_when_the_extension_is_missing(tmp_path: Path) -> None:
    """With stats.cgroups._reader unimportable (not built), make_reader() gives the pure-Python
    reader and it still reads."""
    import subprocess
    import sys
    import textwrap

    f = tmp_path / "usage"
    f.write_text("7\n")
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        sys.modules["stats.cgroups._reader"] = None  # import fails like an unbuilt extension
        from stats.cgroups import CgroupSpec, Kind, make_reader
        from stats.cgroups import creader
        assert not creader.AVAILABLE
        r = make_reader()
        st = r.read(CgroupSpec(key="k", files=((Kind.V1_MEM_USAGE, {str(f)!r}),)))
        print(r.name, st.memory.usage_bytes)
        try:
            make_reader("c")
        except RuntimeError:
            print("c refused")
    """)
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["python 7", "c refused"]
