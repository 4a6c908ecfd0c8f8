//! Noise-adaptive smoothing of the input face: a face whose pixels carry sensor noise (a webcam in
//! dim light) is blurred just enough to take most of it away; a clean face passes unchanged, bit
//! for bit. Part of the network (its encoders' input, set by `ModelConfig::denoise`), hence applied
//! identically in training, evaluation and live.
//!
//! The noise is estimated per face by Immerkær's method (a 3×3 operator that cancels smooth
//! image structure, its mean absolute response scaled to the σ of Gaussian noise; "Fast Noise
//! Variance Estimation", 1996). On the aligned 64×64 faces it reads: FER+ faces 0.005 (median;
//! 99.9 % under 0.018), TFEID's sharp studio photos 0.007 (all under 0.014), CK+48 0.005; with
//! Gaussian noise of σ 0.02 / 0.03 / 0.08 added to FER+ faces 0.021 / 0.031 / 0.078. The blur's σ
//! follows the estimate through the points of [`BLUR_FOR_NOISE`]: none up to 0.015, above nearly
//! every clean face (0.2–0.34 % of FER+'s read more), rising to 1 px at 0.08 — what recognition on noisy FER+ Train faces asked for
//! (`eval --split train --degrade noise:S+blur:B`, 2026-12-02).
use tch::{Kind, Tensor};

/// (estimated noise σ, blur σ in pixels) — piecewise linear between the points, flat beyond them.
pub const BLUR_FOR_NOISE: [(f64, f64); 5] = [
    (0.015, 0.0),
    (0.02, 0.5),
    (0.03, 0.7),
    (0.05, 0.8),
    (0.08, 1.0),
];

/// Taps on each side of the blur's centre: 3σ at the largest σ of [`BLUR_FOR_NOISE`].
const RADIUS: i64 = 3;

