//! Per-face standardisation: zero mean and unit variance per image. Part of the network (the
//! encoders' input, applied alike in training and live) and the neutral-face subspace's measure.
use tch::Tensor;

/// Zero mean and unit variance per image (N×1×H×W), with a floor on the deviation so that a
/// flat image is not blown up into noise.
pub fn standardize(x: &Tensor) -> Tensor {
    standardize_undoably(x).0
}

/// [`standardize`], with each image's mean and deviation (N×1×1×1) to undo it:
/// `standardized * deviation + mean` is the image again.
pub fn standardize_undoably(x: &Tensor) -> (Tensor, Tensor, Tensor) {
    let dims = [1i64, 2, 3];
    let mean = x.mean_dim(dims.as_slice(), true, x.kind());
    let centred = x - &mean;
    let std = centred
        .square()
        .mean_dim(dims.as_slice(), true, x.kind())
        .sqrt()
        .clamp_min(0.02);
    (centred / &std, mean, std)
}
