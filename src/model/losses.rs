//! The four losses of the paper. All take batched tensors and return a scalar tensor.
use tch::{Kind, Reduction, Tensor};

/// L_Gen: mean absolute difference between G(x) and the true neutral face, over the samples that
/// have a neutral partner (`has_neutral` is a 0/1 float mask of length N). Zero when none has.
pub fn generation_loss(generated: &Tensor, neutral: &Tensor, has_neutral: &Tensor) -> Tensor {
    let per_sample =
        (generated - neutral)
            .abs()
            .mean_dim([1i64, 2, 3].as_slice(), false, Kind::Float);
    let count = has_neutral.sum(Kind::Float);
    (per_sample * has_neutral).sum(Kind::Float) / count.clamp_min(1.0)
}

/// Mean SSIM per image pair (N×1×H×W in [0, 1]), 11×11 Gaussian window, σ = 1.5; N values.
/// Differentiable: the structural term of L_Gen, and the fidelity figure `dgcn eval` reports.
pub fn ssim(a: &Tensor, b: &Tensor) -> Tensor {
    let window = Tensor::from_slice(&gaussian_kernel(5, 1.5))
        .view([1, 1, 11, 11])
        .to_device(a.device());
    let blur = |x: &Tensor| x.conv2d(&window, None::<Tensor>, [1, 1], [5, 5], [1, 1], 1);
    let (c1, c2) = (0.01f64.powi(2), 0.03f64.powi(2));
    let (mu_a, mu_b) = (blur(a), blur(b));
    let var_a = blur(&(a * a)) - &mu_a * &mu_a;
    let var_b = blur(&(b * b)) - &mu_b * &mu_b;
    let cov = blur(&(a * b)) - &mu_a * &mu_b;
    let num = (&mu_a * &mu_b * 2.0 + c1) * (cov * 2.0 + c2);
    let den = (&mu_a * &mu_a + &mu_b * &mu_b + c1) * (var_a + var_b + c2);
    (num / den).mean_dim([1i64, 2, 3].as_slice(), false, Kind::Float)
}

/// The structural term of L_Gen: 1 − SSIM(G(x), true neutral), averaged over the samples that
/// have a neutral partner (`has_neutral`, 0/1 of length N), as `generation_loss` is. L1 alone
/// rewards the blurred average of the plausible neutral faces; SSIM asks for the local
/// structure (a closed mouth's edges) too.
pub fn structural_loss(generated: &Tensor, neutral: &Tensor, has_neutral: &Tensor) -> Tensor {
    let per_sample: Tensor = 1.0 - ssim(generated, neutral);
    let count = has_neutral.sum(Kind::Float);
    (per_sample * has_neutral).sum(Kind::Float) / count.clamp_min(1.0)
}

/// L_Contr: embeddings of a neutral query and its reference should coincide (d²), those of an
/// expressive query should be at least `margin` apart (max(0, margin − d)²). `is_neutral` is a
/// 0/1 float mask.
pub fn contrastive_loss(e_q: &Tensor, e_r: &Tensor, is_neutral: &Tensor, margin: f64) -> Tensor {
    let d = (e_q - e_r)
        .square()
        .sum_dim_intlist([1i64].as_slice(), false, Kind::Float)
        .clamp_min(1e-12)
        .sqrt();
    let near: Tensor = is_neutral * d.square();
    let apart: Tensor = (1.0 - is_neutral) * (margin - &d).clamp_min(0.0).square();
    (near + apart).mean(Kind::Float)
}

/// Neutrality loss: cross-entropy of a frozen guide's logits for generated references (N×K)
/// against "neutral", averaged over the faces `mask` selects (0/1, N; the expressive ones, whose
/// reference must lose its expression). Zero when none is selected.
pub fn neutrality_loss(guide_logits: &Tensor, mask: &Tensor) -> Tensor {
    let neutral = crate::labels::Expression::Neutral.index() as i64;
    let nll = -guide_logits.log_softmax(-1, Kind::Float).select(1, neutral);
    (nll * mask).sum(Kind::Float) / mask.sum(Kind::Float).clamp_min(1.0)
}

/// Mean absolute difference of neighbouring pixels (N×1×H×W), across and down, averaged: small
/// for an image made of smooth regions, large for pixel patterns.
pub fn total_variation(x: &Tensor) -> Tensor {
    let (h, w) = (x.size()[2], x.size()[3]);
    let down = (x.narrow(2, 1, h - 1) - x.narrow(2, 0, h - 1)).abs();
    let across = (x.narrow(3, 1, w - 1) - x.narrow(3, 0, w - 1)).abs();
    down.mean(Kind::Float) + across.mean(Kind::Float)
}

