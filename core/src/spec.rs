//! A model's shape as data: a list of dense layers, each with its inputs,
//! outputs and activation.
//!
//! Every buffer a model needs is a flat slice whose length is a `const fn`
//! of its [`Spec`] (and of the batch size, for activations), so a firmware
//! can size `static`s at compile time and the host allocates once:
//!
//! ```
//! use tailor_core::spec::Spec;
//! const SPEC: Spec = Spec::mlp(&[784, 32, 10]);
//! static PARAMS: [f32; SPEC.params()] = [0.0; SPEC.params()];
//! assert_eq!(PARAMS.len(), 32 * 785 + 10 * 33);
//! ```
//!
//! Parameters are laid out layer after layer, each as PyTorch stores a
//! `Linear`: `weight[out][in]` row-major, then `bias[out]`.

use core::fmt;

/// Most dense layers a model may have (hidden layers + the output layer).
pub const MAX_LAYERS: usize = 16;

/// What follows a layer's affine map. `#[repr(u8)]` values are the file
/// formats' codes; new kinds get new codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Activation {
    /// The identity: the output layer's logits.
    None = 0,
    Relu = 1,
}

impl Activation {
    /// The activation with file code `code`.
    pub const fn from_code(code: u32) -> Option<Activation> {
        match code {
            0 => Some(Activation::None),
            1 => Some(Activation::Relu),
            _ => None,
        }
    }

    pub const fn code(self) -> u32 {
        self as u32
    }
}

/// One dense layer of a [`Spec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layer {
    pub inputs: usize,
    pub outputs: usize,
    pub activation: Activation,
}

impl Layer {
    /// Floats of `weight` and `bias`.
    pub const fn params(&self) -> usize {
        self.outputs * (self.inputs + 1)
    }
}

/// Why a list of layers is not a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SpecError {
    /// No layers, or more than [`MAX_LAYERS`].
    Depth { layers: usize },
    /// A layer with no inputs or no outputs, or wider than `u32`.
    Width { layer: usize },
    /// Layer `layer` takes `inputs`, but the layer before gives `previous`.
    Chain { layer: usize, inputs: usize, previous: usize },
    /// A buffer for this shape would not fit in memory (`usize` overflow).
    TooLarge,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SpecError::Depth { layers } => write!(f, "a model has 1 to {MAX_LAYERS} dense layers, not {layers}"),
            SpecError::Width { layer } => write!(f, "layer {layer} has no inputs or no outputs (or more than 2^32)"),
            SpecError::Chain { layer, inputs, previous } => {
                write!(f, "layer {layer} takes {inputs} inputs but layer {} gives {previous}", layer - 1)
            }
            SpecError::TooLarge => write!(f, "the model's buffers would not fit in memory"),
        }
    }
}

/// The shape of an MLP: up to [`MAX_LAYERS`] dense layers, each feeding the
/// next. `Copy` and fixed-size, so it lives in a `const` or a `static`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// `dims[0]` inputs, then the outputs of each layer.
    dims: [u32; MAX_LAYERS + 1],
    acts: [Activation; MAX_LAYERS],
    depth: u8,
}

impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Spec({self})")
    }
}

/// `784-512-512-10`, with `(none)` after layers whose activation is not the
/// usual one (ReLU for hidden layers, none for the last).
impl fmt::Display for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.dims[0])?;
        for i in 0..self.depth() {
            write!(f, "-{}", self.dims[i + 1])?;
            let usual = if i + 1 == self.depth() { Activation::None } else { Activation::Relu };
            if self.acts[i] != usual {
                write!(f, "({:?})", self.acts[i])?;
            }
        }
        Ok(())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Spec {
    fn format(&self, f: defmt::Formatter) {
        defmt::write!(f, "{=[?]}", self.dims())
    }
}

impl Spec {
    /// The usual MLP on `dims` (inputs, then each layer's outputs): ReLU
    /// after every hidden layer, logits out. For `const` contexts: panics
    /// (at compile time there) on a bad shape; see [`Self::try_mlp`].
    pub const fn mlp(dims: &[usize]) -> Spec {
        match Self::try_mlp(dims) {
            Ok(s) => s,
            Err(_) => panic!("Spec::mlp: bad dims (1 to MAX_LAYERS layers, each 1..2^32 wide)"),
        }
    }

    /// [`Self::mlp`], checked.
    pub const fn try_mlp(dims: &[usize]) -> Result<Spec, SpecError> {
        if dims.len() < 2 || dims.len() > MAX_LAYERS + 1 {
            return Err(SpecError::Depth { layers: dims.len().saturating_sub(1) });
        }
        let depth = dims.len() - 1;
        let mut s = Spec { dims: [0; MAX_LAYERS + 1], acts: [Activation::None; MAX_LAYERS], depth: depth as u8 };
        let mut i = 0;
        while i < dims.len() {
            if dims[i] == 0 || dims[i] > u32::MAX as usize {
                return Err(SpecError::Width { layer: if i == 0 { 0 } else { i - 1 } });
            }
            s.dims[i] = dims[i] as u32;
            if i < depth {
                s.acts[i] = if i + 1 < depth { Activation::Relu } else { Activation::None };
            }
            i += 1;
        }
        s.check_size()
    }

