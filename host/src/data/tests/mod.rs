//! Tests of the data module, on small generated files.