/// A (2·radius + 1)² Gaussian kernel of standard deviation `sigma` px, row-major, summing to 1;
/// `sigma` 0 gives the identity kernel.
pub fn gaussian_kernel(radius: i32, sigma: f32) -> Vec<f32> {
    let g: Vec<f32> = (-radius..=radius)
        .map(|i| {
            if sigma == 0.0 {
                (i == 0) as u8 as f32
            } else {
                (-(i * i) as f32 / (2.0 * sigma * sigma)).exp()
            }
        })
        .collect();
    let s: f32 = g.iter().sum();
    g.iter()
        .flat_map(|a| g.iter().map(move |b| a * b / (s * s)))
        .collect()
}

/// A face as a guide should judge it: blurred (Gaussian, σ 1 px) and shifted by up to one pixel
/// (the same shift for the batch), so that only changes a camera would keep count.
pub fn soften(x: &Tensor, rng: &mut impl rand::Rng) -> Tensor {
    let kernel = Tensor::from_slice(&gaussian_kernel(2, 1.0))
        .view([1, 1, 5, 5])
        .to_device(x.device());
    let (dy, dx) = (rng.gen_range(-1i64..=1), rng.gen_range(-1i64..=1));
    x.pad([2, 2, 2, 2], "replicate", None)
        .conv2d(&kernel, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1)
        .roll([dy, dx], [2, 3])
}

/// L_Recon: mean squared error of a reconstruction.
pub fn reconstruction_loss(recon: &Tensor, input: &Tensor) -> Tensor {
    recon.mse_loss(input, Reduction::Mean)
}

