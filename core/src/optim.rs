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
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
        adam_update(&self.coefs(lr, step), params, grads, m, v);
    }

    /// The per-step scalars of the update, computed as `torch.optim.Adam`
    /// computes them (single-tensor and foreach, `capturable=False`): the
    /// settings are Python floats there, so `1 − β`, the bias corrections,
    /// the step size and AdamW's decay are worked out in f64 from the
    /// decimal settings and rounded to f32 only where they meet the tensors.
    /// In f32, `1 − β₂` alone would be 1 − f32(0.999) = 0.00099998713, and
    /// `exp_avg_sq` would run at 0.99998713× PyTorch's.
    pub fn coefs(&self, lr: f32, step: u64) -> AdamStep {
        let t = step.max(1) as f64;
        let (lr, b1, b2) = (python_float(lr), python_float(self.beta1), python_float(self.beta2));
        let bc1 = 1.0 - libm::pow(b1, t);
        let bc2 = 1.0 - libm::pow(b2, t);
        AdamStep {
            beta1: self.beta1,
            beta2: self.beta2,
            one_minus_beta1: (1.0 - b1) as f32,
            one_minus_beta2: (1.0 - b2) as f32,
            step_size: (lr / bc1) as f32,
            bc2_sqrt: libm::sqrt(bc2) as f32,
            eps: self.eps,
            weight_decay: self.weight_decay,
            decay: (1.0 - lr * python_float(self.weight_decay)) as f32,
            decoupled: self.decoupled,
        }
    }
}

/// The f64 a Python script would hold for a setting stored here as `x`:
/// the shortest decimal that rounds to `x` (what the user wrote, e.g.
/// 0.999), read as f64, not `x` widened (0.99900001287…). Falls back to
/// widening outside the range where `D / 10^k` is exactly rounded.
fn python_float(x: f32) -> f64 {
    let a = libm::fabs(x as f64);
    if a == 0.0 || !a.is_finite() {
        return x as f64;
    }
    let e = libm::floor(libm::log10(a)) as i32;
    // f32 round-trips within 9 significant digits.
    for digits in 1..=9 {
        let k = digits - 1 - e;
        if !(-22..=22).contains(&k) {
            break;
        }
        let p = POW10[k.unsigned_abs() as usize];
        // `d` is an integer below 10^10 (exact in f64); one division or
        // multiplication by an exact power of ten rounds it correctly.
        let d = libm::round(if k >= 0 { a * p } else { a / p });
        let v = if k >= 0 { d / p } else { d * p };
        if v as f32 == a as f32 {
            return if x < 0.0 { -v } else { v };
        }
    }
    x as f64
}

/// 10^0 ..= 10^22, every one exact in f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// One Adam step's scalars, so that a SIMD kernel (`gemm::Kernels::adam`)
/// can apply exactly the arithmetic of [`adam_update`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub beta1: f32,
    pub beta2: f32,
    pub one_minus_beta1: f32,
    pub one_minus_beta2: f32,
    pub step_size: f32,
    pub bc2_sqrt: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// `1 - lr·wd`, for AdamW.
    pub decay: f32,
    pub decoupled: bool,
}

/// The elementwise Adam/AdamW update, in this exact order of operations
/// (each a separately rounded f32 operation, never fused), which every
/// vectorized twin reproduces bit for bit:
/// ```text
/// g  = decoupled ? g : g + wd·p        p = decoupled ? p·decay : p
/// m  = b1·m + (1−b1)·g
/// v  = b2·v + ((1−b2)·g)·g
/// p  = p − (step_size·m) / (sqrt(v)/sqrt(bc2) + eps)
/// ```
pub fn adam_update(c: &AdamStep, params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32]) {
    assert!(m.len() == params.len() && v.len() == params.len() && grads.len() == params.len(), "Adam buffer length");
    for (((p, &g), m), v) in params.iter_mut().zip(grads).zip(m.iter_mut()).zip(v.iter_mut()) {
        let g = if c.decoupled {
            *p *= c.decay;
            g
        } else {
            g + c.weight_decay * *p
        };
        *m = c.beta1 * *m + c.one_minus_beta1 * g;
        *v = c.beta2 * *v + c.one_minus_beta2 * g * g;
        let denom = libm::sqrtf(*v) / c.bc2_sqrt + c.eps;
        *p -= c.step_size * *m / denom;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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

/// An optimizer setting that PyTorch's constructor would reject.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OptimError {
    /// `setting` is `value`, outside `expected`.
    Invalid { setting: &'static str, value: f32, expected: &'static str },
    /// Nesterov momentum needs momentum > 0 and dampening 0.
    Nesterov { momentum: f32, dampening: f32 },
}

impl core::fmt::Display for OptimError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            OptimError::Invalid { setting, value, expected } => {
                write!(f, "{setting} {value}: expected {expected}")
            }
            OptimError::Nesterov { momentum, dampening } => write!(
                f,
                "Nesterov momentum requires momentum > 0 and dampening 0 (momentum {momentum}, dampening {dampening})"
            ),
        }
    }
}

