//! x86-64 AVX2+FMA and AVX-512 kernels (to be written; see issue 3).
