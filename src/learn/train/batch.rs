//! A training batch: faces and their neutral partners, augmented (flips, warps, lighting), degraded
//! as a camera would, erased, mixed up, or given the person's own neutral photo as reference.
use rand::seq::SliceRandom;
use rand::Rng;
use tch::{Device, Kind, Tensor};

use super::TrainConfig;
use crate::face::FACE_SIZE;
use crate::learn::pool::TrainData;
use crate::model::losses;

/// Random flips, small similarity warps and brightness/contrast/gamma jitter, the same for a query
/// and its neutral target.
fn augment(query: &Tensor, target: &Tensor, rng: &mut impl Rng) -> (Tensor, Tensor) {
    let n = query.size()[0];
    let device = query.device();
    let mut theta = Vec::with_capacity(n as usize * 6);
    let mut gain = Vec::with_capacity(n as usize);
    let mut bias = Vec::with_capacity(n as usize);
    let mut gamma = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let flip = if rng.gen_bool(0.5) { -1.0f32 } else { 1.0 };
        let angle = rng.gen_range(-0.17f32..0.17);
        let scale = rng.gen_range(0.92f32..1.08);
        let (tx, ty) = (rng.gen_range(-0.06f32..0.06), rng.gen_range(-0.06f32..0.06));
        let (c, s) = (angle.cos() * scale, angle.sin() * scale);
        theta.extend_from_slice(&[c * flip, -s, tx, s * flip, c, ty]);
        gain.push(rng.gen_range(0.75f32..1.25));
        bias.push(rng.gen_range(-0.1f32..0.1));
        gamma.push(rng.gen_range(-0.4f32..0.4).exp());
    }
    let theta = Tensor::from_slice(&theta).view([n, 2, 3]).to_device(device);
    let grid =
        Tensor::affine_grid_generator(&theta, [n, 1, FACE_SIZE as i64, FACE_SIZE as i64], false);
    let warp = |x: &Tensor| x.grid_sampler(&grid, 0, 1, false);
    let gain = Tensor::from_slice(&gain)
        .view([n, 1, 1, 1])
        .to_device(device);
    let bias = Tensor::from_slice(&bias)
        .view([n, 1, 1, 1])
        .to_device(device);
    let gamma = Tensor::from_slice(&gamma)
        .view([n, 1, 1, 1])
        .to_device(device);
    // The same photometric change for both: the generator keeps the lighting it is given.
    let jitter = |x: Tensor| {
        let x = x.clamp(1e-4, 1.0).pow(&gamma);
        let mean = x.mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float);
        ((x - &mean) * &gain + mean + &bias).clamp(0.0, 1.0)
    };
    (jitter(warp(query)), jitter(warp(target)))
}

/// For each face of `idx`, another neutral photo of its person (never the face itself), drawn at
/// random; `None` where its person has none.
fn own_partners(data: &TrainData, idx: &[usize], rng: &mut impl Rng) -> Vec<Option<usize>> {
    idx.iter()
        .map(|&i| {
            let others: Vec<usize> = data.other_neutrals(i).collect();
            others.choose(rng).copied()
        })
        .collect()
}

/// The references of a step-2 batch with `share` of the faces that have another neutral photo of
/// their person compared with it (moved, scaled and lit on its own, as a second photo of a face
/// differs) instead of their generated reference `generated`.
pub(super) fn with_own_references(
    data: &TrainData,
    idx: &[usize],
    generated: &Tensor,
    share: f64,
    rng: &mut impl Rng,
) -> Tensor {
    let partners = own_partners(data, idx, rng);
    let chosen: Vec<f32> = partners
        .iter()
        .map(|p| (p.is_some() && rng.gen_bool(share)) as u8 as f32)
        .collect();
    let rows: Vec<usize> = partners
        .iter()
        .zip(idx)
        .map(|(p, &i)| p.unwrap_or(i))
        .collect();
    let device = generated.device();
    let photos = data.batch(&rows, device);
    let (photos, _) = augment(&photos, &photos, rng);
    let use_own = Tensor::from_slice(&chosen)
        .to_device(device)
        .view([-1, 1, 1, 1])
        .gt(0.5);
    photos
        .to_kind(generated.kind())
        .where_self(&use_own, generated)
}