fn non_negative(setting: &'static str, value: f32) -> Result<(), OptimError> {
    // NaN fails `is_finite`.
    if value < 0.0 || !value.is_finite() {
        return Err(OptimError::Invalid { setting, value, expected: "a finite number >= 0" });
    }
    Ok(())
}

fn below_one(setting: &'static str, value: f32) -> Result<(), OptimError> {
    // NaN fails both comparisons.
    if !(0.0..1.0).contains(&value) {
        return Err(OptimError::Invalid { setting, value, expected: "a number in [0, 1)" });
    }
    Ok(())
}

impl Optimizer {
    /// The checks of `torch.optim.SGD`, `Adam`/`AdamW` and `RMSprop`'s
    /// constructors (lr, momentum, dampening, weight decay, betas, eps,
    /// alpha ≥ 0, betas < 1, Nesterov needs momentum), plus finiteness,
    /// which PyTorch leaves to the first NaN. Setting names are PyTorch's.
    pub fn validate(&self) -> Result<(), OptimError> {
        non_negative("lr", self.lr())?;
        match self {
            Optimizer::Sgd(o) => {
                non_negative("momentum", o.momentum)?;
                non_negative("dampening", o.dampening)?;
                non_negative("weight_decay", o.weight_decay)?;
                if o.nesterov && (o.momentum <= 0.0 || o.dampening != 0.0) {
                    return Err(OptimError::Nesterov { momentum: o.momentum, dampening: o.dampening });
                }
            }
            Optimizer::Adam(o) => {
                non_negative("eps", o.eps)?;
                below_one("beta1", o.beta1)?;
                below_one("beta2", o.beta2)?;
                non_negative("weight_decay", o.weight_decay)?;
            }
            Optimizer::RmsProp(o) => {
                non_negative("eps", o.eps)?;
                non_negative("momentum", o.momentum)?;
                non_negative("weight_decay", o.weight_decay)?;
                non_negative("alpha", o.alpha)?;
            }
        }
        Ok(())
    }
}

/// Learning-rate schedules, evaluated per epoch like PyTorch's `StepLR` and
/// `CosineAnnealingLR` (stepped once per epoch).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Schedule {
    Constant,
    /// Multiply by `gamma` every `step_size` epochs.
    Step {
        step_size: u32,
        gamma: f32,
    },
    /// Cosine from the base rate down to `eta_min` over `t_max` epochs.
    Cosine {
        t_max: u32,
        eta_min: f32,
    },
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

#[cfg(test)]
mod tests {
    use super::*;

