//! The blocks of Fig. 3. Each conv stage is conv 3×3 → batch norm → ReLU → 2×2 max pool (the
//! pool's indices are kept for the mirrored unpooling); decoders unpool then deconvolve.
//! The generator's decoder also receives the encoder's feature map at each resolution (skip
//! connections) and predicts a change to the input in logit space: without them an
//! encoder-decoder of this size can only output a blurred average face (measured: L1 to the true
//! neutral stalled at 0.117, worse than the query itself), which would make the reference useless.
use super::denoise::denoise;
use super::standardize::standardize;
use super::subspace::{FaceRegion, NeutralSubspace};
use tch::{nn, nn::ModuleT, Tensor};

/// The batch norms' ε (libtorch's default), named because folding them needs it.
const BN_EPS: f64 = 1e-5;

fn batch_norm(p: nn::Path, channels: i64) -> nn::BatchNorm {
    nn::batch_norm2d(
        p,
        channels,
        nn::BatchNormConfig {
            eps: BN_EPS,
            ..Default::default()
        },
    )
}

/// Folds an inference-mode batch norm into the (transposed) convolution before it, in place:
/// BN(conv(x)) = conv′(x) with w′ = w·s and b′ = (b − μ)·s + β, s = γ / √(σ² + ε), scaled along
/// the output channels (`out_dim` 0 for a convolution's weight, 1 for a transposed one's). The
/// variables change in their store, so a folded network is for inference only, never trained or
/// saved.
fn fold_batch_norm(ws: &Tensor, bs: &Option<Tensor>, bn: &nn::BatchNorm, out_dim: usize) {
    tch::no_grad(|| {
        let gamma = bn
            .ws
            .as_ref()
            .map_or_else(|| bn.running_var.ones_like(), |g| g.shallow_clone());
        let beta = bn
            .bs
            .as_ref()
            .map_or_else(|| bn.running_mean.zeros_like(), |b| b.shallow_clone());
        let scale = gamma / (&bn.running_var + BN_EPS).sqrt();
        let mut shape = vec![1i64; ws.dim()];
        shape[out_dim] = -1;
        let folded_w = ws * scale.view(shape.as_slice());
        let mut ws = ws.shallow_clone();
        ws.copy_(&folded_w);
        if let Some(b) = bs {
            let folded_b = (b - &bn.running_mean) * &scale + &beta;
            let mut b = b.shallow_clone();
            b.copy_(&folded_b);
        }
    });
}

struct ConvStage {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    /// Further conv → batch norm → ReLU at the same resolution (`convs` > 1; not in the paper).
    extra: Vec<(nn::Conv2D, nn::BatchNorm)>,
    /// The further convolutions add to their input (ReLU(y + BN(conv(y))), a residual block);
    /// with the batch norm's scale at 0 such a block computes the identity, which is how
    /// `model::deepen` adds them to a trained network.
    residual: bool,
    /// The batch norms are folded into the convolutions (inference only): skip them.
    folded: bool,
}

impl ConvStage {
    fn new(p: &nn::Path, c_in: i64, c_out: i64, convs: i64, residual: bool) -> ConvStage {
        let cfg = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        ConvStage {
            conv: nn::conv2d(p / "conv", c_in, c_out, 3, cfg),
            bn: batch_norm(p / "bn", c_out),
            extra: (2..=convs)
                .map(|k| {
                    (
                        nn::conv2d(p / format!("conv{k}"), c_out, c_out, 3, cfg),
                        batch_norm(p / format!("bn{k}"), c_out),
                    )
                })
                .collect(),
            residual,
            folded: false,
        }
    }

    /// Folds every batch norm of the stage into its convolution (see [`fold_batch_norm`]).
    fn fold_batch_norms(&mut self) {
        let biased = self.conv.bs.is_some() && self.extra.iter().all(|(c, _)| c.bs.is_some());
        if self.folded || !biased {
            return;
        }
        fold_batch_norm(&self.conv.ws, &self.conv.bs, &self.bn, 0);
        for (conv, bn) in &self.extra {
            fold_batch_norm(&conv.ws, &conv.bs, bn, 0);
        }
        self.folded = true;
    }

