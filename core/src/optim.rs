//! Optimizers with PyTorch's update rules and defaults, on flat slices.
//!
//! Every optimizer updates `params` in place from `grads`, using state
//! buffers the caller owns (same length as `params`, zero-initialized):
//!
//! | optimizer | state buffers | PyTorch |
//! |---|---|---|
//! | [`Sgd`] | 1 if momentum ≠ 0, else 0 | `torch.optim.SGD` |
//! | [`Adam`] | 2 (`exp_avg`, `exp_avg_sq`) | `Adam`, `AdamW` (`decoupled`) |
//! | [`RmsProp`] | 1 + 1 if momentum + 1 if centered | `RMSprop` |
//!
//! `step` is the 1-based number of this update (PyTorch's `state['step']`
//! after increment); SGD uses it to start the momentum buffer from the first
//! gradient, Adam for bias correction.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd { lr: 1e-3, momentum: 0.0, dampening: 0.0, weight_decay: 0.0, nesterov: false }
    }
}

impl Sgd {
    pub fn buffers(&self) -> usize {
        (self.momentum != 0.0) as usize
    }

    /// `bufs[0]` is the momentum buffer when `momentum != 0`.
    pub fn step(&self, lr: f32, step: u64, params: &mut [f32], grads: &[f32], bufs: &mut [&mut [f32]]) {
        let (wd, mu, damp) = (self.weight_decay, self.momentum, self.dampening);
        if mu == 0.0 {
            for (p, &g) in params.iter_mut().zip(grads) {
                let g = g + wd * *p;
                *p -= lr * g;
            }
            return;
        }
        let buf = &mut *bufs[0];
        assert_eq!(buf.len(), params.len(), "SGD momentum buffer length");
        for ((p, &g), b) in params.iter_mut().zip(grads).zip(buf.iter_mut()) {
            let g = g + wd * *p;
            *b = if step <= 1 { g } else { mu * *b + (1.0 - damp) * g };
            let d = if self.nesterov { g + mu * *b } else { *b };
            *p -= lr * d;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW: decay the weights directly instead of adding `wd·p` to the gradient.
    pub decoupled: bool,
}

impl Default for Adam {
    fn default() -> Self {
        Adam { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false }
    }
}

impl Adam {
    /// PyTorch's `AdamW` defaults (weight decay 1e-2).
    pub fn adamw() -> Self {
        Adam { weight_decay: 1e-2, decoupled: true, ..Adam::default() }
    }

    pub fn buffers(&self) -> usize {
        2
    }

    /// `bufs = [exp_avg, exp_avg_sq]`.
    pub fn step(&self, lr: f32, step: u64, params: &mut [f32], grads: &[f32], bufs: &mut [&mut [f32]]) {
        let [m, v] = bufs else { panic!("Adam needs 2 state buffers") };
        assert!(m.len() == params.len() && v.len() == params.len(), "Adam state buffer length");
        let t = step.max(1) as i32;
        let (b1, b2) = (self.beta1, self.beta2);
        let bc1 = 1.0 - libm::powf(b1, t as f32);
        let bc2 = 1.0 - libm::powf(b2, t as f32);
        let step_size = lr / bc1;
        let bc2_sqrt = libm::sqrtf(bc2);
        let wd = self.weight_decay;
        let decay = 1.0 - lr * wd;
        for (((p, &g), m), v) in params.iter_mut().zip(grads).zip(m.iter_mut()).zip(v.iter_mut()) {
            let g = if self.decoupled {
                *p *= decay;
                g
            } else {
                g + wd * *p
            };
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            let denom = libm::sqrtf(*v) / bc2_sqrt + self.eps;
            *p -= step_size * *m / denom;
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RmsProp {
    pub lr: f32,
    pub alpha: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub momentum: f32,
    pub centered: bool,
}

impl Default for RmsProp {
    fn default() -> Self {
        RmsProp { lr: 1e-2, alpha: 0.99, eps: 1e-8, weight_decay: 0.0, momentum: 0.0, centered: false }
    }
}

impl RmsProp {
    pub fn buffers(&self) -> usize {
        1 + (self.momentum > 0.0) as usize + self.centered as usize
    }

    /// `bufs = [square_avg, (momentum_buffer), (grad_avg)]`.
    pub fn step(&self, lr: f32, _step: u64, params: &mut [f32], grads: &[f32], bufs: &mut [&mut [f32]]) {
        assert_eq!(bufs.len(), self.buffers(), "RMSprop state buffers");
        let (sq, rest) = bufs.split_first_mut().expect("RMSprop square_avg");
        let (mut mom, rest) = if self.momentum > 0.0 {
            let (b, r) = rest.split_first_mut().expect("RMSprop momentum_buffer");
            (Some(b), r)
        } else {
            (None, rest)
        };
        let mut gavg = rest.first_mut();
        let (a, wd) = (self.alpha, self.weight_decay);
        for i in 0..params.len() {
            let p = &mut params[i];
            let g = grads[i] + wd * *p;
            let s = &mut sq[i];
            *s = a * *s + (1.0 - a) * g * g;
            let avg = if let Some(ga) = gavg.as_deref_mut() {
                ga[i] = a * ga[i] + (1.0 - a) * g;
                libm::sqrtf(*s - ga[i] * ga[i]) + self.eps
            } else {
                libm::sqrtf(*s) + self.eps
            };
            if let Some(b) = mom.as_deref_mut() {
                b[i] = self.momentum * b[i] + g / avg;
                *p -= lr * b[i];
            } else {
                *p -= lr * g / avg;
            }
        }
    }
}

/// One of the optimizers, so the host and firmware can pick one at run time.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Optimizer {
    Sgd(Sgd),
    Adam(Adam),
    RmsProp(RmsProp),
}

impl Optimizer {
    pub fn lr(&self) -> f32 {
        match self {
            Optimizer::Sgd(o) => o.lr,
            Optimizer::Adam(o) => o.lr,
            Optimizer::RmsProp(o) => o.lr,
        }
    }

    /// How many parameter-sized state buffers the caller must provide.
    pub fn buffers(&self) -> usize {
        match self {
            Optimizer::Sgd(o) => o.buffers(),
            Optimizer::Adam(o) => o.buffers(),
            Optimizer::RmsProp(o) => o.buffers(),
        }
    }

    /// One update with learning rate `lr` (from a schedule, or [`Self::lr`]).
    pub fn step(&self, lr: f32, step: u64, params: &mut [f32], grads: &[f32], bufs: &mut [&mut [f32]]) {
        assert_eq!(params.len(), grads.len(), "params and grads differ in length");
        match self {
            Optimizer::Sgd(o) => o.step(lr, step, params, grads, bufs),
            Optimizer::Adam(o) => o.step(lr, step, params, grads, bufs),
            Optimizer::RmsProp(o) => o.step(lr, step, params, grads, bufs),
        }
    }
}

/// Learning-rate schedules, evaluated per epoch like PyTorch's `StepLR` and
/// `CosineAnnealingLR` (stepped once per epoch).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum Schedule {
    Constant,
    /// Multiply by `gamma` every `step_size` epochs.
    Step { step_size: u32, gamma: f32 },
    /// Cosine from the base rate down to `eta_min` over `t_max` epochs.
    Cosine { t_max: u32, eta_min: f32 },
}

impl Schedule {
    /// Learning rate for 0-based `epoch`.
    pub fn lr(&self, base: f32, epoch: u32) -> f32 {
        match *self {
            Schedule::Constant => base,
            Schedule::Step { step_size, gamma } => base * libm::powf(gamma, (epoch / step_size.max(1)) as f32),
            Schedule::Cosine { t_max, eta_min } => {
                let t = epoch.min(t_max) as f32 / t_max.max(1) as f32;
                eta_min + (base - eta_min) * 0.5 * (1.0 + libm::cosf(core::f32::consts::PI * t))
            }
        }
    }
}
