/* tailor's C API on a Cortex-M4F (QEMU mps2-an386): loads the model that
 * `tailor export --format c --out model.h` wrote, checks the API's error
 * codes, then classifies every image of the host file images.u8 (raw
 * bytes, the model's inputs each) and writes each class to classes.u8 and
 * its int32 logits to logits.i32, for the host to compare with its own.
 * Under `-icount shift=0` it also counts instructions per image. */
#include <stdint.h>

#include "model.h"
#include "semihosting.h"
#include "tailor.h"

#define BATCH 25

static uint8_t scratch[TAILOR_MODEL_SCRATCH_BYTES] __attribute__((aligned(4)));
static uint8_t images[BATCH * TAILOR_MODEL_INPUTS];
static uint32_t classes[BATCH];
static uint8_t class_bytes[BATCH];
static int32_t logits[BATCH * TAILOR_MODEL_OUTPUTS];
static int32_t one[TAILOR_MODEL_OUTPUTS];
/* A copy of the model one byte off alignment, and one with a flipped bit. */
static uint8_t moved[TAILOR_MODEL_BYTES + 4] __attribute__((aligned(4)));

/* SysTick, free-running on the processor clock: under -icount shift=0 an
 * instruction is 1 ns of virtual time and the 25 MHz tick 40 ns. */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018)
#define INSTRUCTIONS_PER_TICK 40

static int failures;

static void expect(const char *what, int32_t got, int32_t want) {
  if (got != want) {
    sh_puts("FAIL ");
    sh_puts(what);
    sh_puts(": got ");
    sh_put_i64(got);
    sh_puts(" (");
    sh_puts(tailor_status_str(got));
    sh_puts("), want ");
    sh_put_i64(want);
    sh_puts("\n");
    failures++;
  }
}

static void copy(uint8_t *d, const uint8_t *s, uint32_t n) {
  while (n--) *d++ = *s++;
}

/* Every bad argument is a code, never a fault. */
static void check_errors(const TailorModel *m) {
  TailorModel bad;
  expect("load NULL", tailor_model_load(&bad, 0, TAILOR_MODEL_BYTES), TAILOR_ERR_NULL);
  copy(moved + 1, tailor_model_q8, TAILOR_MODEL_BYTES);
  expect("load misaligned", tailor_model_load(&bad, moved + 1, TAILOR_MODEL_BYTES), TAILOR_ERR_MISALIGNED);
  expect("load truncated", tailor_model_load(&bad, tailor_model_q8, TAILOR_MODEL_BYTES - 1), TAILOR_ERR_TRUNCATED);
  copy(moved, tailor_model_q8, TAILOR_MODEL_BYTES);
  moved[TAILOR_MODEL_BYTES / 2] ^= 1;
  expect("load corrupt", tailor_model_load(&bad, moved, TAILOR_MODEL_BYTES), TAILOR_ERR_CHECKSUM);
  expect("classify unloaded", tailor_classify(&bad, images, TAILOR_MODEL_INPUTS, scratch, sizeof scratch, one,
                                              TAILOR_MODEL_OUTPUTS),
         TAILOR_ERR_NOT_LOADED);
  expect("short scratch", tailor_classify(m, images, TAILOR_MODEL_INPUTS, scratch, sizeof scratch - 2, one,
                                          TAILOR_MODEL_OUTPUTS),
         TAILOR_ERR_LENGTH);
  expect("short input", tailor_classify(m, images, TAILOR_MODEL_INPUTS - 1, scratch, sizeof scratch, one,
                                        TAILOR_MODEL_OUTPUTS),
         TAILOR_ERR_LENGTH);
  expect("NULL logits",
         tailor_classify(m, images, TAILOR_MODEL_INPUTS, scratch, sizeof scratch, 0, TAILOR_MODEL_OUTPUTS),
         TAILOR_ERR_NULL);
}

