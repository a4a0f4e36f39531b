/* ARM semihosting: console and host files through the debugger (here QEMU
 * with -semihosting-config enable=on,target=native). */
#ifndef SEMIHOSTING_H
#define SEMIHOSTING_H

#include <stddef.h>
#include <stdint.h>

/* Opens `name` on the host ("rb": read, "wb": write); a handle or -1. */
int sh_open(const char *name, const char *mode);
int sh_close(int handle);
/* Length of an open file, or -1. */
long sh_flen(int handle);
/* Reads/writes exactly `len` bytes; 0 on success, -1 otherwise. */
int sh_read(int handle, void *buf, size_t len);
int sh_write(int handle, const void *buf, size_t len);
/* Console output. */
void sh_puts(const char *s);
void sh_put_i64(int64_t v);
/* Ends the program: QEMU exits with status 0 when `status` is 0, else 1. */
void sh_exit(int status) __attribute__((noreturn));

#endif
