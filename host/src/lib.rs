//! The host side of tailor: data, training loop, checkpoints, commands.
pub mod data;