    /// Batch norm, or nothing once it is folded into the convolution before it.
    fn norm(&self, bn: &nn::BatchNorm, x: &Tensor, train: bool) -> Tensor {
        if self.folded {
            x.shallow_clone()
        } else {
            bn.forward_t(x, train)
        }
    }

    /// Returns the pooled map, the pooling indices (when asked for: max pooling that keeps them
    /// is the costliest op of training) and the map before pooling.
    fn forward_t(
        &self,
        x: &Tensor,
        train: bool,
        indices: bool,
    ) -> (Tensor, Option<Tensor>, Tensor) {
        let mut y = self
            .norm(&self.bn, &channels_last(&x.apply(&self.conv)), train)
            .relu();
        for (conv, bn) in &self.extra {
            let z = self.norm(bn, &y.apply(conv), train);
            y = if self.residual { y + z } else { z }.relu();
        }
        if indices {
            let (pooled, idx) = y.max_pool2d_with_indices([2, 2], [2, 2], [0, 0], [1, 1], false);
            (pooled, Some(idx), y)
        } else {
            (y.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false), None, y)
        }
    }
}

/// The same tensor (N×C×H×W) stored channels-last. Convolutions keep the layout of their input,
/// and libtorch's max pooling (with or without indices) is 4–10× faster on it than on the default
/// layout (measured at batch 1–64, 16–32 channels); the first stage's output is converted once
/// and everything after follows. (Giving the single-channel face channels-last strides instead,
/// so that the first convolution writes channels-last itself, made the whole forward ≈ 20 %
/// slower in f32 and bf16: oneDNN's kernel for one input channel in that layout is slower;
/// measured 2026-11-29.)
/// Values and shapes are unchanged (a no-op on a tensor already stored so).
pub fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// How one encoder is built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderLayout {
    /// Channels of the three stages.
    pub channels: [i64; 3],
    /// Convolutions in the second and third stage (the paper: 1).
    pub convs_per_stage: i64,
    /// The second and further convolutions of a stage are residual blocks.
    pub residual: bool,
    /// Standardise the input face per image instead of only centring it.
    pub standardize: bool,
    /// Smooth a noisy input face first ([`super::denoise`]).
    pub denoise: bool,
}

/// Encoder layout shared by the generator and the contrastive encoder: 64×64×1 → 8×8×C3.
struct Encoder {
    stages: Vec<ConvStage>,
    standardize: bool,
    denoise: bool,
    /// Keep the pooling indices (a decoder unpools with them).
    indices: bool,
}

impl Encoder {
    fn new(p: &nn::Path, layout: EncoderLayout, indices: bool) -> Encoder {
        let ch = layout.channels;
        let ins = [1, ch[0], ch[1]];
        Encoder {
            stages: (0..3)
                .map(|i| {
                    // The first stage stays single: a second conv at 64×64 costs most and the
                    // face's edges need no deeper features there.
                    let convs = if i == 0 { 1 } else { layout.convs_per_stage };
                    ConvStage::new(
                        &(p / format!("stage{}", i + 1)),
                        ins[i],
                        ch[i],
                        convs,
                        layout.residual,
                    )
                })
                .collect(),
            standardize: layout.standardize,
            denoise: layout.denoise,
            indices,
        }
    }

    fn fold_batch_norms(&mut self) {
        for s in &mut self.stages {
            s.fold_batch_norms();
        }
    }

    /// `x` in [0, 1]; returns the 8×8 feature map, the indices of the three poolings (empty
    /// when the encoder does not keep them) and the three maps before pooling (64×64, 32×32,
    /// 16×16).
    fn forward_t(&self, x: &Tensor, train: bool) -> (Tensor, Vec<Tensor>, Vec<Tensor>) {
        // Smoothing reads the noise in f32, before the face takes the weights' number format.
        let smoothed = self.denoise.then(|| denoise(x));
        let x = smoothed.as_ref().unwrap_or(x);
        // The face in the weights' number format (f32, or bf16 at inference; a no-op when equal).
        let x = &x.to_kind(self.stages[0].conv.ws.kind());
        let mut h = if self.standardize {
            standardize(x)
        } else {
            x - 0.5
        };
        let mut indices = Vec::with_capacity(3);
        let mut skips = Vec::with_capacity(3);
        for s in &self.stages {
            let (pooled, idx, before) = s.forward_t(&h, train, self.indices);
            h = pooled;
            indices.extend(idx);
            skips.push(before);
        }
        (h, indices, skips)
    }
}

