//! Training on the device through the core's `TrainSession`: a fresh f32
//! model (or a classifier head on an int8 model's features, see
//! `tailor_model_features`) learns one batch at a time in caller buffers,
//! with the target's kernels (`Kernels::TARGET`: the Cortex-M4 ones on an
//! Arm FPU), which the host replays bit for bit.

use tailor_core::gemm::Kernels;
use tailor_core::optim::{Adam, Optimizer, Sgd};
use tailor_core::session::{InputMap, SessionBuffers, SessionError, SessionSetup, TrainSession};
use tailor_core::spec::{Spec, MAX_LAYERS};

use crate::args::{get, get_mut, slice, slice_mut};
use crate::model::TailorModel;
use crate::status::{TAILOR_ERR_LENGTH, TAILOR_ERR_NOT_LOADED, TAILOR_ERR_NULL, TAILOR_OK};

/// The settings are not usable: dims (1 to 16 layers, none 0 wide), an
/// unknown optimizer or input code, a non-finite or zero std, a learning
/// rate that is negative or not finite.
pub const TAILOR_ERR_SETTING: i32 = -10;
/// A label is not one of the model's classes.
pub const TAILOR_ERR_LABEL: i32 = -11;

/// SGD (PyTorch's), with `momentum` (0: plain) and `weight_decay`.
pub const TAILOR_OPT_SGD: u32 = 0;
/// Adam (PyTorch's defaults: betas 0.9, 0.999, eps 1e-8), with `weight_decay`.
pub const TAILOR_OPT_ADAM: u32 = 1;

/// Input byte `b` is `(b / 255 − mean) / std` (image pixels).
pub const TAILOR_INPUT_PIXELS: u32 = 0;
/// Input byte `b` is `scale · (b − zero_point)` (an int8 model's features).
pub const TAILOR_INPUT_AFFINE: u32 = 1;

/// 64-bit words of a `TailorTrain`'s storage.
pub const TAILOR_TRAIN_WORDS: usize = 200;

const STARTED: u32 = u32::from_le_bytes(*b"TLts");

/// What to train.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TailorTrainSetup {
    /// `n_dims` widths: the inputs, then each layer's outputs (ReLU after
    /// every hidden layer, logits out). `{64, 10}` is a head on 64 features.
    pub dims: *const u32,
    pub n_dims: usize,
    /// PyTorch-default initialization (uniform ±1/√inputs) from this seed.
    pub seed: u64,
    /// `TAILOR_OPT_SGD` or `TAILOR_OPT_ADAM`.
    pub optimizer: u32,
    /// SGD's momentum (0: plain SGD); Adam ignores it.
    pub momentum: f32,
    pub weight_decay: f32,
    /// `TAILOR_INPUT_PIXELS` (uses `mean`, `std`) or `TAILOR_INPUT_AFFINE`
    /// (uses `scale`, `zero_point`).
    pub input: u32,
    pub mean: f32,
    pub std: f32,
    pub scale: f32,
    pub zero_point: i32,
}

/// Floats of each buffer `tailor_train_start` needs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailorTrainSizes {
    /// The parameters, layer after layer (`weight[out][in]`, then `bias[out]`).
    pub params: usize,
    /// The optimizer's state (0 for plain SGD).
    pub state: usize,
    /// Gradients.
    pub scratch: usize,
    /// Activations of the requested batch.
    pub workspace: usize,
}

/// A training run: `tailor_train_start` fills it. It points into the
/// caller's buffers, which must stay in place while it is used. Its fields
/// are private; do not copy it (it owns the run's progress).
#[repr(C)]
pub struct TailorTrain {
    tag: u32,
    storage: [u64; TAILOR_TRAIN_WORDS],
}