/// Per-image estimate of the σ of additive Gaussian noise (N), for faces N×1×H×W in [0, 1].
pub fn noise_sigma(x: &Tensor) -> Tensor {
    let x = x.to_kind(Kind::Float);
    let k = Tensor::from_slice(&[1.0f32, -2.0, 1.0, -2.0, 4.0, -2.0, 1.0, -2.0, 1.0])
        .to_device(x.device())
        .view([1, 1, 3, 3]);
    let response = x.conv2d(&k, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
    response
        .abs()
        .mean_dim([1i64, 2, 3].as_slice(), false, Kind::Float)
        * ((std::f64::consts::PI / 2.0).sqrt() / 6.0)
}

/// The blur σ (pixels) for an estimated noise σ, by [`BLUR_FOR_NOISE`].
pub fn blur_sigma_for(noise: f64) -> f64 {
    let mut sigma = 0.0;
    for pair in BLUR_FOR_NOISE.windows(2) {
        let ((n0, b0), (n1, b1)) = (pair[0], pair[1]);
        if noise > n0 {
            // Each segment moves σ from b0 to b1 over its span, once the noise reaches it.
            sigma += ((noise - n0) / (n1 - n0)).clamp(0.0, 1.0) * (b1 - b0);
        }
    }
    sigma
}

/// `x` (N×1×H×W in [0, 1]) with each face blurred by the σ its noise calls for: faces whose
/// estimate stays under the first point of [`BLUR_FOR_NOISE`] come back exactly as they were.
/// Always f32; edges clamped, as in `eval --degrade`'s blur.
pub fn denoise(x: &Tensor) -> Tensor {
    let x = x.to_kind(Kind::Float);
    let size = x.size();
    let (n, h, w) = (size[0], size[2], size[3]);
    // The estimates come to the host once (a handful of numbers): the blur's kernels are built
    // there, and the usual case — clean faces only — costs no more tensor operations.
    let Ok(noise) = Vec::<f64>::try_from(noise_sigma(&x).to_kind(Kind::Double)) else {
        return x;
    };
    let sigmas: Vec<f64> = noise.iter().map(|&v| blur_sigma_for(v)).collect();
    if sigmas.iter().all(|&s| s <= 0.0) {
        return x;
    }
    // A kernel per face (N×(2R+1)): σ 0 is the centre tap alone, the others exactly 0.
    let kernel: Vec<f32> = sigmas
        .iter()
        .flat_map(|&s| {
            let taps: Vec<f64> = (-RADIUS..=RADIUS)
                .map(|i| {
                    if s <= 0.0 {
                        f64::from(u8::from(i == 0))
                    } else {
                        (-((i * i) as f64) / (2.0 * s * s)).exp()
                    }
                })
                .collect();
            let total: f64 = taps.iter().sum();
            taps.into_iter().map(move |t| (t / total) as f32)
        })
        .collect();
    let kernel = Tensor::from_slice(&kernel).to_device(x.device());
    // One channel per face, a grouped convolution along each axis.
    let faces = x.view([1, n, h, w]);
    let rows = faces.pad([RADIUS, RADIUS, 0, 0], "replicate", None).conv2d(
        &kernel.view([n, 1, 1, 2 * RADIUS + 1]),
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        n,
    );
    let both = rows.pad([0, 0, RADIUS, RADIUS], "replicate", None).conv2d(
        &kernel.view([n, 1, 2 * RADIUS + 1, 1]),
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        n,
    );
    both.view([n, 1, h, w])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A smooth synthetic face-like image (N copies): a bright oval on a darker ground, soft edges.
    fn smooth_faces(n: i64) -> Tensor {
        let ys = Tensor::arange(64, (Kind::Float, tch::Device::Cpu)).view([64, 1]);
        let xs = Tensor::arange(64, (Kind::Float, tch::Device::Cpu)).view([1, 64]);
        let r = ((&ys - 32.0) / 26.0).square() + ((&xs - 32.0) / 20.0).square();
        let face: Tensor = ((-r + 1.0) * 6.0).sigmoid() * 0.5 + 0.2;
        face.view([1, 1, 64, 64]).repeat([n, 1, 1, 1])
    }

    fn with_noise(x: &Tensor, sigma: f64, seed: u64) -> Tensor {
        // Gaussian draws by Box–Muller from a seeded generator.
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let values: Vec<f32> = (0..x.numel())
            .map(|_| {
                let u1: f32 = rng.gen_range(f32::EPSILON..1.0);
                let u2: f32 = rng.gen();
                (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos() * sigma as f32
            })
            .collect();
        (x + Tensor::from_slice(&values).view(x.size().as_slice())).clamp(0.0, 1.0)
    }

    fn values(t: &Tensor) -> Vec<f32> {
        Vec::<f32>::try_from(t.flatten(0, -1)).expect("f32 values")
    }

    #[test]
    fn the_estimate_reads_the_noise_added_to_a_smooth_face() {
        let clean = smooth_faces(1);
        assert!(values(&noise_sigma(&clean))[0] < 0.005);
        for (k, sigma) in [0.01f64, 0.03, 0.08].into_iter().enumerate() {
            let got = values(&noise_sigma(&with_noise(&clean, sigma, k as u64)))[0] as f64;
            assert!(
                (got - sigma).abs() < 0.12 * sigma,
                "noise σ {sigma} read as {got}"
            );
        }
    }

    #[test]
    fn blur_follows_the_table_between_and_beyond_its_points() {
        let noise = [0.0, 0.015, 0.0175, 0.02, 0.04, 0.08, 0.2];
        let want = [0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0];
        for (n, w) in noise.into_iter().zip(want) {
            let got = blur_sigma_for(n);
            assert!((got - w).abs() < 1e-9, "noise {n}: blur {got}, not {w}");
        }
    }

    #[test]
    fn a_clean_face_is_left_exactly_and_a_noisy_one_beside_it_is_cleaned() {
        let clean = smooth_faces(1);
        let noisy = with_noise(&clean, 0.05, 7);
        let batch = Tensor::cat(&[&clean, &noisy], 0);
        let out = denoise(&batch);
        assert_eq!(out.size(), batch.size());
        // Bit for bit: the clean face's kernel is the identity.
        assert!(out.narrow(0, 0, 1).equal(&clean));
        let error = |t: &Tensor| f64::try_from((t - &clean).square().mean(Kind::Float).sqrt());
        let before = error(&noisy).expect("error");
        let after = error(&out.narrow(0, 1, 1)).expect("error");
        assert!(
            after < before * 0.5,
            "noise left: {after} (before: {before})"
        );
        // The noise estimate after smoothing is back among clean faces'.
        assert!(values(&noise_sigma(&out.narrow(0, 1, 1)))[0] < 0.02);
    }

    #[test]
    fn random_batches_keep_each_face_on_its_own() {
        // The grouped convolution must not mix faces: each face denoised alone equals the same
        // face denoised in a batch.
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let base = smooth_faces(4);
        let faces: Vec<Tensor> = (0..4)
            .map(|i| with_noise(&base.narrow(0, i, 1), rng.gen_range(0.0..0.09), i as u64))
            .collect();
        let batch = denoise(&Tensor::cat(&faces, 0));
        for (i, f) in faces.iter().enumerate() {
            let alone = denoise(f);
            let diff =
                f64::try_from((batch.narrow(0, i as i64, 1) - alone).abs().max()).expect("max");
            assert!(diff < 1e-6, "face {i} differs by {diff}");
        }
    }
}