/// Camera degradations ([`crate::learn::robustness::random_camera`]: blur, noise, JPEG, a far
/// face, exposure) on each face with probability `p`; the other faces are left as they are.
fn camera_effects(x: &Tensor, p: f64, rng: &mut impl Rng) -> Tensor {
    let n = x.size()[0] as usize;
    let chosen: Vec<usize> = (0..n).filter(|_| rng.gen_bool(p)).collect();
    if chosen.is_empty() {
        return x.shallow_clone();
    }
    let side = FACE_SIZE as i64;
    let index = Tensor::from_slice(&chosen.iter().map(|&i| i as i64).collect::<Vec<_>>())
        .to_device(x.device());
    let faces = (x.index_select(0, &index).clamp(0.0, 1.0) * 255.0)
        .round()
        .to_kind(tch::Kind::Uint8)
        .to_device(Device::Cpu)
        .contiguous()
        .view([-1]);
    let Ok(bytes) = Vec::<u8>::try_from(&faces) else {
        return x.shallow_clone();
    };
    let mut out = Vec::with_capacity(bytes.len());
    for face in bytes.chunks_exact((side * side) as usize) {
        let d = crate::learn::robustness::random_camera(rng);
        // A face whose effect fails (it cannot: in-memory JPEG) stays as it was.
        out.extend(d.apply(face, rng).unwrap_or_else(|_| face.to_vec()));
    }
    let degraded = (Tensor::from_slice(&out)
        .view([chosen.len() as i64, 1, side, side])
        .to_kind(tch::Kind::Float)
        / 255.0)
        .to_device(x.device());
    x.index_copy(0, &index, &degraded)
}

/// Random erasing (Zhong et al. 2020): each face, with probability `p`, has one rectangle of
/// 2–25 % of its area and aspect 1:3 to 3:1 replaced by uniform noise.
fn erase(x: &Tensor, p: f64, rng: &mut impl Rng) -> Tensor {
    let n = x.size()[0];
    let side = FACE_SIZE;
    let mut mask = vec![0f32; n as usize * side * side];
    for face in mask.chunks_mut(side * side) {
        if !rng.gen_bool(p) {
            continue;
        }
        let area = rng.gen_range(0.02f32..0.25) * (side * side) as f32;
        let aspect = rng.gen_range((1.0f32 / 3.0).ln()..3.0f32.ln()).exp();
        let h = ((area * aspect).sqrt().round() as usize).clamp(1, side);
        let w = ((area / aspect).sqrt().round() as usize).clamp(1, side);
        let (top, left) = (rng.gen_range(0..=side - h), rng.gen_range(0..=side - w));
        for row in face[top * side..(top + h) * side].chunks_mut(side) {
            row[left..left + w].fill(1.0);
        }
    }
    let mask = Tensor::from_slice(&mask)
        .view([n, 1, side as i64, side as i64])
        .to_device(x.device());
    let noise = Tensor::rand_like(x);
    x * (1.0 - &mask) + noise * mask
}

/// A draw from Beta(α, α) (Jöhnk's method, from `rng` so that a run repeats with its seed).
pub(super) fn beta_symmetric(alpha: f64, rng: &mut impl Rng) -> f64 {
    loop {
        let x = rng.gen::<f64>().powf(1.0 / alpha);
        let y = rng.gen::<f64>().powf(1.0 / alpha);
        if x + y <= 1.0 && x + y > 0.0 {
            return x / (x + y);
        }
    }
}

