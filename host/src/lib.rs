//! The host side of tailor: data, training loop, checkpoints, commands.
pub mod bench;
pub mod board;
pub mod checkpoint;
pub mod commands;
pub mod data;
pub mod device;
pub mod numerics;
pub mod output;
pub mod par;
pub mod q8;
pub mod quantize;
pub mod read;
pub mod recipe;
pub mod signals;
pub mod simd;
pub mod train;