/// Mirror of [`Encoder`]: unpool with the encoder's indices, then a 3×3 deconvolution; with
/// `skips`, the encoder's map at the same resolution is concatenated before each deconvolution.
struct Decoder {
    deconvs: Vec<nn::ConvTranspose2D>,
    bns: Vec<nn::BatchNorm>,
    skips: bool,
    /// The batch norms are folded into the deconvolutions before them (inference only).
    folded: bool,
}

impl Decoder {
    /// `out`: channels of the last layer (1: an image's logits; the warping generator's 3).
    fn new(p: &nn::Path, ch: [i64; 3], skips: bool, out: i64) -> Decoder {
        let cfg = nn::ConvTransposeConfig {
            padding: 1,
            ..Default::default()
        };
        // stage3: C3 → C2, stage2: C2 → C1, stage1: C1 → out
        let pairs = [(ch[2], ch[1]), (ch[1], ch[0]), (ch[0], out)];
        let deconvs = pairs
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| {
                let extra = if skips { ch[2 - i] } else { 0 };
                // The generator's last layer starts at zero: G(x) = x before training.
                let cfg = if skips && i == 2 {
                    nn::ConvTransposeConfig {
                        ws_init: nn::Init::Const(0.0),
                        ..cfg
                    }
                } else {
                    cfg
                };
                nn::conv_transpose2d(p / format!("deconv{}", 3 - i), a + extra, b, 3, cfg)
            })
            .collect();
        let bns = pairs[..2]
            .iter()
            .enumerate()
            .map(|(i, &(_, b))| batch_norm(p / format!("bn{}", 3 - i), b))
            .collect();
        Decoder {
            deconvs,
            bns,
            skips,
            folded: false,
        }
    }

    fn fold_batch_norms(&mut self) {
        let biased = self.deconvs.iter().all(|d| d.bs.is_some());
        if self.folded || !biased {
            return;
        }
        for (deconv, bn) in self.deconvs.iter().zip(&self.bns) {
            // A transposed convolution's weight is in × out × k × k.
            fold_batch_norm(&deconv.ws, &deconv.bs, bn, 1);
        }
        self.folded = true;
    }

    /// Returns the last layer's output (N×out×64×64).
    fn forward_t(
        &self,
        feat: &Tensor,
        indices: &[Tensor],
        skips: &[Tensor],
        train: bool,
    ) -> Tensor {
        let mut h = feat.shallow_clone();
        for (i, deconv) in self.deconvs.iter().enumerate() {
            let side = h.size()[2] * 2;
            h = h.max_unpool2d(&indices[2 - i], [side, side]);
            if self.skips {
                h = Tensor::cat(&[&h, &skips[2 - i]], 1);
            }
            h = h.apply(deconv);
            if let Some(bn) = self.bns.get(i) {
                if !self.folded {
                    h = bn.forward_t(&h, train);
                }
                h = h.relu();
            }
        }
        h
    }
}

/// G: query face → synthesised neutral reference face of the same person (L_Gen).
pub struct Generator {
    encoder: Encoder,
    decoder: Decoder,
    warp: bool,
    /// The face is smoothed before anything reads it ([`super::denoise`]): the edit is made to
    /// the smoothed face, and the encoder inside sees it as it is.
    denoise: bool,
    /// The neutral mouths' subspace the reference's mouth region is projected onto (see
    /// `ModelConfig::reference_mouth`).
    pub mouth: Option<NeutralSubspace>,
}

/// The warping generator's displacement per unit of its decoder's output, in the grid's
/// coordinates (−1…1 across the face): 0.1 is 3.2 pixels of a 64-pixel face.
const FLOW_SCALE: f64 = 0.1;
/// Side in pixels of the cells the displacement field is averaged over.
const FLOW_CELL: i64 = 8;