/// Mixup (Zhang et al. 2018): each face blended with another face of the batch, `lam` of its own;
/// returns the blended faces and the permutation that chose the partners (on the faces' device,
/// to blend their targets alike).
pub(super) fn mixup(query: &Tensor, lam: f64, rng: &mut impl Rng) -> (Tensor, Tensor) {
    let n = query.size()[0];
    let mut perm: Vec<i64> = (0..n).collect();
    perm.shuffle(rng);
    let idx = Tensor::from_slice(&perm).to_device(query.device());
    (query * lam + query.index_select(0, &idx) * (1.0 - lam), idx)
}

/// Camera degradations for a query the classifier sees: a Gaussian blur of random width
/// (σ 0–1.2 px, as from focus or a small face scaled up) and sensor noise (σ 0–0.04), each on
/// half of the faces.
fn degrade(x: &Tensor, rng: &mut impl Rng) -> Tensor {
    let n = x.size()[0];
    let device = x.device();
    let mut kernels = Vec::with_capacity(n as usize * 25);
    let mut noise = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let sigma = if rng.gen_bool(0.5) {
            rng.gen_range(0.3f32..1.2)
        } else {
            0.0
        };
        kernels.extend(losses::gaussian_kernel(2, sigma));
        noise.push(if rng.gen_bool(0.5) {
            rng.gen_range(0.0f32..0.04)
        } else {
            0.0
        });
    }
    let side = FACE_SIZE as i64;
    let kernels = Tensor::from_slice(&kernels)
        .view([n, 1, 5, 5])
        .to_device(device);
    // One group per face: each face gets its own kernel.
    let blurred = x
        .view([1, n, side, side])
        .pad([2, 2, 2, 2], "replicate", None)
        .conv2d(&kernels, None::<Tensor>, [1, 1], [0, 0], [1, 1], n)
        .view([n, 1, side, side]);
    let sigma = Tensor::from_slice(&noise)
        .view([n, 1, 1, 1])
        .to_device(device);
    let noise = blurred.randn_like() * sigma;
    (blurred + noise).clamp(0.0, 1.0)
}