int main(void) {
  TailorVersion v = tailor_version();
  sh_puts(tailor_version_string());
  sh_puts(", C API ");
  sh_put_i64(v.api);
  sh_puts(", .q8 version ");
  sh_put_i64(v.q8_version);
  sh_puts(" layout ");
  sh_put_i64(v.q8_layout);
  sh_puts("\n");
  expect("API version", (int32_t)v.api, TAILOR_API_VERSION);

  TailorModel model;
  int32_t r = tailor_model_load(&model, tailor_model_q8, TAILOR_MODEL_BYTES);
  expect("load", r, TAILOR_OK);
  if (r != TAILOR_OK) return 1;
  TailorModelInfo info;
  expect("info", tailor_model_info(&model, &info), TAILOR_OK);
  expect("inputs", (int32_t)info.inputs, TAILOR_MODEL_INPUTS);
  expect("outputs", (int32_t)info.outputs, TAILOR_MODEL_OUTPUTS);
  expect("scratch", (int32_t)tailor_scratch_size(&model), TAILOR_MODEL_SCRATCH_BYTES);
  expect("crc", (int32_t)info.payload_crc, (int32_t)TAILOR_MODEL_CRC);
  sh_puts("model: ");
  sh_put_i64(info.layers);
  sh_puts(" layers, ");
  sh_put_i64(info.inputs);
  sh_puts(" inputs, ");
  sh_put_i64(info.outputs);
  sh_puts(" classes, ");
  sh_put_i64(info.model_bytes);
  sh_puts(" bytes, scratch ");
  sh_put_i64(info.scratch_bytes);
  sh_puts(" bytes\n");
  check_errors(&model);

  int in = sh_open("images.u8", "rb");
  int out_classes = sh_open("classes.u8", "wb");
  int out_logits = sh_open("logits.i32", "wb");
  if (in < 0 || out_classes < 0 || out_logits < 0) {
    sh_puts("FAIL cannot open images.u8, classes.u8 or logits.i32\n");
    return 1;
  }
  long n = sh_flen(in) / TAILOR_MODEL_INPUTS;
  uint64_t ticks = 0;
  long singles_differ = 0;
  SYST_RVR = 0xFFFFFF;
  SYST_CVR = 0;
  SYST_CSR = 5; /* ENABLE | CLKSOURCE = processor */
  for (long done = 0; done < n; done += BATCH) {
    uint32_t m = (uint32_t)(n - done < BATCH ? n - done : BATCH);
    if (sh_read(in, images, m * TAILOR_MODEL_INPUTS) != 0) {
      sh_puts("FAIL reading images.u8\n");
      return 1;
    }
    uint32_t t0 = SYST_CVR;
    r = tailor_classify_batch(&model, images, m * TAILOR_MODEL_INPUTS, m, scratch, sizeof scratch, classes, logits,
                              m * TAILOR_MODEL_OUTPUTS);
    ticks += (t0 - SYST_CVR) & 0xFFFFFF; /* a batch takes far less than one wrap */
    expect("classify_batch", r, (int32_t)m);
    /* The one-image call gives the same class and logits. */
    for (uint32_t i = 0; i < m; i++) {
      int32_t c = tailor_classify(&model, images + i * TAILOR_MODEL_INPUTS, TAILOR_MODEL_INPUTS, scratch,
                                  sizeof scratch, one, TAILOR_MODEL_OUTPUTS);
      int same = c == (int32_t)classes[i];
      for (uint32_t k = 0; k < TAILOR_MODEL_OUTPUTS; k++) same &= one[k] == logits[i * TAILOR_MODEL_OUTPUTS + k];
      singles_differ += !same;
      class_bytes[i] = (uint8_t)classes[i];
    }
    if (sh_write(out_classes, class_bytes, m) != 0 || sh_write(out_logits, logits, m * 4 * TAILOR_MODEL_OUTPUTS) != 0) {
      sh_puts("FAIL writing classes.u8 or logits.i32\n");
      return 1;
    }
  }
  sh_close(in);
  sh_close(out_classes);
  sh_close(out_logits);
  expect("tailor_classify = tailor_classify_batch", (int32_t)singles_differ, 0);
  sh_puts("classified ");
  sh_put_i64(n);
  sh_puts(" images, ");
  sh_put_i64(n ? (int64_t)(ticks * INSTRUCTIONS_PER_TICK / (uint64_t)n) : 0);
  sh_puts(" instructions per image\n");
  sh_puts(failures ? "FAILED\n" : "ok\n");
  return failures != 0;
}