impl Generator {
    /// `warp`: the decoder's last layer also gives a displacement field (channels 1 and 2 beside
    /// the edit's channel 0), applied to the face before the edit.
    /// `mouth`: components of the neutral-mouth subspace the reference's mouth region is
    /// projected onto (0: none; variables `mouth/…`, filled by training).
    pub fn new(p: &nn::Path, layout: EncoderLayout, warp: bool, mouth: usize) -> Generator {
        Generator {
            encoder: Encoder::new(
                &(p / "enc"),
                EncoderLayout {
                    denoise: false,
                    ..layout
                },
                true,
            ),
            decoder: Decoder::new(
                &(p / "dec"),
                layout.channels,
                true,
                if warp { 3 } else { 1 },
            ),
            warp,
            denoise: layout.denoise,
            mouth: (mouth > 0)
                .then(|| NeutralSubspace::in_var_store(&(p / "mouth"), FaceRegion::Mouth, mouth)),
        }
    }

    /// Folds the batch norms into the convolutions before them: inference only.
    pub fn fold_batch_norms(&mut self) {
        self.encoder.fold_batch_norms();
        self.decoder.fold_batch_norms();
    }

    /// Smooth noisy faces before the edit from now on (or not).
    pub fn set_denoise(&mut self, on: bool) {
        self.denoise = on;
    }

    /// The reference: the query changed in logit space, so an untrained generator starts near
    /// the identity and learns what to take away.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_with_flow(x, train).0
    }

    /// The reference and, for a warping generator, its displacement field (N×2×64×64, in the
    /// grid's coordinates): the face is first resampled where the field points, then edited.
    pub fn forward_with_flow(&self, x: &Tensor, train: bool) -> (Tensor, Option<Tensor>) {
        let smoothed = self.denoise.then(|| denoise(x).to_kind(x.kind()));
        let x = smoothed.as_ref().unwrap_or(x);
        let (feat, idx, skips) = self.encoder.forward_t(x, train);
        let out = self.decoder.forward_t(&feat, &idx, &skips, train);
        // Channel 0 is the edit; a warping generator's channels 1 and 2 move the face first.
        let (face, flow) = if self.warp {
            let (moved, flow) = Self::warp_face(x, &out.narrow(1, 1, 2));
            (moved, Some(flow))
        } else {
            (x.shallow_clone(), None)
        };
        let delta = out.narrow(1, 0, 1);
        let reference = (face.clamp(0.01, 0.99).logit(None) + delta).sigmoid();
        let reference = match &self.mouth {
            // In the network's own number format (bf16 at inference on some CPUs).
            Some(mouth) => mouth.project(&reference).to_kind(reference.kind()),
            None => reference,
        };
        (reference, flow)
    }

    /// The face resampled where the field `raw` (N×2×H×W, the decoder's units) points, and the
    /// field in the grid's coordinates.
    fn warp_face(x: &Tensor, raw: &Tensor) -> (Tensor, Tensor) {
        let size = x.size();
        // The field is averaged over 8×8-pixel cells and spread back smoothly: the face moves
        // in regions (lips, brows), never pixel by pixel.
        let (n, h, w) = (size[0], size[2], size[3]);
        let flow = raw
            .avg_pool2d(
                [FLOW_CELL, FLOW_CELL],
                [FLOW_CELL, FLOW_CELL],
                [0, 0],
                false,
                true,
                None,
            )
            .upsample_bilinear2d([h, w], false, None, None)
            * FLOW_SCALE;
        let identity = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0, 1.0, 0.0])
            .to_device(x.device())
            .to_kind(x.kind())
            .view([1, 2, 3])
            .expand([n, 2, 3], false);
        let grid = Tensor::affine_grid_generator(&identity, size.as_slice(), false)
            + flow.permute([0, 2, 3, 1]);
        // Bilinear, border padding: a face pulled from beyond its edge repeats the edge.
        (x.grid_sampler(&grid, 0, 1, false), flow)
    }
}

/// The contrastive encoder, one set of weights for query and reference: 8×8×C3 → unit vector.
pub struct ContrastiveEncoder {
    encoder: Encoder,
}

/// What the reconstruction decoder needs from an embedding pass.
pub struct PoolIndices {
    indices: Vec<Tensor>,
    shape: Vec<i64>,
}

