"""Generated workloads: hypothesis writes opvm scripts (files, descriptors, heap, brk,
computation, signals), and each one is checkpointed at a drawn instruction and resumed in a
fresh machine. 500 examples in CI; `pytest --slow` runs 5,000. They are drawn in SHARDS
independent tests (each its own random examples) so that parallel workers share them."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vsnap.testing import assert_transparent, measure, workloads

SHARDS = 4


@pytest.fixture(scope="module")
def examples(request):
    return (5000 if request.config.getoption("--slow") else 500) // SHARDS


@pytest.mark.parametrize("shard", range(SHARDS))
def test_generated_workloads_survive_a_checkpoint_anywhere(shard, examples, tmp_path_factory):
    base = tmp_path_factory.mktemp(f"workloads{shard}")

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(guest=workloads(), data=st.data())
    def transparent(guest, data):
        m = measure(guest, base)
        assert b"EPARSE" not in m.outcome.stdout, m.outcome.stdout  # the generator is valid
        k = data.draw(st.integers(0, max(0, m.length - 1)), label="checkpoint at")
        assert_transparent(guest, [k], reference=m.outcome, base=base)

    transparent()


def test_workloads_reach_every_kind_of_operation():
    """The generator really varies: a sample of scripts uses every operation family."""
    seen = set()

    @settings(max_examples=200, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(workloads())
    def collect(guest):
        for line in guest.files["script.txt"].decode().splitlines():
            seen.add(line.split()[0])

    collect()
    assert {"open", "write", "lseek", "malloc", "touch", "brk", "compute", "handle",
            "raise", "block", "unblock", "rename", "listdir"} <= seen


def test_a_file_renamed_while_open_is_the_same_file_after_a_resume(tmp_path):
    """Found by the generated workloads: an open file renamed before the save was taken for
    a deleted one, and its writes after the resume went to a nameless copy."""
    from vsnap.testing import Guest, opvm_program
    script = b"open F0 a c\nrename a b\nwrite F0 6869\nmkdir d\nopen F1 d/x c\n" \
             b"rename d e\nwrite F1 6f6b\npwrite F0 - 0\n"
    guest = Guest(opvm_program(), ("script.txt",), {"script.txt": script})
    m = measure(guest, tmp_path)
    assert b"EBADSLOT" not in m.outcome.stdout and b"ENOENT" not in m.outcome.stdout
    for k in m.syscalls:
        assert_transparent(guest, [k], reference=m.outcome, base=tmp_path)