const _: () = assert!(core::mem::size_of::<TrainSession<'static>>() <= 8 * TAILOR_TRAIN_WORDS);
const _: () = assert!(core::mem::align_of::<TrainSession<'static>>() <= core::mem::align_of::<u64>());

fn of_session(e: SessionError) -> i32 {
    match e {
        SessionError::Buffer { .. } | SessionError::BatchSize { .. } | SessionError::InputLength { .. } => {
            TAILOR_ERR_LENGTH
        }
        SessionError::Label { .. } => TAILOR_ERR_LABEL,
        SessionError::Setting => TAILOR_ERR_SETTING,
    }
}

fn status(r: Result<i32, i32>) -> i32 {
    r.unwrap_or_else(|e| e)
}

/// The core's setup from the C one.
///
/// # Safety
/// `setup` is NULL or valid, and so is its `dims` array.
unsafe fn setup_of(setup: *const TailorTrainSetup) -> Result<SessionSetup, i32> {
    // SAFETY: the caller's contract.
    let s = unsafe { get(setup) }?;
    if s.n_dims < 2 || s.n_dims > MAX_LAYERS + 1 {
        return Err(TAILOR_ERR_SETTING);
    }
    // SAFETY: the caller's contract for `dims`.
    let dims = unsafe { slice(s.dims, s.n_dims) }?;
    let mut d = [0usize; MAX_LAYERS + 1];
    for (o, &w) in d.iter_mut().zip(dims) {
        *o = w as usize;
    }
    let spec = Spec::try_mlp(&d[..s.n_dims]).map_err(|_| TAILOR_ERR_SETTING)?;
    let finite = s.momentum.is_finite() && s.weight_decay.is_finite();
    let optimizer = match s.optimizer {
        TAILOR_OPT_SGD if finite => {
            Optimizer::Sgd(Sgd { momentum: s.momentum, weight_decay: s.weight_decay, ..Sgd::default() })
        }
        TAILOR_OPT_ADAM if finite => Optimizer::Adam(Adam { weight_decay: s.weight_decay, ..Adam::default() }),
        _ => return Err(TAILOR_ERR_SETTING),
    };
    let input = match s.input {
        TAILOR_INPUT_PIXELS => InputMap::Pixels { mean: s.mean, std: s.std },
        TAILOR_INPUT_AFFINE => InputMap::Affine { scale: s.scale, zero_point: s.zero_point },
        _ => return Err(TAILOR_ERR_SETTING),
    };
    Ok(SessionSetup { spec, optimizer, seed: s.seed, input })
}

/// Fills `*sizes` with the floats each buffer of a run of `setup` needs
/// for batches of up to `batch` samples.
///
/// # Safety
/// Each pointer is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tailor_train_sizes(
    setup: *const TailorTrainSetup,
    batch: usize,
    sizes: *mut TailorTrainSizes,
) -> i32 {
    status((|| {
        // SAFETY: the caller's contract.
        let s = unsafe { setup_of(setup) }?;
        // SAFETY: the caller's contract.
        let out = unsafe { get_mut(sizes) }?;
        let p = s.spec.params();
        if batch == 0 {
            return Err(TAILOR_ERR_SETTING);
        }
        let workspace = s.spec.checked_activations(batch).ok_or(TAILOR_ERR_LENGTH)?;
        *out = TailorTrainSizes {
            params: p,
            state: s.optimizer.buffers() * p,
            scratch: s.spec.train_scratch(1),
            workspace,
        };
        Ok(TAILOR_OK)
    })())
}

/// A buffer that may be NULL when none is needed.
///
/// # Safety
/// As `slice_mut`.
unsafe fn floats<'a>(p: *mut f32, len: usize) -> Result<&'a mut [f32], i32> {
    if p.is_null() && len == 0 {
        return Ok(&mut []);
    }
    // SAFETY: the caller's contract.
    unsafe { slice_mut(p, len) }
}

/// Starts a run of `setup` in the caller's buffers (sizes from
/// `tailor_train_sizes`; the workspace's length sets the largest batch):
/// initializes the parameters from the seed and zeroes the optimizer's
/// state. On an error `*train` is left not started.
///
/// # Safety
/// `train` is NULL or writable; each buffer is NULL or valid for its
/// length, and is used by nothing else while the run is.
#[no_mangle]
#[allow(clippy::too_many_arguments)]
pub unsafe extern "C" fn tailor_train_start(
    train: *mut TailorTrain,
    setup: *const TailorTrainSetup,
    params: *mut f32,
    params_len: usize,
    state: *mut f32,
    state_len: usize,
    scratch: *mut f32,
    scratch_len: usize,
    workspace: *mut f32,
    workspace_len: usize,
) -> i32 {
    if train.is_null() {
        return TAILOR_ERR_NULL;
    }
    if !(train as usize).is_multiple_of(core::mem::align_of::<TailorTrain>()) {
        return crate::status::TAILOR_ERR_MISALIGNED;
    }
    // SAFETY: non-null, aligned, writable by the caller's contract.
    unsafe { core::ptr::addr_of_mut!((*train).tag).write(0) };
    status((|| {
        // SAFETY: the caller's contract for each pointer.
        let s = unsafe { setup_of(setup) }?;
        let bufs = unsafe {
            SessionBuffers {
                params: floats(params, params_len)?,
                state: floats(state, state_len)?,
                scratch: floats(scratch, scratch_len)?,
                workspace: floats(workspace, workspace_len)?,
            }
        };
        let session = TrainSession::new(&s, bufs).map_err(of_session)?;
        // SAFETY: the storage holds a TrainSession (asserted size and alignment).
        unsafe {
            (core::ptr::addr_of_mut!((*train).storage) as *mut TrainSession<'static>).write(session);
            core::ptr::addr_of_mut!((*train).tag).write(STARTED);
        }
        Ok(TAILOR_OK)
    })())
}

fn session<'a>(train: *mut TailorTrain) -> Result<&'a mut TrainSession<'static>, i32> {
    // SAFETY: the caller's contract for a `TailorTrain *`.
    let t = unsafe { get_mut(train) }?;
    if t.tag != STARTED {
        return Err(TAILOR_ERR_NOT_LOADED);
    }
    // SAFETY: the tag is only set after a TrainSession was written there.
    Ok(unsafe { &mut *(t.storage.as_mut_ptr() as *mut TrainSession<'static>) })
}

/// One update with learning rate `lr` on `n` samples: `labels[n]`, and
/// `inputs` their bytes back to back (`inputs_len` = `n` × the model's
/// inputs). Writes the batch's mean cross-entropy to `*loss` unless it is
/// NULL. A refused batch changes nothing. A hard-float Arm build (a
/// Cortex-M4F) computes with `VMLA` kernels that the host's
/// `Kernels::M4_TWIN` replays bit for bit; other builds with the portable
/// ones.
///
/// # Safety
/// Each pointer is NULL or valid for its length.
#[no_mangle]
pub unsafe extern "C" fn tailor_train_batch(
    train: *mut TailorTrain,
    lr: f32,
    labels: *const u8,
    n: usize,
    inputs: *const u8,
    inputs_len: usize,
    loss: *mut f32,
) -> i32 {
    status((|| {
        let s = session(train)?;
        // SAFETY: the caller's contract for each buffer.
        let (l, x) = unsafe { (slice(labels, n)?, slice(inputs, inputs_len)?) };
        let out = if loss.is_null() { None } else { Some(unsafe { get_mut(loss) }?) };
        let v = s.train_batch(&Kernels::TARGET, lr, l, x).map_err(of_session)?;
        if let Some(o) = out {
            *o = v;
        }
        Ok(TAILOR_OK)
    })())
}

/// Classifies `n` labelled samples (at most the largest batch) with the
/// current parameters: `*correct` gets how many were right and, unless
/// NULL, `*loss_sum` the sum of their cross-entropies.
///
/// # Safety
/// Each pointer is NULL or valid for its length.
#[no_mangle]
pub unsafe extern "C" fn tailor_train_evaluate(
    train: *mut TailorTrain,
    labels: *const u8,
    n: usize,
    inputs: *const u8,
    inputs_len: usize,
    correct: *mut u32,
    loss_sum: *mut f32,
) -> i32 {
    status((|| {
        let s = session(train)?;
        // SAFETY: the caller's contract for each buffer.
        let (l, x, c) = unsafe { (slice(labels, n)?, slice(inputs, inputs_len)?, get_mut(correct)?) };
        let ls = if loss_sum.is_null() { None } else { Some(unsafe { get_mut(loss_sum) }?) };
        let e = s.evaluate(&Kernels::TARGET, l, x).map_err(of_session)?;
        *c = e.correct;
        if let Some(o) = ls {
            *o = e.loss_sum;
        }
        Ok(TAILOR_OK)
    })())
}

/// Updates taken so far (0 if `train` was not started).
///
/// # Safety
/// `train` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tailor_train_steps(train: *mut TailorTrain) -> u64 {
    session(train).map_or(0, |s| s.steps())
}

/// The int8 model's features for a classifier head: the outputs of its
/// last hidden layer for one sample (bytes on the grid of
/// `tailor_model_feature_grid`), written to `out` (at least as many as the
/// last layer's inputs). Returns how many, or a `TAILOR_ERR_*` code
/// (`TAILOR_ERR_SETTING` for a model without a hidden layer). `scratch` as
/// for `tailor_classify`.
///
/// # Safety
/// Each pointer is NULL or valid for its length.
#[no_mangle]
pub unsafe extern "C" fn tailor_model_features(
    model: *const TailorModel,
    input: *const u8,
    input_len: usize,
    scratch: *mut core::ffi::c_void,
    scratch_bytes: usize,
    out: *mut u8,
    out_len: usize,
) -> i32 {
    status((|| {
        // SAFETY: the caller's contract for each pointer.
        let m = unsafe { get(model) }?.loaded()?;
        let spec = m.spec();
        if spec.depth() < 2 {
            return Err(TAILOR_ERR_SETTING);
        }
        let n = spec.layer(spec.depth() - 1).inputs;
        let (x, s, o) = unsafe {
            (slice(input, input_len)?, slice_mut(scratch as *mut i16, scratch_bytes / 2)?, slice_mut(out, out_len)?)
        };
        if x.len() != spec.inputs() || s.len() < m.scratch_len() || o.len() < n {
            return Err(TAILOR_ERR_LENGTH);
        }
        Ok(m.features(&tailor_core::quant::QKernels::BEST, x, s, o) as i32)
    })())
}

/// The grid of `tailor_model_features`' bytes: feature `b` is
/// `scale · (b − zero_point)`, the `TAILOR_INPUT_AFFINE` of a head.
///
/// # Safety
/// Each pointer is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tailor_model_feature_grid(
    model: *const TailorModel,
    scale: *mut f32,
    zero_point: *mut i32,
) -> i32 {
    status((|| {
        // SAFETY: the caller's contract for each pointer.
        let m = unsafe { get(model) }?.loaded()?;
        if m.spec().depth() < 2 {
            return Err(TAILOR_ERR_SETTING);
        }
        let (s, z) = unsafe { (get_mut(scale)?, get_mut(zero_point)?) };
        let p = m.layer(m.spec().depth() - 1).params;
        (*s, *z) = (p.in_scale, p.in_zp);
        Ok(TAILOR_OK)
    })())
}

/// The parameters as they are now: `*params` points into the run's
/// parameter buffer, `*len` floats, layer after layer (`weight[out][in]`,
/// then `bias[out]`, as PyTorch's state dict stores each `Linear`).
///
/// # Safety
/// Each pointer is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn tailor_train_params(train: *mut TailorTrain, params: *mut *const f32, len: *mut usize) -> i32 {
    status((|| {
        let s = session(train)?;
        // SAFETY: the caller's contract for each pointer.
        let (p, l) = unsafe { (get_mut(params)?, get_mut(len)?) };
        (*p, *l) = (s.params().as_ptr(), s.params().len());
        Ok(TAILOR_OK)
    })())
}