    // Golden values: the parameter after each of 5 steps of torch.optim
    // (float32, CPU, default single-tensor path) from the same start and
    // gradients. Regenerate with tests/golden/optim_golden.py.
    // Generated by tests/golden/optim_golden.py with torch 2.15.0+cu132.
    const PARAM0: [f32; 4] = [0.5, -1.25, 2.0, -0.1];
    const GRADS: [[f32; 4]; 5] = [
        [0.1, -0.2, 0.3, 0.05],
        [-0.4, 0.1, 0.25, -0.3],
        [0.2, 0.3, -0.5, 0.6],
        [0.05, -0.6, 0.1, -0.15],
        [-0.3, 0.2, 0.4, 0.8],
    ];
    /// torch.optim.SGD(lr=0.1)
    const SGD_PLAIN: [[f32; 4]; 5] = [
        [0.49, -1.23, 1.97, -0.105000004],
        [0.53000003, -1.24, 1.945, -0.075],
        [0.51000005, -1.27, 1.995, -0.135],
        [0.50500005, -1.2099999, 1.985, -0.120000005],
        [0.5350001, -1.2299999, 1.945, -0.2],
    ];
    /// torch.optim.SGD(lr=0.1, momentum=0.9)
    const SGD_MOMENTUM: [[f32; 4]; 5] = [
        [0.49, -1.23, 1.97, -0.105000004],
        [0.521, -1.222, 1.918, -0.079500005],
        [0.5289, -1.2448, 1.9212, -0.116550006],
        [0.53101003, -1.20532, 1.91408, -0.13489501],
        [0.562909, -1.189788, 1.867672, -0.23140551],
    ];
    /// torch.optim.SGD(lr=0.1, momentum=0.9, dampening=0.1)
    const SGD_DAMPENING: [[f32; 4]; 5] = [
        [0.49, -1.23, 1.97, -0.105000004],
        [0.517, -1.2210001, 1.9205, -0.0825],
        [0.5233, -1.2399001, 1.92095, -0.11625],
        [0.52447, -1.2029101, 1.9123551, -0.133125],
        [0.55252296, -1.1876191, 1.8686196, -0.2203125],
    ];
    /// torch.optim.SGD(lr=0.1, momentum=0.9, nesterov=True)
    const SGD_NESTEROV: [[f32; 4]; 5] = [
        [0.481, -1.212, 1.943, -0.1095],
        [0.5489, -1.2148, 1.8712, -0.056549996],
        [0.53601, -1.2653201, 1.92408, -0.149895],
        [0.53290904, -1.169788, 1.907672, -0.1514055],
        [0.5916181, -1.1758091, 1.8259048, -0.31826496],
    ];
    /// torch.optim.SGD(lr=0.1, weight_decay=0.01)
    const SGD_WEIGHT_DECAY: [[f32; 4]; 5] = [
        [0.4895, -1.22875, 1.968, -0.1049],
        [0.5290105, -1.2375213, 1.941032, -0.0747951],
        [0.50848144, -1.2662838, 1.989091, -0.1347203],
        [0.50297296, -1.2050174, 1.9771019, -0.11958557],
        [0.53247, -1.2238125, 1.9351249, -0.19946599],
    ];
    /// torch.optim.Adam()
    const ADAM: [[f32; 4]; 5] = [
        [0.499, -1.249, 1.999, -0.101],
        [0.49955952, -1.2487336, 1.9980087, -0.100376084],
        [0.4996697, -1.249123, 1.9980409, -0.10072797],
        [0.4996963, -1.2487985, 1.9979764, -0.10088274],
        [0.500013, -1.2486831, 1.9976416, -0.10138153],
    ];
    /// torch.optim.Adam(weight_decay=0.01)
    const ADAM_WEIGHT_DECAY: [[f32; 4]; 5] = [
        [0.499, -1.249, 1.999, -0.101],
        [0.49954715, -1.2486639, 1.9980079, -0.100373134],
        [0.49963865, -1.249001, 1.9979856, -0.1007227],
        [0.4996436, -1.248645, 1.9978601, -0.10087462],
        [0.49994165, -1.2484924, 1.9974742, -0.10137173],
    ];
    /// `exp_avg` of the same run
    const ADAM_EXP_AVG: [[f32; 4]; 5] = [
        [0.010000001, -0.020000001, 0.030000001, 0.0050000004],
        [-0.031, -0.008, 0.052, -0.025500001],
        [-0.007899999, 0.0228, -0.0031999983, 0.03705],
        [-0.0021099986, -0.039480004, 0.007120002, 0.018345],
        [-0.031899, -0.015532004, 0.046408, 0.0965105],
    ];
    /// `exp_avg_sq` of the same run
    const ADAM_EXP_AVG_SQ: [[f32; 4]; 5] = [
        [0.000010000001, 0.000040000003, 0.00009000001, 0.0000025000002],
        [0.00016999002, 0.000049960003, 0.00015241001, 0.00009249751],
        [0.00020982003, 0.00013991004, 0.0004022576, 0.00045240505],
        [0.00021211022, 0.00049977016, 0.00041185535, 0.00047445265],
        [0.0003018981, 0.0005392704, 0.0005714435, 0.0011139782],
    ];
    /// `exp_avg` of the same run
    const ADAM_WEIGHT_DECAY_EXP_AVG: [[f32; 4]; 5] = [
        [0.010500001, -0.02125, 0.032, 0.0049000005],
        [-0.030051, -0.010373999, 0.055799, -0.025691003],
        [-0.0065463525, 0.01941474, 0.0022171058, 0.03677773],
        [-0.0003920786, -0.04377574, 0.0139933815, 0.017999234],
        [-0.029853227, -0.02064681, 0.054591905, 0.09609844],
    ];
    /// `exp_avg_sq` of the same run
    const ADAM_WEIGHT_DECAY_EXP_AVG_SQ: [[f32; 4]; 5] = [
        [0.000011025001, 0.000045156256, 0.00010240002, 0.0000024010003],
        [0.00016704688, 0.0000527691, 0.00017519222, 0.000093005634],
        [0.00020890297, 0.00013538028, 0.00040543618, 0.00045170917],
        [0.00021171867, 0.000510389, 0.0004194259, 0.00047406068],
        [0.00029853405, 0.00054503995, 0.0005953885, 0.0011119737],
    ];
    /// torch.optim.AdamW()
    const ADAMW: [[f32; 4]; 5] = [
        [0.498995, -1.2489874, 1.9989799, -0.100999005],
        [0.4995495, -1.2487086, 1.9979687, -0.10037407],
        [0.49965468, -1.2490854, 1.9979808, -0.10072495],
        [0.4996763, -1.2487484, 1.9978963, -0.100878716],
        [0.49998796, -1.2486205, 1.9975414, -0.101376496],
    ];
    /// torch.optim.RMSprop()
    const RMSPROP: [[f32; 4]; 5] = [
        [0.4000001, -1.1500001, 1.9000001, -0.19999981],
        [0.49704286, -1.1949013, 1.835792, -0.10134712],
        [0.45321116, -1.2753375, 1.9148406, -0.19063616],
        [0.4422642, -1.19029, 1.8991481, -0.16874558],
        [0.49735573, -1.2176914, 1.845792, -0.24485534],
    ];
    /// torch.optim.RMSprop(momentum=0.9)
    const RMSPROP_MOMENTUM: [[f32; 4]; 5] = [
        [0.4000001, -1.1500001, 1.9, -0.19999981],
        [0.40704295, -1.1049014, 1.7457918, -0.19134694],
        [0.3695498, -1.1447488, 1.6860532, -0.2728484],
        [0.32485902, -1.0955639, 1.6165959, -0.32430914],
        [0.33972886, -1.078699, 1.5007282, -0.44673356],
    ];
    /// torch.optim.RMSprop(centered=True)
    const RMSPROP_CENTERED: [[f32; 4]; 5] = [
        [0.39949632, -1.1494963, 1.8994962, -0.20050359],
        [0.49679887, -1.1944412, 1.8346449, -0.101514466],
        [0.45295703, -1.2749968, 1.9136952, -0.19092627],
        [0.4420095, -1.1898129, 1.8979988, -0.1690265],
        [0.49721292, -1.2172241, 1.844504, -0.24548063],
    ];
    // Per-epoch lr (epochs 0..=12) for base lr 0.1, stepped once per epoch.
    /// StepLR(step_size=3, gamma=0.5)
    const STEP_LR: [f32; 13] = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125, 0.0125, 0.0125, 0.00625];
    /// CosineAnnealingLR(T_max=12, eta_min=0.001)
    const COSINE_LR: [f32; 13] = [
        0.1,
        0.09831333,
        0.093368255,
        0.08550178,
        0.07525,
        0.06331154,
        0.0505,
        0.037688456,
        0.02575,
        0.015498214,
        0.0076317424,
        0.0026866717,
        0.001,
    ];

    /// `|got - want| <= 1e-6·|want| + 1e-7`, element-wise, with the position
    /// in the message.
    fn assert_close(what: &str, step: usize, got: &[f32], want: &[f32]) {
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let tol = 1e-6 * w.abs() + 1e-7;
            assert!(
                (g - w).abs() <= tol,
                "{what}: step {} element {i}: got {g:e}, torch {w:e} (diff {:e})",
                step + 1,
                (g - w).abs()
            );
        }
    }

    /// Run `opt` from `PARAM0` over `GRADS` at its own lr and compare every
    /// step with torch's trajectory.
    fn check(what: &str, opt: Optimizer, want: &[[f32; 4]; 5]) {
        let mut p = PARAM0;
        let mut store = [[0.0f32; 4]; 3];
        let [a, b, c] = &mut store;
        let mut all: [&mut [f32]; 3] = [a, b, c];
        let bufs = &mut all[..opt.buffers()];
        for (t, (g, w)) in GRADS.iter().zip(want).enumerate() {
            opt.step(opt.lr(), t as u64 + 1, &mut p, g, bufs);
            assert_close(what, t, &p, w);
        }
    }

    fn sgd(momentum: f32, dampening: f32, weight_decay: f32, nesterov: bool) -> Optimizer {
        Optimizer::Sgd(Sgd { lr: 0.1, momentum, dampening, weight_decay, nesterov })
    }

    #[test]
    fn sgd_plain_matches_torch() {
        check("SGD", sgd(0.0, 0.0, 0.0, false), &SGD_PLAIN);
    }

    #[test]
    fn sgd_momentum_matches_torch() {
        check("SGD momentum", sgd(0.9, 0.0, 0.0, false), &SGD_MOMENTUM);
    }

    #[test]
    fn sgd_dampening_matches_torch() {
        check("SGD dampening", sgd(0.9, 0.1, 0.0, false), &SGD_DAMPENING);
    }

    #[test]
    fn sgd_nesterov_matches_torch() {
        check("SGD nesterov", sgd(0.9, 0.0, 0.0, true), &SGD_NESTEROV);
    }

    #[test]
    fn sgd_weight_decay_matches_torch() {
        check("SGD weight decay", sgd(0.0, 0.0, 0.01, false), &SGD_WEIGHT_DECAY);
    }

    #[test]
    fn adam_matches_torch() {
        check("Adam", Optimizer::Adam(Adam::default()), &ADAM);
    }

    #[test]
    fn adam_weight_decay_matches_torch() {
        check("Adam weight decay", Optimizer::Adam(Adam { weight_decay: 0.01, ..Adam::default() }), &ADAM_WEIGHT_DECAY);
    }

    /// Adam's state against torch's. `exp_avg_sq` within 1 ulp: once
    /// `1 − β₂` is rounded from f64 as torch does, the only difference left
    /// is that torch's CPU `addcmul_` contracts to an FMA,
    /// `fma((1−β₂)·g, g, β₂·v)`, where tailor rounds the product (with
    /// 1 − f32(0.999) it was off by 1.3e-5 relative, about 100 ulps).
    /// `exp_avg` within 1e-6 (torch's `lerp_` is `fma(1−β₁, g − m, m)`).
    fn check_adam_state(what: &str, opt: Adam, want_m: &[[f32; 4]; 5], want_v: &[[f32; 4]; 5]) {
        let (mut p, mut m, mut v) = (PARAM0, [0.0f32; 4], [0.0f32; 4]);
        for (t, g) in GRADS.iter().enumerate() {
            opt.step(opt.lr, t as u64 + 1, &mut p, g, &mut [&mut m, &mut v]);
            assert_close(what, t, &m, &want_m[t]);
            for (i, (&got, &want)) in v.iter().zip(&want_v[t]).enumerate() {
                // Positive finite floats: the bit patterns count ulps.
                let ulps = got.to_bits().abs_diff(want.to_bits());
                assert!(
                    ulps <= 1,
                    "{what}: exp_avg_sq step {} element {i}: got {got:e}, torch {want:e} ({ulps} ulps)",
                    t + 1
                );
            }
        }
    }

    #[test]
    fn adam_state_matches_torch() {
        check_adam_state("Adam", Adam::default(), &ADAM_EXP_AVG, &ADAM_EXP_AVG_SQ);
        let wd = Adam { weight_decay: 0.01, ..Adam::default() };
        check_adam_state("Adam weight decay", wd, &ADAM_WEIGHT_DECAY_EXP_AVG, &ADAM_WEIGHT_DECAY_EXP_AVG_SQ);
    }

    #[test]
    fn python_float_is_the_decimal_written() {
        assert_eq!(python_float(0.999), 0.999f64);
        assert_eq!(python_float(0.9), 0.9f64);
        assert_eq!(python_float(1e-3), 1e-3f64);
        assert_eq!(python_float(1e-8), 1e-8f64);
        assert_eq!(python_float(-2.5e-4), -2.5e-4f64);
        assert_eq!(python_float(123456.78), 123456.78f64);
        assert_eq!(python_float(0.0), 0.0);
        // Every f32 maps back to itself.
        for x in [f32::MIN_POSITIVE, 1e-30, 3.4e38, 0.1 + f32::EPSILON, f32::MAX] {
            assert_eq!(python_float(x) as f32, x, "{x:e}");
        }
        // What torch's constants come to: 1 − 0.999 in f64, then f32.
        assert_eq!(Adam::default().coefs(1e-3, 1).one_minus_beta2, 0.001f32);
    }

    #[test]
    fn adamw_matches_torch() {
        check("AdamW", Optimizer::Adam(Adam::adamw()), &ADAMW);
    }

    #[test]
    fn rmsprop_matches_torch() {
        check("RMSprop", Optimizer::RmsProp(RmsProp::default()), &RMSPROP);
    }

    #[test]
    fn rmsprop_momentum_matches_torch() {
        check(
            "RMSprop momentum",
            Optimizer::RmsProp(RmsProp { momentum: 0.9, ..RmsProp::default() }),
            &RMSPROP_MOMENTUM,
        );
    }

    #[test]
    fn rmsprop_centered_matches_torch() {
        check(
            "RMSprop centered",
            Optimizer::RmsProp(RmsProp { centered: true, ..RmsProp::default() }),
            &RMSPROP_CENTERED,
        );
    }

    #[test]
    fn step_lr_matches_torch() {
        let s = Schedule::Step { step_size: 3, gamma: 0.5 };
        for (epoch, &want) in STEP_LR.iter().enumerate() {
            assert_close("StepLR", epoch, &[s.lr(0.1, epoch as u32)], &[want]);
        }
    }

    #[test]
    fn cosine_lr_matches_torch() {
        // Within 0..=t_max only: past t_max torch's cosine rises again, ours
        // stays at eta_min (see `Schedule::Cosine`).
        let s = Schedule::Cosine { t_max: 12, eta_min: 0.001 };
        for (epoch, &want) in COSINE_LR.iter().enumerate() {
            assert_close("CosineAnnealingLR", epoch, &[s.lr(0.1, epoch as u32)], &[want]);
        }
        assert_eq!(Schedule::Constant.lr(0.1, 7), 0.1);
    }

    #[test]
    fn validate_rejects_what_pytorch_rejects() {
        let sgd = |lr, momentum, dampening, weight_decay, nesterov| {
            Optimizer::Sgd(Sgd { lr, momentum, dampening, weight_decay, nesterov }).validate()
        };
        assert_eq!(sgd(0.1, 0.9, 0.0, 1e-4, true), Ok(()));
        assert_eq!(sgd(0.0, 0.0, 0.0, 0.0, false), Ok(()));
        let setting = |r: Result<(), OptimError>| match r {
            Err(OptimError::Invalid { setting, .. }) => setting,
            other => panic!("{other:?}"),
        };
        assert_eq!(setting(sgd(-1.0, 0.0, 0.0, 0.0, false)), "lr");
        assert_eq!(setting(sgd(f32::NAN, 0.0, 0.0, 0.0, false)), "lr");
        assert_eq!(setting(sgd(f32::INFINITY, 0.0, 0.0, 0.0, false)), "lr");
        assert_eq!(setting(sgd(0.1, -1.0, 0.0, 0.0, false)), "momentum");
        assert_eq!(setting(sgd(0.1, f32::NAN, 0.0, 0.0, false)), "momentum");
        assert_eq!(setting(sgd(0.1, 0.9, -0.5, 0.0, false)), "dampening");
        assert_eq!(setting(sgd(0.1, 0.9, 0.0, -1.0, false)), "weight_decay");
        assert_eq!(setting(sgd(0.1, 0.9, 0.0, f32::NAN, false)), "weight_decay");
        assert!(matches!(sgd(0.1, 0.0, 0.0, 0.0, true), Err(OptimError::Nesterov { .. })));
        assert!(matches!(sgd(0.1, 0.9, 0.1, 0.0, true), Err(OptimError::Nesterov { .. })));
        let adam = |beta1, beta2, eps| Optimizer::Adam(Adam { beta1, beta2, eps, ..Adam::default() }).validate();
        assert_eq!(adam(0.0, 0.999, 0.0), Ok(()));
        assert_eq!(setting(adam(1.0, 0.999, 1e-8)), "beta1");
        assert_eq!(setting(adam(-0.1, 0.999, 1e-8)), "beta1");
        assert_eq!(setting(adam(0.9, 1.0, 1e-8)), "beta2");
        assert_eq!(setting(adam(0.9, f32::NAN, 1e-8)), "beta2");
        assert_eq!(setting(adam(0.9, 0.999, -1e-8)), "eps");
        let rms = |momentum, alpha| Optimizer::RmsProp(RmsProp { momentum, alpha, ..RmsProp::default() }).validate();
        assert_eq!(rms(0.9, 0.99), Ok(()));
        assert_eq!(setting(rms(-0.1, 0.99)), "momentum");
        assert_eq!(setting(rms(0.0, -0.5)), "alpha");
    }
}
