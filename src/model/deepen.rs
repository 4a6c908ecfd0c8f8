//! A trained network's contrastive encoder made deeper without changing what the network
//! computes: stages 2 and 3 get a second convolution as a residual block, ReLU(y + BN(conv(y))),
//! whose batch norm starts with scale and shift 0 (Goyal et al. 2017, "zero-γ" initialisation).
//! Such a block adds nothing, and y ≥ 0 after the stage's own ReLU, so the block passes y on
//! unchanged; its scale learns from the first step and the new convolution with it. Training
//! then starts where the shallower network stood, with two more convolutions to use.
use anyhow::{ensure, Context, Result};
use tch::{nn, Tensor};

use super::{fill_variables, ModelConfig};

/// Copies `from` (a network of `from_cfg`, one convolution per encoder stage) into `to` (built
/// with `to_cfg`: the same network with `encoder_convs` 2 and residual blocks), every shared
/// variable as it is, and the new blocks' batch-norm scale and shift set to 0.
pub fn deepen_encoder(
    from: &nn::VarStore,
    from_cfg: &ModelConfig,
    to: &mut nn::VarStore,
    to_cfg: &ModelConfig,
) -> Result<()> {
    ensure!(
        from_cfg.encoder_convs == 1,
        "deepening is for an encoder of one convolution per stage (this one has {})",
        from_cfg.encoder_convs
    );
    ensure!(
        to_cfg.encoder_convs == 2 && to_cfg.encoder_residual,
        "deepening makes residual blocks of a second convolution per stage"
    );
    ensure!(
        *to_cfg
            == ModelConfig {
                encoder_convs: 2,
                encoder_residual: true,
                ..*from_cfg
            },
        "only the encoder's depth may differ"
    );
    let source = from.variables();
    let device = to.device();
    fill_variables(to, |name, var| {
        if let Some(v) = source.get(name) {
            return Ok(Some(v.to_device(device)));
        }
        ensure!(
            name.starts_with("contr.enc.stage")
                && (name.contains(".conv2.") || name.contains(".bn2.")),
            "the network to deepen has no variable {name}"
        );
        // The new blocks' batch-norm scale and shift start at 0; the new convolution keeps its
        // random start and the norm its running statistics.
        let affine =
            name.contains(".bn2.") && (name.ends_with(".weight") || name.ends_with(".bias"));
        Ok(affine.then(|| Tensor::zeros_like(var)))
    })
    .context("deepening the contrastive encoder")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GcNet;
    use tch::{nn::VarStore, Device, Kind};

    #[test]
    fn the_deeper_network_computes_what_the_shallower_one_did_then_learns_apart() {
        tch::manual_seed(7);
        let cfg = ModelConfig::shipped_variant(0.25);
        let deep_cfg = ModelConfig {
            encoder_convs: 2,
            encoder_residual: true,
            ..cfg
        };
        let vs = VarStore::new(Device::Cpu);
        let net = GcNet::new(&vs.root(), cfg);
        // Batch-norm statistics that are not the identity, as after training.
        let x = Tensor::rand([16, 1, 64, 64], (Kind::Float, Device::Cpu));
        let _ = net.forward_t(&x, None, true);
        let mut deep_vs = VarStore::new(Device::Cpu);
        let deep = GcNet::new(&deep_vs.root(), deep_cfg);
        deepen_encoder(&vs, &cfg, &mut deep_vs, &deep_cfg).expect("deepen");
        let q = Tensor::rand([4, 1, 64, 64], (Kind::Float, Device::Cpu));
        let (a, b) = (
            net.forward_t(&q, None, false),
            deep.forward_t(&q, None, false),
        );
        let diff = (&a.logits - &b.logits).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "logits moved by {diff}");
        // In training mode too (batch statistics): the blocks add exactly 0.
        let (a, b) = (
            net.forward_t(&q, None, true),
            deep.forward_t(&q, None, true),
        );
        let diff = (&a.emb_query - &b.emb_query).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "embeddings moved by {diff}");
        // A gradient reaches the new blocks' scale, so they start to learn at the first step.
        let loss = deep
            .forward_t(&q, None, true)
            .logits
            .square()
            .sum(Kind::Float);
        loss.backward();
        let vars = deep_vs.variables();
        let scale = &vars["contr.enc.stage3.bn2.weight"];
        assert!(scale.abs().max().double_value(&[]) == 0.0);
        assert!(scale.grad().abs().max().double_value(&[]) > 0.0);
        // Another change of layout beside the depth is refused, as is deepening twice.
        let mut other = VarStore::new(Device::Cpu);
        let other_cfg = ModelConfig {
            hidden: 128,
            ..deep_cfg
        };
        let _ = GcNet::new(&other.root(), other_cfg);
        assert!(deepen_encoder(&vs, &cfg, &mut other, &other_cfg).is_err());
        let mut again = VarStore::new(Device::Cpu);
        let _ = GcNet::new(&again.root(), deep_cfg);
        assert!(deepen_encoder(&deep_vs, &deep_cfg, &mut again, &deep_cfg).is_err());
    }
}