/// One batch as a step trains on it: the faces, a neutral partner for each (itself when it has
/// none), whether it has one (0/1), augmented when the configuration says so (step 2 also
/// degrades the query as a camera would).
pub fn training_batch(
    data: &TrainData,
    idx: &[usize],
    cfg: &TrainConfig,
    step: u8,
    device: Device,
    rng: &mut rand::rngs::StdRng,
) -> (Tensor, Tensor, Tensor) {
    let mut partner = Vec::with_capacity(idx.len());
    let mut has = Vec::with_capacity(idx.len());
    for &i in idx {
        if cfg.neutral_identity && data.labels[i] == 0 {
            partner.push(i);
            has.push(1.0);
            continue;
        }
        match data.neutral_of[i].choose(rng) {
            Some(&j) => {
                partner.push(j);
                has.push(1.0f32);
            }
            // A neutral face is its own neutral partner.
            None if data.labels[i] == 0 => {
                partner.push(i);
                has.push(1.0);
            }
            None => {
                partner.push(i);
                has.push(0.0);
            }
        }
    }
    let mut query = data.batch(idx, device);
    let mut neutral = data.batch(&partner, device);
    if cfg.augment {
        (query, neutral) = augment(&query, &neutral, rng);
        if step == 2 && cfg.degrade {
            query = degrade(&query, rng);
        }
        if step == 2 && cfg.camera_effects > 0.0 {
            query = camera_effects(&query, cfg.camera_effects, rng);
        }
        if step == 2 && cfg.erase > 0.0 {
            query = erase(&query, cfg.erase, rng);
        }
    }
    (query, neutral, Tensor::from_slice(&has).to_device(device))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Expression;
    use rand::SeedableRng;
    use tch::nn;
    #[test]
    fn camera_effects_change_about_the_share_asked_and_leave_the_rest() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let side = FACE_SIZE as i64;
        // Faces with structure (a ramp plus a bright square), on the 0–255 grid as prepared
        // faces are, so that an untouched face comes back exactly.
        let ramp = Tensor::arange(side, (Kind::Float, Device::Cpu)).view([1, 1, 1, side]) * 3.0;
        let square = Tensor::zeros([1, 1, side, side], (Kind::Float, Device::Cpu));
        let _ = square.narrow(2, 20, 24).narrow(3, 20, 24).fill_(60.0);
        let x = ((ramp + square).expand([200, 1, side, side], false) / 255.0).contiguous();
        let out = camera_effects(&x, 0.3, &mut rng);
        let per_face: Vec<f64> = Vec::try_from((&out - &x).abs().view([200, -1]).mean_dim(
            1,
            false,
            Kind::Float,
        ))
        .expect("floats");
        let changed = per_face.iter().filter(|d| **d > 0.0).count();
        assert!(
            (40..=80).contains(&changed),
            "{changed} of 200 faces changed"
        );
        assert!(out.min().double_value(&[]) >= 0.0 && out.max().double_value(&[]) <= 1.0);
        assert!(camera_effects(&x, 0.0, &mut rng).equal(&x));
    }

    #[test]
    fn erase_replaces_one_rectangle_per_chosen_face_and_nothing_else() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let side = FACE_SIZE as i64;
        // Faces of exactly 2.0: noise is in [0, 1), so every changed pixel is an erased one.
        let x = Tensor::full([64, 1, side, side], 2.0, (Kind::Float, Device::Cpu));
        let out = erase(&x, 0.5, &mut rng);
        let changed = out.ne(2.0).to_kind(Kind::Float);
        let per_face = Vec::<f64>::try_from(changed.sum_dim_intlist(
            [1i64, 2, 3].as_slice(),
            false,
            Kind::Double,
        ))
        .expect("areas");
        let erased: Vec<f64> = per_face.iter().copied().filter(|a| *a > 0.0).collect();
        // About half the faces, each 2–25 % of 4,096 pixels (rounding of the sides aside).
        assert!(
            (20..=44).contains(&erased.len()),
            "{} faces erased",
            erased.len()
        );
        assert!(
            erased.iter().all(|a| (60.0..=1200.0).contains(a)),
            "{erased:?}"
        );
        // One rectangle: its pixel count is the product of its row and column extents.
        for f in 0..64 {
            let m = changed.get(f).get(0);
            let rows = m
                .sum_dim_intlist([1i64].as_slice(), false, Kind::Double)
                .gt(0.0)
                .sum(Kind::Double);
            let cols = m
                .sum_dim_intlist([0i64].as_slice(), false, Kind::Double)
                .gt(0.0)
                .sum(Kind::Double);
            let area = m.sum(Kind::Double).double_value(&[]);
            assert_eq!(
                area,
                rows.double_value(&[]) * cols.double_value(&[]),
                "face {f}"
            );
        }
        assert!(erase(&x, 0.0, &mut rng).equal(&x));
    }

    /// Two performers: A with two neutral photos and a happy one, B with one neutral photo and a
    /// happy one.
    fn two_performers() -> TrainData {
        use crate::data::{DatasetKind, PreparedSet, SampleInfo, Split};
        let faces: Vec<u8> = (0..5u8)
            .flat_map(|i| std::iter::repeat_n(30 * i + 100, FACE_SIZE * FACE_SIZE))
            .collect();
        let sample = |subject: u32, label: Expression| SampleInfo {
            path: String::new(),
            label,
            subject: Some(subject),
            split: Split::Train,
            votes: None,
        };
        let set = PreparedSet {
            kind: DatasetKind::Tfeid,
            samples: vec![
                sample(1, Expression::Neutral),
                sample(1, Expression::Neutral),
                sample(1, Expression::Happy),
                sample(2, Expression::Neutral),
                sample(2, Expression::Happy),
            ],
            faces,
            detected: vec![true; 5],
            unreadable: Vec::new(),
        };
        TrainData::from_sets(&[(&set, (0..5).collect())])
    }

    #[test]
    fn own_partners_are_other_neutral_photos_of_the_same_person() {
        let data = two_performers();
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for _ in 0..20 {
            let p = own_partners(&data, &[0, 1, 2, 3, 4], &mut rng);
            assert_eq!(p[0], Some(1));
            assert_eq!(p[1], Some(0));
            assert!(matches!(p[2], Some(0 | 1)));
            assert_eq!(p[3], None, "B's one neutral photo has no other");
            assert_eq!(p[4], Some(3));
        }
        // Share 1: every face with a partner is compared with a photo of that partner (its grey
        // level, moved and lit on its own), the others keep their generated reference.
        let generated = Tensor::full([5, 1, 64, 64], -1.0, (Kind::Float, Device::Cpu));
        let refs = with_own_references(&data, &[0, 1, 2, 3, 4], &generated, 1.0, &mut rng);
        let mean = |i: i64| refs.get(i).mean(Kind::Float).double_value(&[]);
        assert_eq!(mean(3), -1.0);
        for i in [0, 1, 2, 4] {
            assert!(mean(i) >= 0.0, "face {i}: {}", mean(i));
        }
        assert!(
            (mean(4) - 190.0 / 255.0).abs() < 0.2,
            "B's neutral photo: {}",
            mean(4)
        );
        // Share 0: all generated.
        let refs = with_own_references(&data, &[0, 1, 2, 3, 4], &generated, 0.0, &mut rng);
        assert!(refs.equal(&generated));
    }

    #[test]
    fn beta_draws_have_the_right_mean_and_spread() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let draws: Vec<f64> = (0..20_000).map(|_| beta_symmetric(0.2, &mut rng)).collect();
        assert!(draws.iter().all(|d| (0.0..=1.0).contains(d)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        // Beta(0.2, 0.2): mean 1/2, variance 1 / (4 (2α + 1)) = 0.1786: mostly near 0 or 1.
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
        assert!((var - 0.1786).abs() < 0.01, "variance {var}");
    }

    #[test]
    fn mixup_blends_each_face_with_its_partner() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let x = Tensor::arange(4, (Kind::Float, Device::Cpu)).view([4, 1, 1, 1]);
        let (mixed, perm) = mixup(&x, 0.75, &mut rng);
        let perm = Vec::<i64>::try_from(&perm).expect("indices");
        let mut sorted = perm.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2, 3]);
        for (i, &j) in perm.iter().enumerate() {
            let want = 0.75 * i as f64 + 0.25 * j as f64;
            assert!((mixed.double_value(&[i as i64, 0, 0, 0]) - want).abs() < 1e-6);
        }
    }

    #[test]
    fn step_two_degrades_queries_only_when_asked_and_dropout_follows_the_config() {
        // Four checkerboard faces (stored as bytes 0/255).
        let board: Vec<u8> = (0..64 * 64)
            .map(|i| if (i % 64 + i / 64) % 2 == 0 { 0 } else { 255 })
            .collect();
        let data = TrainData {
            faces: Tensor::from_slice(&board)
                .view([1, 1, 64, 64])
                .repeat([4, 1, 1, 1]),
            labels: vec![1; 4],
            targets: vec![[0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]; 4],
            neutral_of: vec![Vec::new(); 4],
            origin: vec![crate::data::DatasetKind::Ferplus; 4],
        };
        let contrast = |t: &Tensor| t.std(false).double_value(&[]);
        // The same seed draws the same warps and lighting; with degradation on, the blur that
        // follows lowers the checkerboards' contrast, and nothing else differs.
        let with = |degrade: bool| {
            let cfg = TrainConfig {
                degrade,
                ..TrainConfig::default()
            };
            let mut rng = rand::rngs::StdRng::seed_from_u64(9);
            training_batch(&data, &[0, 1, 2, 3], &cfg, 2, Device::Cpu, &mut rng).0
        };
        let (degraded, clean) = (with(true), with(false));
        assert!(
            contrast(&degraded) < contrast(&clean) * 0.95,
            "{} vs {}",
            contrast(&degraded),
            contrast(&clean)
        );
        assert!((with(false) - &clean).abs().max().double_value(&[]) < 1e-6);

        // Dropout: 0 leaves training forward passes deterministic, 0.5 does not.
        let vs = nn::VarStore::new(Device::Cpu);
        let mut cls = crate::model::Classifier::new(&vs.root(), 16, 32, 8);
        let x = Tensor::ones([2, 16], (Kind::Float, Device::Cpu));
        let differ = |c: &crate::model::Classifier| {
            (c.forward_t(&x, true) - c.forward_t(&x, true))
                .abs()
                .max()
                .double_value(&[])
        };
        assert!(differ(&cls) > 0.0);
        cls.dropout = 0.0;
        assert_eq!(differ(&cls), 0.0);
    }

    #[test]
    fn a_neutral_face_is_its_own_target_with_neutral_identity() {
        // Faces 0 and 1: two different neutral photos of one person; 2: their expressive face.
        let data = TrainData {
            faces: Tensor::from_slice(
                &(0..3 * 64 * 64)
                    .map(|i| (i % 251) as u8)
                    .collect::<Vec<_>>(),
            )
            .view([3, 1, 64, 64]),
            labels: vec![0, 0, 1],
            targets: vec![[0.0; 8]; 3],
            neutral_of: vec![vec![0, 1], vec![0, 1], vec![0, 1]],
            origin: vec![crate::data::DatasetKind::Tfeid; 3],
        };
        let differs = |identity: bool, seed: u64| {
            let cfg = TrainConfig {
                neutral_identity: identity,
                augment: false,
                ..TrainConfig::default()
            };
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let (q, t, has) = training_batch(&data, &[0, 1, 2], &cfg, 1, Device::Cpu, &mut rng);
            assert_eq!(Vec::<f32>::try_from(&has).expect("floats"), vec![1.0; 3]);
            let per_face: Vec<f64> = (0..3)
                .map(|i| (q.get(i) - t.get(i)).abs().max().double_value(&[]))
                .collect();
            per_face
        };
        for seed in 0..8 {
            let d = differs(true, seed);
            assert_eq!(&d[..2], &[0.0, 0.0], "neutral faces are their own target");
            assert!(d[2] > 0.0, "the expressive face keeps its neutral partner");
        }
        // Without it a neutral face draws either photo of the person: some seed picks the other.
        assert!((0..8).any(|seed| differs(false, seed)[..2].iter().any(|&d| d > 0.0)));
    }

    #[test]
    fn degradation_blurs_and_keeps_range_and_augmentation_keeps_pairs_aligned() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        // A checkerboard loses contrast under blur, and stays in [0, 1].
        let checker: Vec<f32> = (0..64 * 64)
            .map(|i| ((i % 64 + i / 64) % 2) as f32)
            .collect();
        let x = Tensor::from_slice(&checker)
            .view([1, 1, 64, 64])
            .repeat([16, 1, 1, 1]);
        let y = degrade(&x, &mut rng);
        assert_eq!(y.size(), x.size());
        let (lo, hi) = (y.min().double_value(&[]), y.max().double_value(&[]));
        assert!(lo >= 0.0 && hi <= 1.0);
        let contrast = |t: &Tensor| t.std(false).double_value(&[]);
        assert!(contrast(&y) < contrast(&x) * 0.95);
        // The same face as query and target gets the same warp and lighting.
        let face = Tensor::rand([4, 1, 64, 64], (Kind::Float, Device::Cpu));
        let (q, t) = augment(&face, &face, &mut rng);
        assert!((q - t).abs().max().double_value(&[]) < 1e-6);
    }
}
