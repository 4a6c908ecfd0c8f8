//! A trained network's contrastive encoder made twice as wide without changing what the network
//! computes (Net2WiderNet, Chen, Goodfellow & Shlens 2016): every channel of the three stages is
//! copied, and the layer that reads a copied channel splits its weight between the two copies
//! (shares ½ ± δ, random δ, summing to the original weight, so that the copies learn apart). The
//! unit-length embedding of the wider encoder is the old one with every entry copied and divided
//! by √2; the classifier's √D rescaling undoes that, so its first layer splits its weights too.
//! Training then starts where the narrow network stood, with twice the encoder's channels to use.
use anyhow::{ensure, Context, Result};
use tch::{nn, Kind, Tensor};

use super::{fill_variables, ClassifierInput, ModelConfig};

/// Largest δ of a split: the two copies of a channel are read with weights ½ + δ and ½ − δ.
const SPLIT: f64 = 0.25;

/// Copies `from` (a network of `from_cfg`) into `to` (built with `to_cfg`: the same network with
/// the contrastive encoder twice as wide), widening the encoder and the classifier's first layer
/// and copying every other variable as it is.
pub fn widen_encoder(
    from: &nn::VarStore,
    from_cfg: &ModelConfig,
    to: &mut nn::VarStore,
    to_cfg: &ModelConfig,
) -> Result<()> {
    let narrow = from_cfg.encoder_channels();
    ensure!(
        to_cfg.encoder_channels() == narrow.map(|c| 2 * c),
        "widening needs an encoder of twice the channels: {:?} → {:?}",
        narrow,
        to_cfg.encoder_channels()
    );
    ensure!(
        from_cfg.encoder_convs == 1 && to_cfg.encoder_convs == 1,
        "widening is for one convolution per stage"
    );
    ensure!(
        !from_cfg.use_reconstruction && !to_cfg.use_reconstruction,
        "widening is for networks without the reconstruction decoder"
    );
    ensure!(
        from_cfg.channels() == to_cfg.channels()
            && from_cfg.classifier_input == to_cfg.classifier_input
            && from_cfg.hidden == to_cfg.hidden
            && from_cfg.standardize == to_cfg.standardize,
        "only the encoder's width may differ"
    );
    let source = from.variables();
    let device = to.device();
    let get = |name: &str| -> Result<Tensor> {
        Ok(source
            .get(name)
            .with_context(|| format!("the network to widen has no variable {name}"))?
            .to_device(device))
    };
    // Copy j of a stage's channels reads channel j mod C; `share[k]` is how much of the next
    // layer's weight for a channel of stage k goes to each copy.
    let copies = |c: i64| Tensor::arange(2 * c, (Kind::Int64, device)).remainder(c);
    let share: Vec<Tensor> = narrow
        .iter()
        .map(|&c| {
            let delta = (Tensor::rand([c], (Kind::Float, device)) * 2.0 - 1.0) * SPLIT;
            Tensor::cat(&[&delta + 0.5, 0.5 - &delta], 0)
        })
        .collect();
    let parts = match to_cfg.classifier_input {
        ClassifierInput::Contrast => 1,
        ClassifierInput::QueryAndContrast => 2,
    };
    fill_variables(to, |name, _| {
        let widened = if let Some(rest) = name.strip_prefix("contr.enc.stage") {
            let stage: usize = rest[..1].parse().context("stage number")?;
            let k = stage - 1;
            let old = get(name)?.index_select(0, &copies(narrow[k]));
            if rest.ends_with("conv.weight") && k > 0 {
                let c_in = narrow[k - 1];
                old.index_select(1, &copies(c_in)) * share[k - 1].view([1, 2 * c_in, 1, 1])
            } else {
                old
            }
        } else if name == "cls.fc1.weight" {
            // Input: `parts` blocks of C3 × 8 × 8 entries, channel-major.
            let c3 = narrow[2];
            let per_channel = 64;
            let entry = Tensor::arange(2 * c3 * per_channel, (Kind::Int64, device));
            let channel = entry.divide_scalar_mode(per_channel, "floor");
            let src_in_block = channel.remainder(c3) * per_channel + entry.remainder(per_channel);
            let factor = share[2].index_select(0, &channel);
            let block = c3 * per_channel;
            let index = Tensor::cat(
                &(0..parts)
                    .map(|p| &src_in_block + p * block)
                    .collect::<Vec<_>>(),
                0,
            );
            let factor = factor.repeat([parts]);
            get(name)?.index_select(1, &index) * factor.view([1, -1])
        } else {
            get(name)?
        };
        Ok(Some(widened))
    })
    .context("widening the contrastive encoder")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GcNet;
    use tch::{nn::VarStore, Device};

    #[test]
    fn the_wider_network_computes_what_the_narrow_one_did() {
        tch::manual_seed(5);
        let narrow_cfg = ModelConfig::shipped_variant(0.25);
        let wide_cfg = ModelConfig {
            encoder_width: Some(0.5),
            ..narrow_cfg
        };
        let narrow_vs = VarStore::new(Device::Cpu);
        let narrow = GcNet::new(&narrow_vs.root(), narrow_cfg);
        // Batch-norm statistics that are not the identity, as after training.
        let x = Tensor::rand([16, 1, 64, 64], (Kind::Float, Device::Cpu));
        let _ = narrow.forward_t(&x, None, true);
        let mut wide_vs = VarStore::new(Device::Cpu);
        let wide = GcNet::new(&wide_vs.root(), wide_cfg);
        widen_encoder(&narrow_vs, &narrow_cfg, &mut wide_vs, &wide_cfg).expect("widen");
        let q = Tensor::rand([4, 1, 64, 64], (Kind::Float, Device::Cpu));
        let a = narrow.forward_t(&q, None, false);
        let b = wide.forward_t(&q, None, false);
        assert_eq!(b.emb_query.size()[1], 2 * a.emb_query.size()[1]);
        let diff = (&a.logits - &b.logits).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "logits moved by {diff}");
        let dist = |o: &crate::model::GcNetOutput| {
            (&o.emb_query - &o.emb_reference).norm().double_value(&[])
        };
        assert!((dist(&a) - dist(&b)).abs() < 1e-4);
        // The copies of a channel are read with different weights (they will learn apart).
        let w = wide_vs.variables()["contr.enc.stage2.conv.weight"].shallow_clone();
        let (first, copy) = (w.narrow(1, 0, 1), w.narrow(1, 8, 1));
        assert!((first - copy).abs().max().double_value(&[]) > 1e-6);
        // Anything but a doubling is refused.
        let mut other = VarStore::new(Device::Cpu);
        let other_cfg = ModelConfig {
            encoder_width: Some(0.75),
            ..narrow_cfg
        };
        let _ = GcNet::new(&other.root(), other_cfg);
        assert!(widen_encoder(&narrow_vs, &narrow_cfg, &mut other, &other_cfg).is_err());
    }
}
