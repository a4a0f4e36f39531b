//! Named training recipes and how command-line options override them.

use tailor_core::optim::{Adam, Optimizer, RmsProp, Schedule, Sgd};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Recipe {
    /// PyTorch's tutorial: SGD lr 1e-3, batch 64, 10 epochs, no shuffle, ToTensor.
    Tutorial,
    /// tailor's default: the best accuracy within 20 epochs (see README).
    Default,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OptName {
    Sgd,
    Momentum,
    Nesterov,
    Adam,
    Adamw,
    Rmsprop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SchedName {
    Constant,
    Step,
    Cosine,
}

/// A complete set of training settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub epochs: u32,
    pub batch_size: usize,
    pub optimizer: Optimizer,
    pub schedule: Schedule,
    pub seed: u64,
    pub shuffle: bool,
    /// Normalize inputs (Fashion-MNIST's pixel mean and std after /255).
    pub normalize: bool,
}

impl Recipe {
    pub fn settings(self) -> Settings {
        match self {
            Recipe::Tutorial => Settings {
                epochs: 10,
                batch_size: 64,
                optimizer: Optimizer::Sgd(Sgd { lr: 1e-3, ..Sgd::default() }),
                schedule: Schedule::Constant,
                seed: 0,
                shuffle: false,
                normalize: false,
            },
            Recipe::Default => Settings {
                epochs: 20,
                batch_size: 64,
                optimizer: Optimizer::Adam(Adam { lr: 1e-3, ..Adam::default() }),
                schedule: Schedule::Cosine { t_max: 20, eta_min: 0.0 },
                seed: 0,
                shuffle: true,
                normalize: true,
            },
        }
    }
}

/// The optimizer called `name` with PyTorch's defaults, at learning rate `lr`
/// (or that optimizer's default rate).
pub fn optimizer(name: OptName, lr: Option<f32>, momentum: Option<f32>, weight_decay: Option<f32>) -> Optimizer {
    let wd = weight_decay.unwrap_or(0.0);
    match name {
        OptName::Sgd => Optimizer::Sgd(Sgd {
            lr: lr.unwrap_or(1e-3),
            momentum: momentum.unwrap_or(0.0),
            weight_decay: wd,
            ..Sgd::default()
        }),
        OptName::Momentum | OptName::Nesterov => Optimizer::Sgd(Sgd {
            lr: lr.unwrap_or(0.05),
            momentum: momentum.unwrap_or(0.9),
            weight_decay: wd,
            nesterov: name == OptName::Nesterov,
            ..Sgd::default()
        }),
        OptName::Adam => Optimizer::Adam(Adam { lr: lr.unwrap_or(1e-3), weight_decay: wd, ..Adam::default() }),
        OptName::Adamw => Optimizer::Adam(Adam {
            lr: lr.unwrap_or(1e-3),
            weight_decay: weight_decay.unwrap_or(1e-2),
            ..Adam::adamw()
        }),
        OptName::Rmsprop => Optimizer::RmsProp(RmsProp {
            lr: lr.unwrap_or(1e-3),
            momentum: momentum.unwrap_or(0.0),
            weight_decay: wd,
            ..RmsProp::default()
        }),
    }
}

pub fn schedule(name: SchedName, epochs: u32) -> Schedule {
    match name {
        SchedName::Constant => Schedule::Constant,
        SchedName::Step => Schedule::Step { step_size: (epochs / 3).max(1), gamma: 0.1 },
        SchedName::Cosine => Schedule::Cosine { t_max: epochs, eta_min: 0.0 },
    }
}
