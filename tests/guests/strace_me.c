/* strace_me.c: a few raw system calls with known arguments, for --strace. */
#include <fcntl.h>
#include <unistd.h>

int main(void)
{
    write(1, "Hello, world!\n", 14);
    int fd = open("/no/such/file", O_RDONLY);
    return fd < 0 ? 0 : 1;
}
