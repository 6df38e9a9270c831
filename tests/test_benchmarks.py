"""The benchmark scripts' harnesses still work (no timing here: numbers belong to `make bench`).
A harness that crashed went unnoticed once: the raw-Unicorn one freed guest RAM under Unicorn."""
import gc
import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_raw_unicorn_harness_runs_a_guest_to_its_end():
    run = load("run")
    raw = run.RawUnicorn(run.program("hello"), [])
    gc.collect()  # what once freed the guest's memory under the engine
    raw.run()
    assert raw.status == 0 and b"hello" in bytes(raw.out).lower()


def test_the_vmas_benchmark_runs_and_agrees_with_native():
    """benchmarks/vmas.py: thousands of mappings (a few here), natively and under vsnap; it
    stops with an error if vsnap computed something else."""
    out = load("vmas").main(64)
    assert set(out) == {0, 2} and all(v > 0 for pair in out.values() for v in pair)


def test_the_memory_benchmark_runners_agree(tmp_path):
    """memory.py's runners (raw Unicorn with either TLB fill, vsnap) print the same."""
    memory = load("memory")
    prog = memory.build(str(BENCH / "memhash.c"))
    outs = {memory.raw_unicorn(prog, ["5000"], False)[1],
            memory.raw_unicorn(prog, ["5000"], True)[1],
            memory.under_vsnap(prog, ["5000"], str(tmp_path))[1]}
    assert len(outs) == 1 and b"distinct keys of 5000" in outs.pop()


def test_the_process_benchmark_runs_and_its_guests_agree_with_native():
    """benchmarks/procs.py (make bench: fork+exit+wait per second, pipe and AF_UNIX socket throughput next to
    native) in its quick mode: every guest run, native and under `vsnap run`, printed what its
    arguments make it print (the script stops otherwise); a rate may be lost in the noise."""
    out = load("procs").main(quick=True)
    assert set(out) == {"forks", "forks64", "pipe64k", "pipe4k", "unix64k"}
    assert all(x is None or x > 0 for pair in out.values() for x in pair)
