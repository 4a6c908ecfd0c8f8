//! How the live app's rule for taking a person's own neutral face by itself
//! ([`AutoNeutralRule`]) fares on faces: each face is turned into the frames a webcam gives of a
//! still face ([`webcam_frames`]), the network scores them against their generated references as
//! the live app does, and the rule's own watcher ([`AutoNeutral`]) is fed those frames one by
//! one. A neutral face that is taken is what the rule is for; an expressive face that is taken
//! would become a wrong reference until the person leaves the view or presses N.
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::face::{AlignedFace, DetectedFace, FACE_SIZE};
use crate::infer::Predictor;
use crate::labels::{Expression, NUM_CLASSES};
use crate::pipeline::{AutoNeutral, AutoNeutralRule};

/// `n` copies of `face` as a webcam's frames of a still face differ: each moved by up to 1.5
/// pixels, turned by up to 2°, scaled by up to 2 % and given sensor noise (σ 0.01).
pub fn webcam_frames(
    face: &AlignedFace,
    n: usize,
    rng: &mut impl Rng,
) -> Result<Vec<AlignedFace>, tch::TchError> {
    let side = FACE_SIZE as i64;
    let pixel = 2.0 / side as f32;
    let mut theta = Vec::with_capacity(6 * n);
    for _ in 0..n {
        let angle = rng.gen_range(-2f32..2.0).to_radians();
        let scale = rng.gen_range(0.98f32..1.02);
        let (tx, ty) = (
            rng.gen_range(-1.5..1.5) * pixel,
            rng.gen_range(-1.5..1.5) * pixel,
        );
        let (c, s) = (scale * angle.cos(), scale * angle.sin());
        theta.extend([c, -s, tx, s, c, ty]);
    }
    let n64 = n as i64;
    let theta = Tensor::from_slice(&theta).view([n64, 2, 3]);
    let x = Tensor::from_slice(&face.pixels)
        .to_kind(Kind::Float)
        .view([1, 1, side, side])
        .expand([n64, 1, side, side], false);
    let grid = Tensor::affine_grid_generator(&theta, [n64, 1, side, side], false);
    let moved = Vec::<f32>::try_from(x.grid_sampler(&grid, 0, 1, false).flatten(0, -1))?;
    // Uniform noise with a standard deviation of 0.01.
    let half = 0.01 * 3f32.sqrt();
    Ok(moved
        .chunks(FACE_SIZE * FACE_SIZE)
        .map(|c| AlignedFace {
            pixels: c
                .iter()
                .map(|&v| (v + rng.gen_range(-half..half)).clamp(0.0, 1.0))
                .collect(),
        })
        .collect())
}

/// Faces of each class, and how many of them the rule took as a neutral face.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AutoNeutralCheck {
    pub min_neutral: f32,
    pub frames: usize,
    pub faces: [u64; NUM_CLASSES],
    pub taken: [u64; NUM_CLASSES],
}

impl AutoNeutralCheck {
    /// Share of the neutral faces taken.
    pub fn neutral_taken(&self) -> f64 {
        let i = Expression::Neutral.index();
        self.taken[i] as f64 / self.faces[i].max(1) as f64
    }

    /// Share of the faces of every other class taken.
    pub fn expressive_taken(&self) -> f64 {
        let i = Expression::Neutral.index();
        let sum = |v: &[u64; NUM_CLASSES]| v.iter().sum::<u64>() - v[i];
        sum(&self.taken) as f64 / sum(&self.faces).max(1) as f64
    }

    pub fn markdown(&self) -> String {
        let by_class: Vec<String> = Expression::ALL
            .iter()
            .filter(|e| **e != Expression::Neutral && self.faces[e.index()] > 0)
            .map(|e| {
                format!(
                    "{} {}/{}",
                    e.name(),
                    self.taken[e.index()],
                    self.faces[e.index()]
                )
            })
            .collect();
        let n = Expression::Neutral.index();
        format!(
            "\nThe own neutral face taken by itself (neutral probability ≥ {:.2} on {} runs in a row), each face as {} webcam-like frames of a still face: **{:.1} %** of the neutral faces taken ({}/{}), **{:.1} %** of the expressive ones ({}).\n",
            self.min_neutral,
            self.frames,
            self.frames,
            self.neutral_taken() * 100.0,
            self.taken[n],
            self.faces[n],
            self.expressive_taken() * 100.0,
            by_class.join(", ")
        )
    }
}

/// Feeds each labelled face to the rule as `rule.frames` webcam-like frames (seeded by `seed`),
/// scored by `predictor` against their generated references, and counts the faces taken.
pub fn check(
    predictor: &Predictor,
    faces: impl IntoIterator<Item = (Expression, AlignedFace)>,
    rule: AutoNeutralRule,
    seed: u64,
) -> Result<AutoNeutralCheck, tch::TchError> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut out = AutoNeutralCheck {
        min_neutral: rule.min_neutral,
        frames: rule.frames,
        ..Default::default()
    };
    let tracked = DetectedFace {
        bbox: [0.0; 4],
        landmarks: [[0.0; 2]; 5],
        score: 1.0,
        track: 1,
        held: false,
    };
    for (label, face) in faces {
        let frames = webcam_frames(&face, rule.frames, &mut rng)?;
        let predictions = predictor.predict(&frames, None)?;
        let mut auto = AutoNeutral::new(rule);
        let taken = frames.into_iter().zip(&predictions).any(|(frame, p)| {
            auto.watch(&[(tracked.clone(), frame)], std::slice::from_ref(p))
                .is_some()
        });
        out.faces[label.index()] += 1;
        out.taken[label.index()] += u64::from(taken);
    }
    Ok(out)
}