impl ContrastiveEncoder {
    /// `indices`: keep the pooling indices for the reconstruction decoder.
    pub fn new(p: &nn::Path, layout: EncoderLayout, indices: bool) -> ContrastiveEncoder {
        ContrastiveEncoder {
            encoder: Encoder::new(&(p / "enc"), layout, indices),
        }
    }

    /// Folds the batch norms into the convolutions before them: inference only.
    pub fn fold_batch_norms(&mut self) {
        self.encoder.fold_batch_norms();
    }

    /// Smooth noisy faces before embedding them from now on (or not).
    pub fn set_denoise(&mut self, on: bool) {
        self.encoder.denoise = on;
    }

    /// Unit-length embedding (N×D) and the pooling state for reconstruction.
    pub fn embed_t(&self, x: &Tensor, train: bool) -> (Tensor, PoolIndices) {
        let (feat, indices, _) = self.encoder.forward_t(x, train);
        let shape = feat.size();
        let flat = feat.flatten(1, -1);
        let norm = flat.norm_scalaropt_dim(2.0, [1], true).clamp_min(1e-8);
        (flat / norm, PoolIndices { indices, shape })
    }
}

/// Auxiliary decoder: embedding → reconstruction of the encoder's input (L_Recon).
pub struct ReconstructionDecoder {
    decoder: Decoder,
}

impl ReconstructionDecoder {
    pub fn new(p: &nn::Path, ch: [i64; 3]) -> ReconstructionDecoder {
        ReconstructionDecoder {
            decoder: Decoder::new(&(p / "dec"), ch, false, 1),
        }
    }

    pub fn forward_t(&self, emb: &Tensor, pool: &PoolIndices, train: bool) -> Tensor {
        // The embedding is the normalised feature map: undo the flattening (scale is learnt).
        let d = pool.shape.iter().skip(1).product::<i64>() as f64;
        let feat = (emb * d.sqrt()).view(pool.shape.as_slice());
        self.decoder
            .forward_t(&feat, &pool.indices, &[], train)
            .sigmoid()
    }
}

/// The classifier's dropout on its hidden layer unless training asks for another (`--dropout`).
pub const DEFAULT_DROPOUT: f64 = 0.5;

/// Two fully connected layers on the contrastive representation (L_Cls).
pub struct Classifier {
    fc1: nn::Linear,
    fc2: nn::Linear,
    /// Dropout probability on the hidden layer while training.
    pub dropout: f64,
}

impl Classifier {
    pub fn new(p: &nn::Path, input: i64, hidden: i64, classes: i64) -> Classifier {
        Classifier {
            fc1: nn::linear(p / "fc1", input, hidden, Default::default()),
            fc2: nn::linear(p / "fc2", hidden, classes, Default::default()),
            dropout: DEFAULT_DROPOUT,
        }
    }

