//! Fashion-MNIST IDX loading and the DataLoader-like batch stream.
