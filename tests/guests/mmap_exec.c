/* Code in a file mapping follows the file: a function mapped PROT_EXEC from a file, called,
 * the file rewritten with write(), called again; the second call runs the new bytes. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

int main(void)
{
    unsigned char one[] = {0xb8, 1, 0, 0, 0, 0xc3};  /* mov eax, 1; ret */
    int fd = open("code.bin", O_RDWR | O_CREAT | O_TRUNC, 0644);
    write(fd, one, sizeof one);
    int (*f)(void) = (int (*)(void))mmap(0, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    int a = f(), b = f();
    unsigned char two = 2;
    pwrite(fd, &two, 1, 1);                          /* mov eax, 2 */
    printf("%d %d %d\n", a, b, f());
    return 0;
}
