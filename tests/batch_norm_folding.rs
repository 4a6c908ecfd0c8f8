//! Folding the batch norms into the convolutions before them keeps what GCNet computes. In a
//! process of its own: its random network is seeded, and the max-unpooling of the generator's
//! decoder follows the encoder's pooling positions, so another test drawing from libtorch's one
//! global generator at the same time would change its network and could put a near-tie where
//! folding's last-bit rounding picks the other position.
use dgcn::model::{GcNet, ModelConfig};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

#[test]
fn folding_the_batch_norms_keeps_what_the_network_computes() {
    tch::manual_seed(7);
    let vs = VarStore::new(Device::Cpu);
    let config = ModelConfig {
        encoder_convs: 2,
        encoder_residual: true,
        ..ModelConfig::shipped_variant(0.25)
    };
    let mut net = GcNet::new(&vs.root(), config);
    // Batch norms as training leaves them: running statistics and scales far from 0 and 1,
    // and a generator whose last layer is no longer zero (so its decoder's folds count).
    tch::no_grad(|| {
        for (name, mut v) in vs.variables() {
            let fresh = if name.ends_with("running_var") {
                v.rand_like() * 2.0 + 0.2
            } else if name.ends_with("running_mean") || name.contains(".bn") {
                v.randn_like() * 0.5 + if name.ends_with("weight") { 1.0 } else { 0.0 }
            } else if name.contains("deconv1") {
                v.randn_like() * 0.05
            } else {
                continue;
            };
            v.copy_(&fresh);
        }
    });
    let x = Tensor::rand([3, 1, 64, 64], (Kind::Float, Device::Cpu));
    let run = |net: &GcNet| {
        tch::no_grad(|| {
            let g = net.generator.forward_t(&x, false);
            let (logits, distance) = net.eval_logits(&x, &g);
            (g, logits, distance)
        })
    };
    let (g0, l0, d0) = run(&net);
    let bn_scale = vs
        .variables()
        .get("contr.enc.stage2.bn2.weight")
        .map(|t| t.abs().max().double_value(&[]))
        .unwrap_or(0.0);
    assert!(bn_scale > 0.1, "the residual block's batch norm is in use");
    net.fold_batch_norms();
    net.fold_batch_norms(); // a second call changes nothing
    let (g1, l1, d1) = run(&net);
    let diff = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
    assert!(
        diff(&g0, &g1) < 1e-4,
        "reference differs by {}",
        diff(&g0, &g1)
    );
    assert!(diff(&l0, &l1) < 1e-3, "logits differ by {}", diff(&l0, &l1));
    assert!(
        diff(&d0, &d1) < 1e-4,
        "distance differs by {}",
        diff(&d0, &d1)
    );
    // The generator's edit is not trivial, so the decoder's folded batch norms were tested.
    assert!(diff(&g0, &x) > 1e-2);
}
