//! [`EpochOrder`]: which samples each batch of an epoch takes.

use tailor_core::rng::Rng;

/// Sample order for one epoch, like `DataLoader(batch_size, shuffle)` with
/// `drop_last=False`: the last batch may be short (60000 / 64 → 938 batches).
///
/// The shuffle depends only on `(seed, epoch)`, never on earlier epochs, so
/// a run resumed at epoch `e` sees the same order as an uninterrupted one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EpochOrder {
    order: Vec<u32>,
}

/// SplitMix64's finalizer: a bijection on `u64` that mixes every bit.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl EpochOrder {
    /// Indices `0..n`, shuffled with a seed derived from `(seed, epoch)` when
    /// `shuffle_seed` is set, in order otherwise.
    ///
    /// Panics if `n` exceeds `u32::MAX` (datasets here are far smaller).
    pub fn new(n: usize, shuffle_seed: Option<u64>, epoch: u32) -> Self {
        let n32 = u32::try_from(n).expect("EpochOrder: more than u32::MAX samples");
        let mut order: Vec<u32> = (0..n32).collect();
        if let Some(seed) = shuffle_seed {
            Rng::new(Self::epoch_seed(seed, epoch)).shuffle(&mut order);
        }
        EpochOrder { order }
    }

    /// The RNG seed for one epoch's shuffle. `mix64` is a bijection, so
    /// different epochs of one run never share a seed, and the XOR with a
    /// mixed epoch keeps epoch `e` of seed `s` unrelated to epoch `e+1` of
    /// seed `s-1` (as `seed + epoch` would not).
    pub fn epoch_seed(seed: u64, epoch: u32) -> u64 {
        mix64(seed ^ mix64(u64::from(epoch) ^ 0x5348_5546_464c_4531))
    }

    /// All indices in this epoch's order.
    pub fn indices(&self) -> &[u32] {
        &self.order
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Consecutive batches of `batch_size` indices; the last one may be
    /// shorter. Panics if `batch_size` is 0 (the CLI rejects it first).
    pub fn batches(&self, batch_size: usize) -> impl ExactSizeIterator<Item = &[u32]> + '_ {
        assert!(batch_size > 0, "EpochOrder::batches: batch_size must be > 0");
        self.order.chunks(batch_size)
    }

    /// How many batches [`Self::batches`] yields for `n` samples (0 if
    /// `batch_size` is 0).
    pub fn num_batches(n: usize, batch_size: usize) -> usize {
        n.checked_div(batch_size).map_or(0, |_| n.div_ceil(batch_size))
    }
}
