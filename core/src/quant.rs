//! Int8 post-training quantization and integer-only inference (issue 4).