    /// A model from explicit layers (any activations).
    pub fn from_layers(layers: &[Layer]) -> Result<Spec, SpecError> {
        if layers.is_empty() || layers.len() > MAX_LAYERS {
            return Err(SpecError::Depth { layers: layers.len() });
        }
        let mut s = Spec { dims: [0; MAX_LAYERS + 1], acts: [Activation::None; MAX_LAYERS], depth: layers.len() as u8 };
        for (i, l) in layers.iter().enumerate() {
            let too_wide = |n: usize| n == 0 || n > u32::MAX as usize;
            if too_wide(l.inputs) || too_wide(l.outputs) {
                return Err(SpecError::Width { layer: i });
            }
            if i > 0 && l.inputs != layers[i - 1].outputs {
                return Err(SpecError::Chain { layer: i, inputs: l.inputs, previous: layers[i - 1].outputs });
            }
            s.dims[i] = l.inputs as u32;
            s.dims[i + 1] = l.outputs as u32;
            s.acts[i] = l.activation;
        }
        s.check_size()
    }

    /// Refuses shapes whose buffers overflow `usize` (so every size method
    /// below is exact). The largest buffer is the workspace of a big batch;
    /// callers check `activations(batch)` with [`Self::checked_activations`].
    const fn check_size(self) -> Result<Spec, SpecError> {
        let mut total: usize = 0;
        let mut i = 0;
        while i < self.depth as usize {
            let (a, b) = (self.dims[i] as usize, self.dims[i + 1] as usize);
            let p = match b.checked_mul(a + 1) {
                Some(p) => p,
                None => return Err(SpecError::TooLarge),
            };
            // Packed copies round each tensor up to a cache line: keep room.
            total = match total.checked_add(p + 32) {
                Some(t) => t,
                None => return Err(SpecError::TooLarge),
            };
            i += 1;
        }
        if total > usize::MAX / 16 {
            return Err(SpecError::TooLarge);
        }
        Ok(self)
    }

    /// Dense layers (hidden layers + the output layer).
    pub const fn depth(&self) -> usize {
        self.depth as usize
    }

    /// Features per sample.
    pub const fn inputs(&self) -> usize {
        self.dims[0] as usize
    }

    /// Outputs of the last layer (classes).
    pub const fn outputs(&self) -> usize {
        self.dims[self.depth as usize] as usize
    }

    /// Layer `i` (panics if `i >= depth()`).
    pub const fn layer(&self, i: usize) -> Layer {
        assert!(i < self.depth as usize, "Spec::layer: index past the last layer");
        Layer { inputs: self.dims[i] as usize, outputs: self.dims[i + 1] as usize, activation: self.acts[i] }
    }

    pub fn layers(&self) -> impl ExactSizeIterator<Item = Layer> + '_ {
        (0..self.depth()).map(|i| self.layer(i))
    }

    /// Widths, inputs first (`[784, 512, 512, 10]`).
    pub fn dims(&self) -> &[u32] {
        &self.dims[..=self.depth as usize]
    }

    /// Widths of the hidden layers (`[512, 512]`; empty for a single layer).
    pub fn hidden(&self) -> &[u32] {
        &self.dims[1..self.depth as usize]
    }

    /// Floats of all parameters (weights and biases).
    pub const fn params(&self) -> usize {
        self.param_offset(self.depth as usize)
    }

    /// Where layer `i`'s weight starts in the flat parameters
    /// (`params()` for `i == depth()`).
    pub const fn param_offset(&self, i: usize) -> usize {
        let mut off = 0;
        let mut j = 0;
        while j < i {
            off += self.dims[j + 1] as usize * (self.dims[j] as usize + 1);
            j += 1;
        }
        off
    }

    /// Multiply-accumulates of one inference (weights only).
    pub const fn macs(&self) -> usize {
        let mut n = 0;
        let mut j = 0;
        while j < self.depth as usize {
            n += self.dims[j + 1] as usize * self.dims[j] as usize;
            j += 1;
        }
        n
    }

    /// The widest of the inputs and every layer's outputs.
    pub const fn max_width(&self) -> usize {
        let mut m = 0;
        let mut j = 0;
        while j <= self.depth as usize {
            if self.dims[j] as usize > m {
                m = self.dims[j] as usize;
            }
            j += 1;
        }
        m
    }

    /// Floats of gradient scratch [`crate::Mlp::train_step`] needs with
    /// `rows` rows per block of a layer's weight gradient (at least 1; one
    /// block per thread of a pool): the bias gradients, then `rows` rows of
    /// the widest layer input.
    pub const fn train_scratch(&self, rows: usize) -> usize {
        let mut widest = 0;
        let mut j = 0;
        while j < self.depth as usize {
            if self.dims[j] as usize > widest {
                widest = self.dims[j] as usize;
            }
            j += 1;
        }
        self.outputs_sum() + rows * widest
    }

    /// Sum of the outputs of layers `0..i`.
    pub const fn outputs_before(&self, i: usize) -> usize {
        let mut n = 0;
        let mut j = 1;
        while j <= i {
            n += self.dims[j] as usize;
            j += 1;
        }
        n
    }

    /// Sum of every layer's outputs.
    pub const fn outputs_sum(&self) -> usize {
        let mut n = 0;
        let mut j = 1;
        while j <= self.depth as usize {
            n += self.dims[j] as usize;
            j += 1;
        }
        n
    }

    /// Floats of a training workspace for batches of up to `batch` rows:
    /// the inputs, every layer's outputs and their gradients.
    pub const fn activations(&self, batch: usize) -> usize {
        batch * (self.inputs() + 2 * self.outputs_sum())
    }

    /// [`Self::activations`], or `None` if it overflows `usize`.
    pub const fn checked_activations(&self, batch: usize) -> Option<usize> {
        match (2 * self.outputs_sum() + self.inputs()).checked_mul(batch) {
            Some(n) => Some(n),
            None => None,
        }
    }

    /// Floats of an inference-only workspace for `batch` rows: the inputs
    /// and every layer's outputs, no gradients.
    pub const fn inference_activations(&self, batch: usize) -> usize {
        batch * (self.inputs() + self.outputs_sum())
    }

    /// Where layer `i`'s input starts in a workspace for `batch` rows
    /// (`i == depth()` gives the logits).
    pub const fn act_offset(&self, i: usize, batch: usize) -> usize {
        let mut off = 0;
        let mut j = 0;
        while j < i {
            off += self.dims[j] as usize;
            j += 1;
        }
        off * batch
    }

    /// Where the gradient of layer `i`'s output (`1 ≤ i ≤ depth()`; the
    /// output of layer `i - 1`) starts in a training workspace.
    pub const fn grad_offset(&self, i: usize, batch: usize) -> usize {
        let mut off = self.inputs() + self.outputs_sum();
        let mut j = 1;
        while j < i {
            off += self.dims[j] as usize;
            j += 1;
        }
        off * batch
    }
}

