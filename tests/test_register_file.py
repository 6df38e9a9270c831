"""cpu.py moves registers with one call into Unicorn's C API through a buffer of its own
(_RegisterFile) instead of the binding's per-register objects: the same values both ways, for
every register a checkpoint saves (GPRs, flags, x87's 80-bit registers, xmm's 128 bits, the
16- and 32-bit control words) and for the subsets signal frames write."""
import random

from vsnap.cpu import _IDS, REGISTERS, Cpu


def _binding_read(cpu) -> dict:
    out = {}
    for name, v in zip(REGISTERS, cpu.uc.reg_read_batch([_IDS[n] for n in REGISTERS])):
        out[name] = v[0] | (v[1] << 64) if isinstance(v, tuple) else v
    return out


def _binding_write(cpu, regs: dict) -> None:
    pairs = []
    for name, v in regs.items():
        if name.startswith("fp") and name[2:].isdigit():
            v = (v & ((1 << 64) - 1), v >> 64)
        pairs.append((_IDS[name], v))
    cpu.uc.reg_write_batch(pairs)


def _random_registers(rng) -> dict:
    regs = {}
    for name in REGISTERS:
        wide = name[-1].isdigit() and name.startswith(("fp", "xmm"))
        regs[name] = rng.getrandbits(128 if name.startswith("xmm") else 80 if wide else 64)
    # control words Unicorn keeps in narrower fields, with values it accepts
    regs.update(rflags=0x202 | rng.getrandbits(1), fpcw=0x37F, mxcsr=0x1F80,
                fptag=rng.getrandbits(16), fpsw=rng.getrandbits(16))
    return regs


def test_all_registers_read_and_write_as_the_binding_does():
    rng = random.Random(7)
    cpu = Cpu()
    assert cpu.snapshot_registers() == _binding_read(cpu)  # Linux's start values
    for _ in range(30):
        regs = _random_registers(rng)
        cpu.restore_registers(regs)
        ours = cpu.snapshot_registers()
        assert ours == _binding_read(cpu)
        _binding_write(cpu, regs)
        assert cpu.snapshot_registers() == ours


def test_a_subset_is_written_alone():
    rng = random.Random(8)
    cpu = Cpu()
    cpu.restore_registers(_random_registers(rng))
    before = cpu.snapshot_registers()
    some = {"rax": 5, "rip": 0x401000, "xmm3": (1 << 127) | 9, "fp2": (0x4000 << 64) | 1 << 63,
            "rflags": 0x246}
    cpu.write_many(some)
    after = cpu.snapshot_registers()
    assert after == {**before, **some}
    assert after == _binding_read(cpu)
    cpu.write_many({"rax": -1})  # wrapped, as the binding's ctypes value wraps
    assert cpu.read("rax") == (1 << 64) - 1


def test_one_register_reads_and_writes_as_the_binding_does():
    rng = random.Random(9)
    cpu = Cpu()
    cpu.restore_registers(_random_registers(rng))
    for name in REGISTERS:
        assert cpu.read(name) == cpu.uc.reg_read(_IDS[name])
    for name in ("rax", "rip", "rflags", "fs_base", "mxcsr", "fpcw", "r15"):
        value = {"rflags": 0x246, "mxcsr": 0x1F80, "fpcw": 0x27F}.get(name, rng.getrandbits(64))
        cpu.write(name, value)
        assert cpu.read(name) == cpu.uc.reg_read(_IDS[name]) == value
    cpu.write("xmm1", 1 << 100)
    assert cpu.read("xmm1") == 1 << 100
