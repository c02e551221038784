//! Where a training step's time goes (a profiling aid, not a benchmark).
use std::time::Instant;

use candle_core::Device;
use dialogym_policies::nn::{Bags, EmbeddingBag, Params};

fn main() -> anyhow::Result<()> {
    let d = Device::Cpu;
    let mut p = Params::new(&d);
    let mut rng = dialogym_engine::seed::turn_rng(0, 0, dialogym_engine::seed::Stream::Learner);
    let bag = EmbeddingBag::new(&mut p, "t", 16384, 256, 16, &mut rng)?;
    let states: Vec<Vec<u32>> =
        (0..256).map(|b| (0..150).map(|i| ((b * 150 + i) * 7919 % 16384) as u32).collect()).collect();
    for _ in 0..3 {
        let t = Instant::now();
        let bags = Bags::new(states.iter().map(Vec::as_slice), &d)?;
        let t0 = t.elapsed();
        let s = bag.forward(&bags)?;
        let t1 = t.elapsed();
        let g = s.sqr()?.mean_all()?.backward()?;
        println!("pack {t0:?} fwd {t1:?} fwd+bwd {:?} grads {}", t.elapsed(), g.get_ids().count());
    }
    Ok(())
}
