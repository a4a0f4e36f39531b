/* tailor's C API on a Cortex-M4F (QEMU mps2-an386): loads the model that
 * `tailor export --format c --out model.h` wrote, checks the API's error
 * codes, then classifies every image of the host file images.u8 (raw
 * bytes, the model's inputs each) and writes each class to classes.u8 and
 * its int32 logits to logits.i32, for the host to compare with its own.
 * Under `-icount shift=0` it also counts instructions per image.
 *
 * Then, when the host gives head-train.u8 and head-train-labels.u8, it
 * trains a new f32 classifier head on the int8 model's features (one epoch,
 * SGD with momentum), writes each batch's loss to head-losses.f32 and the
 * head's parameters to head.f32, and reports the head's accuracy on the
 * images.u8 with labels.u8 and the instructions per training step. */
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

/* Head training: buffers carved from one pool, sized at run time. */
#define HEAD_BATCH 10
#define HEAD_LR 0.01f
#define HEAD_SEED 1
static float pool[32 * 1024];
static uint8_t feats[BATCH * 1024];
static uint8_t head_labels[BATCH];

/* Features of `m` images (at `images`) into `feats`; 0 or a code. */
static int32_t features(const TailorModel *model, uint32_t m, uint32_t nf) {
  for (uint32_t i = 0; i < m; i++) {
    int32_t r = tailor_model_features(model, images + i * TAILOR_MODEL_INPUTS, TAILOR_MODEL_INPUTS, scratch,
                                      sizeof scratch, feats + i * nf, nf);
    if (r != (int32_t)nf) return r < 0 ? r : TAILOR_ERR_LENGTH;
  }
  return 0;
}

static int train_head(const TailorModel *model, const TailorModelInfo *info) {
  int in = sh_open("head-train.u8", "rb"), in_labels = sh_open("head-train-labels.u8", "rb");
  if (in < 0 || in_labels < 0) return 0; /* nothing to train on: skip */
  uint32_t nf = info->features;
  uint32_t dims[2] = {nf, info->outputs};
  TailorTrainSetup setup = {.dims = dims, .n_dims = 2, .seed = HEAD_SEED, .optimizer = TAILOR_OPT_SGD,
                            .momentum = 0.9f, .input = TAILOR_INPUT_AFFINE};
  expect("feature grid", tailor_model_feature_grid(model, &setup.scale, &setup.zero_point), TAILOR_OK);
  TailorTrainSizes z;
  expect("train sizes", tailor_train_sizes(&setup, BATCH, &z), TAILOR_OK);
  if (z.params + z.state + z.scratch + z.workspace > sizeof pool / sizeof pool[0] || nf > 1024) {
    sh_puts("FAIL the head does not fit the pool\n");
    return 1;
  }
  float *p = pool, *st = p + z.params, *sc = st + z.state, *ws = sc + z.scratch;
  TailorTrain train;
  int32_t r = tailor_train_start(&train, &setup, p, z.params, st, z.state, sc, z.scratch, ws, z.workspace);
  expect("train start", r, TAILOR_OK);
  if (r != TAILOR_OK) return 1;
  /* Refused batches change nothing: a label out of range, too many samples. */
  head_labels[0] = (uint8_t)info->outputs;
  expect("bad label", tailor_train_batch(&train, HEAD_LR, head_labels, 1, feats, nf, 0), TAILOR_ERR_LABEL);
  expect("batch too large", tailor_train_batch(&train, HEAD_LR, head_labels, BATCH + 1, feats, (BATCH + 1) * nf, 0),
         TAILOR_ERR_LENGTH);

  int out_losses = sh_open("head-losses.f32", "wb");
  long n = sh_flen(in) / TAILOR_MODEL_INPUTS;
  uint64_t ticks = 0; /* SysTick runs since main's classification loop */
  for (long done = 0; done < n; done += HEAD_BATCH) {
    uint32_t m = (uint32_t)(n - done < HEAD_BATCH ? n - done : HEAD_BATCH);
    float loss;
    if (sh_read(in, images, m * TAILOR_MODEL_INPUTS) != 0 || sh_read(in_labels, head_labels, m) != 0) {
      sh_puts("FAIL reading the head's training data\n");
      return 1;
    }
    expect("features", features(model, m, nf), 0);
    uint32_t t0 = SYST_CVR;
    r = tailor_train_batch(&train, HEAD_LR, head_labels, m, feats, m * nf, &loss);
    ticks += (t0 - SYST_CVR) & 0xFFFFFF; /* a step takes far less than one wrap */
    expect("train batch", r, TAILOR_OK);
    sh_write(out_losses, &loss, sizeof loss);
  }
  sh_close(in);
  sh_close(in_labels);
  sh_close(out_losses);

  /* The head's accuracy on the test images. */
  int test = sh_open("images.u8", "rb"), test_labels = sh_open("labels.u8", "rb");
  long nt = sh_flen(test) / TAILOR_MODEL_INPUTS;
  uint32_t correct = 0;
  for (long done = 0; done < nt; done += BATCH) {
    uint32_t m = (uint32_t)(nt - done < BATCH ? nt - done : BATCH), c;
    if (sh_read(test, images, m * TAILOR_MODEL_INPUTS) != 0 || sh_read(test_labels, head_labels, m) != 0) {
      sh_puts("FAIL reading images.u8 or labels.u8\n");
      return 1;
    }
    expect("features", features(model, m, nf), 0);
    expect("evaluate", tailor_train_evaluate(&train, head_labels, m, feats, m * nf, &c, 0), TAILOR_OK);
    correct += c;
  }
  sh_close(test);
  sh_close(test_labels);
  const float *params;
  size_t len;
  expect("params", tailor_train_params(&train, &params, &len), TAILOR_OK);
  int out = sh_open("head.f32", "wb");
  sh_write(out, params, len * sizeof(float));
  sh_close(out);
  sh_puts("head: ");
  sh_put_i64(nf);
  sh_puts("x");
  sh_put_i64(info->outputs);
  sh_puts(" trained on ");
  sh_put_i64(n);
  sh_puts(" images in ");
  sh_put_i64((int64_t)tailor_train_steps(&train));
  sh_puts(" steps; test: ");
  sh_put_i64(correct);
  sh_puts(" / ");
  sh_put_i64(nt);
  sh_puts(" right\n");
  uint64_t steps = tailor_train_steps(&train);
  sh_puts("head training: ");
  sh_put_i64(steps ? (int64_t)(ticks * INSTRUCTIONS_PER_TICK / steps) : 0);
  sh_puts(" instructions per step of ");
  sh_put_i64(HEAD_BATCH);
  sh_puts(" images\n");
  return 0;
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
  if (train_head(&model, &info) != 0) return 1;
  sh_puts(failures ? "FAILED\n" : "ok\n");
  return failures != 0;
}
