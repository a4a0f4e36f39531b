/* Minimal Cortex-M4F startup and semihosting for QEMU mps2-an386: vector
 * table, FPU on, .data/.bss initialized, main's status to the host. */
#include <stdint.h>

#include "semihosting.h"

int main(void);

extern uint32_t __stack_top[], __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[];

/* Semihosting operation `op` with argument block `arg` (BKPT 0xAB). */
static int semihost(int op, const void *arg) {
  register int r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

enum { SYS_OPEN = 0x01, SYS_CLOSE = 0x02, SYS_WRITE0 = 0x04, SYS_WRITE = 0x05, SYS_READ = 0x06,
       SYS_FLEN = 0x0c, SYS_EXIT = 0x18 };

static size_t length(const char *s) {
  size_t n = 0;
  while (s[n]) n++;
  return n;
}

int sh_open(const char *name, const char *mode) {
  /* Semihosting mode numbers: fopen's "rb" is 1, "wb" is 5. */
  uint32_t m = (mode[0] == 'w') ? 5 : 1;
  uint32_t a[3] = {(uint32_t)name, m, (uint32_t)length(name)};
  return semihost(SYS_OPEN, a);
}

int sh_close(int handle) {
  uint32_t a[1] = {(uint32_t)handle};
  return semihost(SYS_CLOSE, a);
}

long sh_flen(int handle) {
  uint32_t a[1] = {(uint32_t)handle};
  return semihost(SYS_FLEN, a);
}

int sh_read(int handle, void *buf, size_t len) {
  uint32_t a[3] = {(uint32_t)handle, (uint32_t)buf, (uint32_t)len};
  return semihost(SYS_READ, a) == 0 ? 0 : -1; /* returns the bytes NOT read */
}

int sh_write(int handle, const void *buf, size_t len) {
  uint32_t a[3] = {(uint32_t)handle, (uint32_t)buf, (uint32_t)len};
  return semihost(SYS_WRITE, a) == 0 ? 0 : -1;
}

void sh_puts(const char *s) { semihost(SYS_WRITE0, s); }

void sh_put_i64(int64_t v) {
  char b[24];
  int i = sizeof b - 1;
  uint64_t u = v < 0 ? -(uint64_t)v : (uint64_t)v;
  b[i] = 0;
  do {
    b[--i] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (v < 0) b[--i] = '-';
  sh_puts(&b[i]);
}

void sh_exit(int status) {
  /* ADP_Stopped_ApplicationExit (QEMU exits 0) or RunTimeErrorUnknown (1). */
  semihost(SYS_EXIT, (const void *)(status == 0 ? 0x20026 : 0x20023));
  for (;;) {
  }
}

static void fault(void) {
  sh_puts("fault\n");
  sh_exit(3);
}

void reset(void) {
  /* CPACR: full access to CP10/CP11 (the FPU) before any code may use it. */
  *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
  __asm__ volatile("dsb\n\tisb" ::: "memory");
  for (uint32_t *s = __data_load, *d = __data_start; d < __data_end;) *d++ = *s++;
  for (uint32_t *d = __bss_start; d < __bss_end;) *d++ = 0;
  sh_exit(main());
}

/* Initial stack pointer, reset, then every exception up to SysTick. */
__attribute__((section(".vectors"), used)) void (*const vectors[16])(void) = {
    (void (*)(void))__stack_top, reset, fault, fault, fault, fault, fault, 0, 0, 0, 0, fault, fault, 0, fault, fault,
};
