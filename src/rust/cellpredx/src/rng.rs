//! A small seeded generator for the core's own sampling (minibatches, neighbour draws).
//!
//! libtorch's generator is global state shared with everything else in the process; sampling
//! with our own keeps a training run's batches a function of its seed alone, on any device.

/// SplitMix64 (Steele, Lea & Flood 2014): fast, well mixed, and trivially seedable.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; the bias is below 2⁻³² for our sizes).
    pub fn below(&mut self, n: usize) -> usize {
        (((self.next_u64() >> 32) * n as u64) >> 32) as usize
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(f64::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// Draws minibatches of distinct items, epoch after epoch: each epoch is a fresh permutation,
/// so every cell is seen once per pass over the data.
#[derive(Debug, Clone)]
pub struct EpochSampler {
    order: Vec<usize>,
    next: usize,
}

impl EpochSampler {
    pub fn new(n: usize) -> Self {
        EpochSampler { order: (0..n).collect(), next: n }
    }

    pub fn batch(&mut self, size: usize, rng: &mut SplitMix64) -> Vec<usize> {
        let mut batch = Vec::with_capacity(size);
        while batch.len() < size.min(self.order.len()) {
            if self.next == self.order.len() {
                rng.shuffle(&mut self.order);
                self.next = 0;
            }
            let item = self.order[self.next];
            self.next += 1;
            // An epoch boundary inside a batch could repeat an item; the batch keeps it once.
            if !batch.contains(&item) {
                batch.push(item);
            }
        }
        batch
    }
}

/// Draws items with probability proportional to fixed weights (with replacement), by binary
/// search in the cumulative weights.
#[derive(Debug, Clone)]
pub struct WeightedSampler {
    cumulative: Vec<f64>,
}

impl WeightedSampler {
    /// `weights` must be non-negative with a positive sum.
    pub fn new(weights: &[f64]) -> Self {
        let mut total = 0.0;
        let cumulative = weights
            .iter()
            .map(|&w| {
                total += w.max(0.0);
                total
            })
            .collect();
        WeightedSampler { cumulative }
    }

    pub fn batch(&mut self, size: usize, rng: &mut SplitMix64) -> Vec<usize> {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        (0..size)
            .map(|_| {
                let target = rng.uniform() * total;
                self.cumulative.partition_point(|&c| c <= target).min(self.cumulative.len() - 1)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream() {
        let (mut a, mut b) = (SplitMix64::new(7), SplitMix64::new(7));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
        assert_ne!(SplitMix64::new(7).next_u64(), SplitMix64::new(8).next_u64());
    }

    #[test]
    fn draws_stay_in_range_and_look_uniform() {
        let mut rng = SplitMix64::new(1);
        let mut counts = [0usize; 5];
        for _ in 0..50_000 {
            counts[rng.below(5)] += 1;
        }
        assert!(counts.iter().all(|&c| (9_000..11_000).contains(&c)), "{counts:?}");
        let normals: Vec<f64> = (0..50_000).map(|_| rng.normal()).collect();
        let mean = normals.iter().sum::<f64>() / normals.len() as f64;
        let var = normals.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / normals.len() as f64;
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.03, "mean {mean}, var {var}");
    }

    #[test]
    fn weighted_draws_follow_the_weights() {
        let mut rng = SplitMix64::new(5);
        let mut sampler = WeightedSampler::new(&[1.0, 0.0, 3.0]);
        let draws = sampler.batch(40_000, &mut rng);
        let count = |i| draws.iter().filter(|&&d| d == i).count();
        assert_eq!(count(1), 0);
        assert!((9_000..11_000).contains(&count(0)) && (29_000..31_000).contains(&count(2)));
    }

    #[test]
    fn an_epoch_visits_every_item_once() {
        let mut rng = SplitMix64::new(3);
        let mut sampler = EpochSampler::new(10);
        let mut seen: Vec<usize> = sampler.batch(4, &mut rng);
        seen.extend(sampler.batch(4, &mut rng));
        seen.extend(sampler.batch(2, &mut rng));
        seen.sort_unstable();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
        let big = sampler.batch(50, &mut rng);
        assert_eq!(big.len(), 10);
    }
}