    pub fn forward_t(&self, rep: &Tensor, train: bool) -> Tensor {
        rep.apply(&self.fc1)
            .relu()
            .dropout(self.dropout, train)
            .apply(&self.fc2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn channels_last_keeps_values_and_pooling_indices() {
        let x = Tensor::randn([3, 16, 64, 64], (Kind::Float, Device::Cpu)).relu();
        let cl = channels_last(&x);
        assert_eq!(cl.size(), x.size());
        assert_eq!(
            cl.stride(),
            [16 * 64 * 64, 1, 64 * 16, 16],
            "stored channels-last"
        );
        assert!(cl.equal(&x));
        assert_eq!(channels_last(&cl).stride(), cl.stride());
        // The generator unpools with the indices of its poolings: they must not depend on the
        // layout, nor must the unpooled map.
        let (p, i) = x.max_pool2d_with_indices([2, 2], [2, 2], [0, 0], [1, 1], false);
        let (p_cl, i_cl) = cl.max_pool2d_with_indices([2, 2], [2, 2], [0, 0], [1, 1], false);
        assert!(p.equal(&p_cl) && i.equal(&i_cl));
        assert!(p
            .max_unpool2d(&i, [64, 64])
            .equal(&p_cl.max_unpool2d(&i_cl, [64, 64])));
    }

    #[test]
    fn encoder_output_does_not_depend_on_the_layout_it_ran_in() {
        let vs = nn::VarStore::new(Device::Cpu);
        let layout = EncoderLayout {
            channels: [16, 32, 48],
            convs_per_stage: 2,
            residual: true,
            standardize: true,
            denoise: false,
        };
        let enc = Encoder::new(&vs.root(), layout, true);
        let x = Tensor::rand([2, 1, 64, 64], (Kind::Float, Device::Cpu));
        let (feat, idx, before) = tch::no_grad(|| enc.forward_t(&x, false));
        for map in &before {
            assert_eq!(map.stride()[1], 1, "every stage runs channels-last");
        }
        // The same stages run by hand on the default layout.
        let mut h = standardize(&x);
        let mut idx_ref = Vec::new();
        for s in &enc.stages {
            let mut y = s.bn.forward_t(&h.apply(&s.conv), false).relu();
            for (conv, bn) in &s.extra {
                y = (&y + bn.forward_t(&y.apply(conv), false)).relu();
            }
            let (p, i) =
                y.contiguous()
                    .max_pool2d_with_indices([2, 2], [2, 2], [0, 0], [1, 1], false);
            h = p;
            idx_ref.push(i);
        }
        let h = tch::no_grad(|| h);
        let diff = (&feat - &h).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "feature maps differ by {diff}");
        // Where a pooling window holds a tie or a near-tie (ReLU's zeros; values a rounding apart,
        // which the two layouts round differently), either position is its maximum: the indices
        // must pick the same values, not necessarily the same positions.
        for ((a, b), map) in idx.iter().zip(&idx_ref).zip(&before) {
            let flat = map.contiguous().flatten(2, 3);
            let picked = |i: &Tensor| flat.gather(2, &i.flatten(2, 3), false);
            let diff = (picked(a) - picked(b)).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "pooled positions' values differ by {diff}");
        }
    }

    #[test]
    fn a_warping_generator_starts_as_the_identity_and_moves_the_face_by_its_field() {
        let layout = EncoderLayout {
            channels: [8, 16, 24],
            convs_per_stage: 1,
            residual: false,
            standardize: true,
            denoise: false,
        };
        let vs = nn::VarStore::new(Device::Cpu);
        let gen = Generator::new(&vs.root(), layout, true, 0);
        // A face with structure across it: a horizontal ramp.
        let ramp = Tensor::arange(64, (Kind::Float, Device::Cpu)).view([1, 1, 1, 64]) / 64.0;
        let x = (ramp.expand([2, 1, 64, 64], false) * 0.8 + 0.1).contiguous();
        // The last layer starts at zero: no edit, no displacement.
        let (g, flow) = tch::no_grad(|| gen.forward_with_flow(&x, false));
        let flow = flow.expect("a warping generator gives its field");
        assert_eq!(flow.size(), vec![2, 2, 64, 64]);
        assert!(flow.abs().max().double_value(&[]) < 1e-7);
        assert!((&g - &x).abs().max().double_value(&[]) < 1e-4);
        // A constant field of one unit in x (channel 1) samples the face 0.1 grid units to the
        // right, 3.2 pixels: the ramp rises by that much inside the face, the edit unchanged.
        let last = &gen.decoder.deconvs[2];
        tch::no_grad(|| {
            let bias = last.bs.as_ref().expect("bias").shallow_clone();
            let _ = bias.narrow(0, 1, 1).fill_(1.0);
        });
        let (moved, flow) = tch::no_grad(|| gen.forward_with_flow(&x, false));
        let flow = flow.expect("field");
        assert!(
            (flow.narrow(1, 0, 1) - FLOW_SCALE)
                .abs()
                .max()
                .double_value(&[])
                < 1e-6
        );
        let inside = |t: &Tensor| t.narrow(3, 8, 48);
        let shift = (inside(&moved) - inside(&x))
            .mean(Kind::Float)
            .double_value(&[]);
        let expected = 0.8 * 32.0 * FLOW_SCALE / 64.0;
        assert!(
            (shift - expected).abs() < 2e-3,
            "shifted by {shift}, expected {expected}"
        );
        // A plain generator gives no field.
        let vs = nn::VarStore::new(Device::Cpu);
        let plain = Generator::new(&vs.root(), layout, false, 0);
        assert!(tch::no_grad(|| plain.forward_with_flow(&x, false))
            .1
            .is_none());
    }
}