/// L_Cls: cross-entropy of logits (N×K) against target distributions (N×K: one-hot labels or
/// FER+'s vote shares), smoothed towards uniform by `smoothing`. Each sample is weighted by its
/// target's class weights (`class_weights`, K), so rare classes count for more.
pub fn classification_loss(
    logits: &Tensor,
    targets: &Tensor,
    class_weights: &Tensor,
    smoothing: f64,
) -> Tensor {
    let k = logits.size().last().copied().unwrap_or(1) as f64;
    let smoothed = targets * (1.0 - smoothing) + smoothing / k;
    let per_sample = -(smoothed * logits.log_softmax(-1, Kind::Float)).sum_dim_intlist(
        [1i64].as_slice(),
        false,
        Kind::Float,
    );
    let weight = (targets * class_weights).sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    (per_sample * &weight).sum(Kind::Float) / weight.sum(Kind::Float).clamp_min(1e-12)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn t(v: &[f32], shape: &[i64]) -> Tensor {
        Tensor::from_slice(v).view(shape)
    }

    fn val(x: &Tensor) -> f64 {
        x.double_value(&[])
    }

    #[test]
    fn generation_loss_averages_only_samples_with_a_neutral() {
        // Two 1×1×2 "images": sample 0 off by 0.5 everywhere, sample 1 off by 1.0 but masked out.
        let g = t(&[0.5, 0.5, 1.0, 1.0], &[2, 1, 1, 2]);
        let n = t(&[0.0, 0.0, 0.0, 0.0], &[2, 1, 1, 2]);
        let loss = generation_loss(&g, &n, &t(&[1.0, 0.0], &[2]));
        assert!((val(&loss) - 0.5).abs() < 1e-6);
        let none = generation_loss(&g, &n, &t(&[0.0, 0.0], &[2]));
        assert_eq!(val(&none), 0.0);
    }

    #[test]
    fn structural_loss_is_zero_for_the_neutral_itself_and_ignores_unpaired_samples() {
        tch::manual_seed(3);
        let n = Tensor::rand([2, 1, 32, 32], (Kind::Float, Device::Cpu));
        let has = t(&[1.0, 0.0], &[2]);
        assert!(structural_loss(&n, &n, &has).double_value(&[]).abs() < 1e-4);
        // Sample 0 right, sample 1 noise but unpaired: still zero.
        let noise = Tensor::rand([1, 1, 32, 32], (Kind::Float, Device::Cpu));
        let g = Tensor::cat(&[n.narrow(0, 0, 1), noise.shallow_clone()], 0);
        assert!(structural_loss(&g, &n, &has).double_value(&[]).abs() < 1e-4);
        // Paired noise costs most of the range; the neutral with less contrast, little.
        let both = t(&[1.0, 1.0], &[2]);
        let noisy = structural_loss(&g, &n, &both).double_value(&[]);
        let flatter = &n * 0.8 + 0.1;
        let soft = structural_loss(&flatter, &n, &both).double_value(&[]);
        assert!(
            noisy > 0.3 && soft > 0.0 && soft < noisy,
            "noise {noisy}, blur {soft}"
        );
    }

    #[test]
    fn contrastive_loss_pulls_neutral_and_pushes_expressive() {
        let a = t(&[1.0, 0.0], &[1, 2]);
        let b = t(&[0.0, 1.0], &[1, 2]); // distance √2
        let neutral = t(&[1.0], &[1]);
        let expressive = t(&[0.0], &[1]);
        // Neutral pair at distance √2 costs d² = 2.
        assert!((val(&contrastive_loss(&a, &b, &neutral, 1.0)) - 2.0).abs() < 1e-5);
        // Expressive pair farther than the margin costs nothing…
        assert!(val(&contrastive_loss(&a, &b, &expressive, 1.0)).abs() < 1e-6);
        // …and identical embeddings cost margin².
        assert!((val(&contrastive_loss(&a, &a, &expressive, 0.5)) - 0.25).abs() < 1e-5);
        // Identical neutral pair costs nothing.
        assert!(val(&contrastive_loss(&a, &a, &neutral, 0.5)).abs() < 1e-6);
    }

    #[test]
    fn reconstruction_and_classification_losses_on_hand_made_inputs() {
        let x = t(&[0.0, 1.0], &[1, 1, 1, 2]);
        let r = t(&[0.5, 1.0], &[1, 1, 1, 2]);
        assert!((val(&reconstruction_loss(&r, &x)) - 0.125).abs() < 1e-6);
        let ones = Tensor::ones([8], (Kind::Float, Device::Cpu));
        let one_hot = |c: &[i64]| Tensor::from_slice(c).one_hot(8).to_kind(Kind::Float);
        // Uniform logits over 8 classes: cross-entropy ln 8.
        let logits = Tensor::zeros([2, 8], (Kind::Float, Device::Cpu));
        let ce = val(&classification_loss(&logits, &one_hot(&[0, 5]), &ones, 0.0));
        assert!((ce - 8f64.ln()).abs() < 1e-5);
        // A confident right answer costs almost nothing.
        let sure = t(&[20.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], &[1, 8]);
        assert!(val(&classification_loss(&sure, &one_hot(&[0]), &ones, 0.0)) < 1e-6);
        // A soft target of 0.7 / 0.3 costs its cross-entropy with the prediction.
        let two = t(
            &[0.0, 0.0, -30.0, -30.0, -30.0, -30.0, -30.0, -30.0],
            &[1, 8],
        );
        let soft = t(&[0.7, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], &[1, 8]);
        let ce = val(&classification_loss(&two, &soft, &ones, 0.0));
        assert!((ce - 2f64.ln()).abs() < 1e-4, "{ce}");
        // Class weights: both faces are called neutral; face 0 is happy (weight 3), face 1
        // neutral (weight 1). Unweighted the mean is (20 + 0) / 2; weighted (3·20 + 0) / 4.
        let mut w = vec![1.0f32; 8];
        w[1] = 3.0;
        let w = Tensor::from_slice(&w);
        let neutral_twice = t(
            &[
                20.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 20.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
            ],
            &[2, 8],
        );
        let targets = one_hot(&[1, 0]);
        let plain = val(&classification_loss(&neutral_twice, &targets, &ones, 0.0));
        assert!((plain - 10.0).abs() < 1e-3, "{plain}");
        let weighted = val(&classification_loss(&neutral_twice, &targets, &w, 0.0));
        assert!((weighted - 15.0).abs() < 1e-3, "{weighted}");
    }

    #[test]
    fn total_variation_and_soften() {
        // A flat image has none; a checkerboard has 1 across and 1 down.
        let flat = Tensor::full([1, 1, 4, 4], 0.5, (Kind::Float, Device::Cpu));
        assert!(val(&total_variation(&flat)).abs() < 1e-7);
        let board: Vec<f32> = (0..16).map(|i| ((i / 4 + i % 4) % 2) as f32).collect();
        let board = t(&board, &[1, 1, 4, 4]);
        assert!((val(&total_variation(&board)) - 2.0).abs() < 1e-6);
        // Softening keeps a flat image and its size, and takes most of a checkerboard away.
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
        let soft = soften(&flat, &mut rng);
        assert_eq!(soft.size(), vec![1, 1, 4, 4]);
        assert!(val(&(soft - 0.5).abs().max()) < 1e-6);
        let soft = soften(&board, &mut rng);
        assert!(val(&total_variation(&soft)) < 0.5, "{soft}");
    }

    #[test]
    fn neutrality_loss_counts_only_the_selected_faces() {
        // Face 0 is called neutral with certainty, face 1 happy with certainty.
        let mut v = vec![0.0f32; 16];
        v[0] = 30.0;
        v[8 + 1] = 30.0;
        let logits = t(&v, &[2, 8]);
        // Only face 0 selected: nothing to pay.
        assert!(val(&neutrality_loss(&logits, &t(&[1.0, 0.0], &[2]))) < 1e-6);
        // Only face 1: its reference is not neutral, about 30 nats.
        let l = val(&neutrality_loss(&logits, &t(&[0.0, 1.0], &[2])));
        assert!((l - 30.0).abs() < 1e-3, "{l}");
        // Both: the mean. None: zero, not NaN.
        let l = val(&neutrality_loss(&logits, &t(&[1.0, 1.0], &[2])));
        assert!((l - 15.0).abs() < 1e-3, "{l}");
        assert_eq!(val(&neutrality_loss(&logits, &t(&[0.0, 0.0], &[2]))), 0.0);
    }
}
