//! Measurements of this machine's libtorch set-up, for `make bench` and bug reports.

use crate::error::Result;
use crate::model::{CellPredXNet, NetworkShape};
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

/// Milliseconds per training step of the CellPredX network on random dense minibatches
/// (forward, cross-entropy, attention, backward, SGD update), after `warmup` untimed steps.
/// The encoder's first layer dominates, as in real training.
pub fn training_step_ms(shape: NetworkShape, batch: i64, steps: usize, warmup: usize, device: Device) -> Result<f64> {
    let (vs, net, x, y) = crate::train::seeded(0, || -> Result<_> {
        let vs = nn::VarStore::new(device);
        let net = CellPredXNet::new(&vs.root(), shape);
        let x = Tensor::f_rand([batch, shape.input_dim], (Kind::Float, device))?;
        let y = Tensor::f_randint(shape.n_classes, [batch], (Kind::Int64, device))?;
        Ok((vs, net, x, y))
    })?;
    let mut opt = nn::Sgd { momentum: 0.9, ..Default::default() }.build(&vs, 0.01)?;
    let mut step = || -> Result<()> {
        let out = net.forward(&x);
        let attention = net.attention(&out.embedding, true)?;
        let ce = out.logits.f_cross_entropy_loss::<Tensor>(&y, None, tch::Reduction::Mean, -100, 0.0)?;
        let loss = ce + attention.f_mean(Kind::Float)? * 1e-3;
        opt.backward_step(&loss);
        Ok(())
    };
    for _ in 0..warmup {
        step()?;
    }
    let start = Instant::now();
    for _ in 0..steps {
        step()?;
    }
    if let Device::Cuda(_) = device {
        tch::Cuda::synchronize(0);
    }
    Ok(start.elapsed().as_secs_f64() * 1000.0 / steps.max(1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_takes_measurable_time() {
        let ms = training_step_ms(NetworkShape::new(100, 3), 32, 3, 1, Device::Cpu).unwrap();
        assert!(ms > 0.0 && ms.is_finite());
    }
}
