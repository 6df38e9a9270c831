/* A loop over a block of 64 bytes of no-ops, three times, then exit(0), without libc: 64
 * one-byte nops with -DMANY, or 8 eight-byte nops otherwise. The two builds have the same
 * layout and the same block addresses and sizes, with different instruction counts
 * (tests/test_check_caches.py: counts learned from one build must never be given to the
 * other). */
void _start(void)
{
    __asm__ volatile(
        "mov $3, %ecx\n"
        "1:\n"
#ifdef MANY
        ".rept 64\n nop\n .endr\n"
#else
        ".rept 8\n .byte 0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00\n .endr\n"
#endif
        "dec %ecx\n jnz 1b\n"
        "mov $60, %eax\n xor %edi, %edi\n syscall\n");
}
