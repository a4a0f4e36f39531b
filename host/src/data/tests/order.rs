use proptest::prelude::*;

use super::*;

#[test]
fn epoch_order_keeps_short_last_batch() {
    let o = EpochOrder::new(10, None, 0);
    let sizes: Vec<usize> = o.batches(4).map(<[u32]>::len).collect();
    assert_eq!(sizes, [4, 4, 2]);
    assert_eq!(o.indices(), (0..10).collect::<Vec<u32>>());
    assert_eq!(EpochOrder::num_batches(10, 4), 3);
    assert_eq!(EpochOrder::num_batches(60000, 64), 938);
    assert_eq!(EpochOrder::num_batches(64, 64), 1);
    assert_eq!(EpochOrder::num_batches(0, 64), 0);
    assert_eq!(EpochOrder::num_batches(5, 0), 0);
    assert_eq!(EpochOrder::new(60000, Some(1), 0).batches(64).len(), 938);
}

#[test]
fn epoch_order_is_deterministic_per_seed_and_epoch() {
    let o = |seed, epoch| EpochOrder::new(1000, Some(seed), epoch);
    assert_eq!(o(7, 3), o(7, 3));
    assert_ne!(o(7, 3), o(7, 4));
    assert_ne!(o(7, 3), o(8, 3));
    assert_ne!(o(7, 0).indices(), EpochOrder::new(1000, None, 0).indices());
    // Unshuffled order ignores the epoch.
    assert_eq!(EpochOrder::new(5, None, 0), EpochOrder::new(5, None, 9));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn epoch_order_is_a_permutation_batched_in_order(
        n in 0usize..300, seed in any::<u64>(), epoch in 0u32..100, bs in 1usize..70
    ) {
        let o = EpochOrder::new(n, Some(seed), epoch);
        let mut sorted = o.indices().to_vec();
        sorted.sort_unstable();
        prop_assert_eq!(sorted, (0..n as u32).collect::<Vec<_>>());
        let batches: Vec<&[u32]> = o.batches(bs).collect();
        prop_assert_eq!(batches.len(), EpochOrder::num_batches(n, bs));
        prop_assert!(batches.iter().all(|b| b.len() == bs || b.len() == n % bs));
        prop_assert_eq!(batches.concat(), o.indices());
    }
}