/// PyTorch state-dict names of layer `i`'s weight and bias, as the
/// tutorial's `nn.Sequential` numbers them (a `Linear`, then its ReLU).
pub fn tensor_names(i: usize) -> [&'static str; 2] {
    [WEIGHT_NAMES[i], BIAS_NAMES[i]]
}

macro_rules! names {
    ($suffix:literal; $($i:literal),*) => { [$(concat!("linear_relu_stack.", $i, ".", $suffix)),*] };
}
const WEIGHT_NAMES: [&str; MAX_LAYERS] = names!("weight"; 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
const BIAS_NAMES: [&str; MAX_LAYERS] = names!("bias"; 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::format;

    #[test]
    fn seed_model_sizes() {
        const S: Spec = Spec::mlp(&[784, 512, 512, 10]);
        assert_eq!(S.params(), 669_706);
        assert_eq!(S.depth(), 3);
        assert_eq!(S.macs(), 784 * 512 + 512 * 512 + 5120);
        assert_eq!(S.param_offset(1), 512 * 785);
        assert_eq!(S.activations(2), 2 * (784 + 2 * 1034));
        assert_eq!(S.act_offset(3, 2), 2 * (784 + 1024));
        assert_eq!(S.grad_offset(1, 2), 2 * (784 + 1034));
        assert_eq!(S.grad_offset(3, 2), 2 * (784 + 1034 + 1024));
        assert_eq!(S.hidden(), &[512, 512]);
        assert_eq!(format!("{S}"), "784-512-512-10");
        assert_eq!(tensor_names(2), ["linear_relu_stack.4.weight", "linear_relu_stack.4.bias"]);
    }

    #[test]
    fn any_depth_and_bad_shapes() {
        let lr = Spec::mlp(&[5, 3]);
        assert_eq!((lr.depth(), lr.params(), lr.hidden().len()), (1, 18, 0));
        assert_eq!(lr.layer(0).activation, Activation::None);
        let deep = Spec::try_mlp(&[4; MAX_LAYERS + 1]).unwrap();
        assert_eq!(deep.depth(), MAX_LAYERS);
        assert!((0..MAX_LAYERS - 1).all(|i| deep.layer(i).activation == Activation::Relu));
        assert_eq!(Spec::try_mlp(&[4; MAX_LAYERS + 2]), Err(SpecError::Depth { layers: MAX_LAYERS + 1 }));
        assert_eq!(Spec::try_mlp(&[4]), Err(SpecError::Depth { layers: 0 }));
        assert_eq!(Spec::try_mlp(&[4, 0, 2]), Err(SpecError::Width { layer: 0 }));
        assert_eq!(Spec::try_mlp(&[usize::MAX / 2, usize::MAX / 2]), Err(SpecError::Width { layer: 0 }));
        let l = |i, o| Layer { inputs: i, outputs: o, activation: Activation::Relu };
        assert_eq!(Spec::from_layers(&[l(3, 4), l(5, 2)]), Err(SpecError::Chain { layer: 1, inputs: 5, previous: 4 }));
        let s = Spec::from_layers(&[l(3, 4), l(4, 2)]).unwrap();
        assert_eq!(format!("{s}"), "3-4-2(Relu)");
    }
}
