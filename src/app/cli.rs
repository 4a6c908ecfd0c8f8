//! Command-line interface (clap derive). `dgcn` with no subcommand runs `live`.
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::data::DatasetKind;
use crate::face::detect::BlazeFaceVariant;
use crate::model::subspace::FaceRegion;

#[derive(Parser, Debug)]
#[command(name = "dgcn", version = crate::VERSION_LINE, about = "Facial expression recognition with a deep generative-contrastive network (GCNet)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The live app (default): camera, video or images → faces → expressions, in a window or headless.
    Live(LiveArgs),
    /// Train GCNet (generator first, then the whole network).
    Train(TrainArgs),
    /// Cross-validate and test: accuracy, confusion matrices, reference fidelity.
    Eval(EvalArgs),
    /// Recognise expressions in images; one JSON line per image on stdout.
    Infer(InferArgs),
    /// Refit the temperature (optionally a logit adjustment) and the intensity scale of existing
    /// weights on validation data (FER+ Valid and held-out TFEID performers) and rewrite their
    /// sidecar.
    Calibrate(CalibrateArgs),
    /// Show which device, libraries and model files would be used.
    Doctor(CommonArgs),
    /// Time each stage and the whole pipeline on a clip; prints a Markdown table.
    Bench(BenchArgs),
    /// Browse a recorded session: frames, query and reference, labels, confusion, export.
    Open(OpenArgs),
    /// Datasets: `dgcn data pack` writes the prepared faces into one file that travels.
    #[command(subcommand)]
    Data(DataCommand),
}

#[derive(clap::Subcommand, Debug)]
pub enum DataCommand {
    /// Detect, align and write the datasets into one compact file (labels, subjects, splits,
    /// FER+ votes) that `train`/`eval --pack FILE` read like a dataset.
    Pack(PackArgs),
}

#[derive(Args, Debug)]
pub struct PackArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Datasets, in the order they are packed (a size limit cuts the last that passes it).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "tfeid,ckplus48,ferplus"
    )]
    pub datasets: Vec<crate::data::DatasetKind>,
    /// The pack to write.
    #[arg(long)]
    pub out: PathBuf,
    /// Keep the pack under this many MiB: the dataset that would pass it keeps as many of its
    /// training faces as fit (then validation, then test), later ones are left out.
    #[arg(long)]
    pub max_mb: Option<f64>,
    /// The splits whose faces are packed (e.g. `train,valid` for a machine that only trains).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "train,valid,test"
    )]
    pub splits: Vec<crate::data::Split>,
}

#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// BlazeFace ONNX model (default: $DGCN_BLAZEFACE, ~/.rust_faces, or download).
    #[arg(long)]
    pub detector: Option<PathBuf>,
    /// BlazeFace variant.
    #[arg(long, value_enum, default_value = "640")]
    pub detector_variant: BlazeFaceVariant,
    /// auto, cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Threads for libtorch and ONNX Runtime (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Number format of the model at inference: auto (on a CPU with native bf16, whichever of
    /// f32 and bf16 runs the weights faster, timed at start; else f32), f32 or bf16.
    #[arg(long, value_enum, default_value = "auto")]
    pub precision: crate::device::Precision,
}

impl CommonArgs {
    /// The runtime these flags ask for.
    pub fn runtime(&self) -> crate::runtime::Runtime {
        crate::runtime::Runtime {
            device: self.device.clone(),
            threads: self.threads,
            detector_model: self.detector.clone(),
            detector_variant: self.detector_variant,
            precision: self.precision,
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Folder holding the dataset archives (tfeid.tar.gz, …) or folders named tfeid, ckplus48, ….
    #[arg(long, env = "DGCN_DATA", default_value = "../shared/data")]
    pub data: PathBuf,
    /// Where prepared (detected and aligned) datasets are cached.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Use at most this many images per class and split (quick runs).
    #[arg(long)]
    pub max_per_class: Option<usize>,
    /// Read the datasets from this pack (`dgcn data pack`) instead of --data: prepared faces,
    /// no archives and no face detector needed.
    #[arg(long, env = "DGCN_PACK")]
    pub pack: Option<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct ModelTrainArgs {
    /// Generator-only epochs (step 1).
    #[arg(long, default_value_t = 10)]
    pub gen_epochs: usize,
    /// End-to-end epochs (step 2).
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Step 1's learning rate (default: --lr).
    #[arg(long)]
    pub gen_lr: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Width multiplier of the 32/64/96 channels.
    #[arg(long, default_value_t = 1.0)]
    pub width: f64,
    /// Width multiplier of the contrastive encoder alone (default: --width). It carries the
    /// recognition and runs twice per face, on query and reference.
    #[arg(long)]
    pub encoder_width: Option<f64>,
    /// Convolutions in the contrastive encoder's second and third stage (1: the paper's Fig. 3).
    #[arg(long, default_value_t = 1)]
    pub encoder_convs: i64,
    /// Train without L_Contr (ablation).
    #[arg(long)]
    pub no_contrastive: bool,
    /// Train without the reconstruction decoder and L_Recon (ablation).
    #[arg(long)]
    pub no_reconstruction: bool,
    /// Hidden units of the classifier.
    #[arg(long, default_value_t = 256)]
    pub hidden: i64,
    /// Turn off augmentation.
    #[arg(long)]
    pub no_augment: bool,
    /// Step 2 without the camera degradations (blur, sensor noise) of the classifier's queries.
    #[arg(long)]
    pub no_degrade: bool,
    /// Dropout probability on the classifier's hidden layer in step 2.
    #[arg(long, default_value_t = crate::model::DEFAULT_DROPOUT)]
    pub dropout: f64,
    /// What the classifier sees: the paper's contrastive representation alone (`contrast`) or
    /// the query's embedding beside it (`query-and-contrast`).
    #[arg(long, value_enum, default_value = "query-and-contrast")]
    pub classifier_input: crate::model::ClassifierInput,
    /// Feed the encoders the face as it is (centred) instead of standardised per image.
    #[arg(long)]
    pub no_standardize: bool,
    /// Class weights ∝ frequency^−B in L_Cls (0: none, 1: fully inverse frequency).
    #[arg(long, default_value_t = 0.5)]
    pub class_balance: f64,
    /// Let L_Cls, L_Contr and L_Gen train the generator in step 2 (the paper's end-to-end step)
    /// instead of holding it as step 1 left it.
    #[arg(long)]
    pub generator_in_step2: bool,
    /// Weights of a network trained on real faces that guides the generator in step 1: its call
    /// on G(x) of an expressive face should be "neutral" (the neutrality loss). Held frozen; the
    /// network that judges references (`eval --judge`) must be another one.
    #[arg(long)]
    pub neutrality_guide: Option<PathBuf>,
    /// Weight of 1 − SSIM(G(x), true neutral) beside L_Gen's L1 in step 1 (0: L1 only).
    #[arg(long, default_value_t = 0.0)]
    pub lambda_ssim: f64,
    /// Step 1: fit a neutral-face subspace of this many principal components on the training
    /// data's neutral faces; expressive faces without a neutral photo of their own (FER+, CK+48)
    /// learn toward their projection onto it (0: off; e.g. 300).
    #[arg(long, default_value_t = 0)]
    pub neutral_subspace: usize,
    /// Weight of that term beside L_Gen (with --neutral-subspace).
    #[arg(long, default_value_t = 1.0)]
    pub lambda_subspace: f64,
    /// Where --neutral-subspace acts: `face` (the whole face), or regions of it, each projected
    /// on its own subspace and blended back into the face, which keeps the rest of it as it is
    /// (e.g. `mouth` or `mouth,brows`).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "face")]
    pub subspace_regions: Vec<FaceRegion>,
    /// Every neutral face is its own target in step 1 (G(n) = n) instead of a random neutral
    /// photo of the same person.
    #[arg(long)]
    pub neutral_identity: bool,
    /// Start the generator from these weights' trained generator (same width and input
    /// standardisation); the encoder and classifier may have another layout (`--encoder-width`,
    /// `--encoder-convs`) and start fresh. With `--gen-epochs 0` it is used as it is.
    #[arg(long)]
    pub generator_from: Option<PathBuf>,
    /// Weight of the neutrality loss (with --neutrality-guide).
    #[arg(long, default_value_t = 0.1)]
    pub lambda_neutral: f64,
    /// Weight of the total variation of the generator's edit G(x) − x in step 1.
    #[arg(long, default_value_t = 0.0)]
    pub lambda_tv: f64,
    /// The generator also warps the face (a displacement field beside its edit), so that it can
    /// close a mouth by moving the lips. With --generator-from a plain generator: its function
    /// kept, the field starting at zero.
    #[arg(long)]
    pub generator_warp: bool,
    /// Smooth noisy input faces (sensor noise) before the network reads them, by as much as
    /// each face's estimated noise asks; clean faces pass unchanged. Part of the network: in
    /// training, evaluation and live alike (without --init; with it, as its weights say).
    #[arg(long)]
    pub denoise: bool,
    /// Project the reference's mouth region onto this many principal components of the training
    /// data's neutral mouths (fitted when training starts, stored with the weights), so that the
    /// reference's mouth is closed whatever the generator leaves (e.g. 40; 0: none). Default: as
    /// the --init weights have it, else none.
    #[arg(long, value_name = "K")]
    pub reference_mouth: Option<usize>,
    /// Weight of the total variation of the warping generator's displacement field in step 1.
    #[arg(long, default_value_t = 0.0)]
    pub lambda_flow: f64,
    /// The paper's Fig. 3 and training exactly: contrast-only classifier, centred input,
    /// generator trained end to end in step 2, no class weights.
    #[arg(long)]
    pub paper: bool,
    /// Step 2 draws N × a dataset's size from it per epoch, e.g. `tfeid=4,ckplus48=4`: the posed
    /// lab sets (≈ 2 k faces) beside FER+'s 28 k. The draws are spread evenly over the dataset's
    /// classes (its own class mix would otherwise become a prior for faces that look like it);
    /// the class weights count the repeats.
    #[arg(long, value_delimiter = ',', value_parser = parse_repeat)]
    pub repeat: Vec<(DatasetKind, usize)>,
    /// `--repeat` draws every face of the dataset N times instead (its class mix kept).
    #[arg(long)]
    pub repeat_plain: bool,
    /// Step 2 keeps an exponential moving average of the weights (decay per batch, e.g. 0.998),
    /// validates and writes it after every epoch and ends with it (0: off). A resumed run goes
    /// on from the averaged checkpoint.
    #[arg(long, default_value_t = 0.0)]
    pub ema: f64,
    /// With --init: start from those weights with the contrastive encoder twice as wide (every
    /// channel copied, the function unchanged), to train on with more capacity.
    #[arg(long)]
    pub widen_encoder: bool,
    /// With --init: start from those weights with a second convolution in the contrastive
    /// encoder's stages 2 and 3, as residual blocks that start as the identity (the function
    /// unchanged), to train on with more depth.
    #[arg(long, conflicts_with = "widen_encoder")]
    pub deepen_encoder: bool,
    /// End with the step-2 epoch that scored best on the validation data instead of the last
    /// (its epoch is logged; a resumed run only compares the epochs it ran).
    #[arg(long)]
    pub keep_best: bool,
    /// Step 2: random erasing of the classifier's query: each face has a rectangle (2–25 % of its
    /// area, aspect 1:3 to 3:1) replaced by noise with this probability (0: off), so that a hand,
    /// glasses or a shadow over part of the face does not decide its class.
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub erase: f64,
    /// Step 2: degrade each query with this probability as a camera would — blur (σ 0.3–2 px),
    /// sensor noise (σ 0.005–0.08), JPEG (quality 15–90), a far face (16–48 px wide), exposure
    /// (gamma 0.55–1.8), each with probability 0.4 — so that faces from dim, blurred or
    /// compressed video are recognised (`eval --degrade camera` measures it; 0: off).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub camera_effects: f64,
    /// Step 2: mixup on half the batches: two faces blended with a weight drawn from
    /// Beta(ALPHA, ALPHA), their targets alike (0: off; e.g. 0.2).
    #[arg(long, default_value_t = 0.0, value_name = "ALPHA")]
    pub mixup: f64,
    /// Step 2: compare this share of the faces that have another neutral photo of their person
    /// (TFEID) with that photo instead of their generated reference, so that the classifier also
    /// learns from real neutral references, as the window's "Use my neutral face" gives (0: off).
    /// With --mixup, a blended batch is compared with its generated references alone (a blend of
    /// two faces has no neutral photo of its own).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub own_reference_share: f64,
}

/// `on` / `off` of a switch that overrides what the weights' sidecar says.
fn parse_on_off(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("`{other}`: expected on or off")),
    }
}

/// `DATASET=N` of `--repeat`.
fn parse_repeat(s: &str) -> Result<(DatasetKind, usize), String> {
    let (name, n) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}`: expected DATASET=N, e.g. tfeid=8"))?;
    let kind = <DatasetKind as clap::ValueEnum>::from_str(name.trim(), true)
        .map_err(|_| format!("`{name}`: not a dataset (tfeid, ckplus48, fer2013, ferplus)"))?;
    let n: usize = n
        .trim()
        .parse()
        .map_err(|_| format!("`{n}`: expected a whole number of times, 1 or more"))?;
    if n == 0 {
        return Err(format!(
            "`{s}`: a dataset drawn 0 times is left out with --datasets instead"
        ));
    }
    Ok((kind, n))
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelTrainArgs,
    #[command(flatten)]
    pub sets: TrainSetArgs,
    /// Run folder: config, metrics, checkpoints, grids.
    #[arg(long, default_value = "runs/latest")]
    pub run: PathBuf,
    /// Where to write the final weights (+ .json sidecar).
    #[arg(long, default_value = "runs/latest/gcnet.safetensors")]
    pub weights: PathBuf,
    /// Continue from the run folder's checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Start from these weights (their model variant is used; e.g. a FER+-pretrained network).
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Fit a logit adjustment for the class prior with the temperature (see `dgcn calibrate`).
    #[arg(long)]
    pub logit_adjustment: bool,
    /// Distillation: other networks' predictions on the training faces (`dgcn eval --split train
    /// --weights W --out D` writes D/predictions_ferplus.csv), combined per face by their
    /// geometric mean and blended into each matched face's target (--teacher-share). The
    /// combination is written to the run folder as teacher_targets.csv.
    #[arg(long, value_delimiter = ',', value_name = "CSV")]
    pub teacher_predictions: Vec<PathBuf>,
    /// Share of the teachers' distribution in the target of a face they scored (the rest: its
    /// own target, FER+'s vote shares or the label).
    #[arg(
        long,
        default_value_t = 0.5,
        value_name = "S",
        requires = "teacher_predictions"
    )]
    pub teacher_share: f64,
}

/// What `train` trains on and validates with (and `calibrate` refits on).
#[derive(Args, Debug, Clone)]
pub struct TrainSetArgs {
    /// Datasets to train on (their training splits; FER+ Valid validates).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "tfeid,ckplus48,ferplus"
    )]
    pub datasets: Vec<DatasetKind>,
    /// TFEID performers held out for validation and the reference grid.
    #[arg(long, default_value_t = 3)]
    pub holdout_subjects: usize,
    /// Seed that chooses those performers. Apart from --seed, so that a run with another draw
    /// order validates on the same performers as the weights it starts from (--seed chose them
    /// until 2026-11-29, and a run with another seed validated on performers its initial
    /// weights had trained on).
    #[arg(long, default_value_t = HOLDOUT_SEED)]
    pub holdout_seed: u64,
}

/// The default `--holdout-seed`: the `--seed` of every training run before 2026-11-29 but two.
pub const HOLDOUT_SEED: u64 = 1;

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// The weights whose sidecar gets the calibration.
    #[arg(long)]
    pub weights: PathBuf,
    /// The datasets and held-out performers the weights were trained with.
    #[command(flatten)]
    pub sets: TrainSetArgs,
    /// Also fit a logit adjustment for the class prior (off by default: on the previous run it
    /// raised FER+ Valid's mean recall but turned the labelled clip's neutral frames to sad).
    #[arg(long)]
    pub logit_adjustment: bool,
    /// Average each face's logits with its mirror image's at inference (test-time flip); the
    /// temperature is fitted with it. Stored in the sidecar.
    #[arg(long)]
    pub flip: bool,
    /// Smooth noisy input faces before the network reads them (clean faces pass unchanged;
    /// `train --denoise`); the calibration is fitted with it. Stored in the sidecar.
    #[arg(long)]
    pub denoise: bool,
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub model: ModelTrainArgs,
    /// Datasets: tfeid and ckplus48 are cross-validated (a network trained per fold), fer2013 and
    /// ferplus use their official test split with --weights.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "tfeid,ckplus48,fer2013,ferplus"
    )]
    pub datasets: Vec<DatasetKind>,
    /// Weights for the test-split datasets (default: the shipped weights).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    #[arg(long, default_value_t = 10)]
    pub folds: usize,
    /// Run only the first N folds (quick checks; the report says so).
    #[arg(long)]
    pub only_folds: Option<usize>,
    /// Start at fold F (1-based), e.g. to finish a cross-validation whose first folds ran
    /// before: the folds and each fold's training are the same (same --seed); the report says
    /// which folds ran.
    #[arg(long, value_name = "F", value_parser = clap::value_parser!(u64).range(1..))]
    pub from_fold: Option<u64>,
    /// The split fer2013/ferplus are scored on: `valid` (FER+ only) is for choosing weights,
    /// `test` for reporting.
    #[arg(long, value_enum, default_value = "test")]
    pub split: crate::data::Split,
    /// Cross-validation starts every fold from these weights and fine-tunes them on the fold's
    /// training subjects (e.g. a network pretrained on FER+, which holds none of TFEID's or
    /// CK+'s people), instead of training each fold from scratch.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Cross-dataset rows instead of cross-validation for tfeid and ckplus48: train on the other
    /// lab dataset (from --init when given) and test on all of this one.
    #[arg(long)]
    pub cross_dataset: bool,
    /// In cross-validation and cross-dataset rows, also train every fold and row on these
    /// datasets' training splits (in-the-wild faces: none of TFEID's or CK+'s people), e.g.
    /// `ferplus`, so that a fold keeps what the in-the-wild data teaches (neutral among it).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub add_datasets: Vec<DatasetKind>,
    /// With --add-datasets: at most N training faces per class of each added dataset (the first
    /// N in the dataset's order), to keep a fold's epoch short.
    #[arg(long, value_name = "N")]
    pub add_per_class: Option<usize>,
    /// Fit each fold and cross-dataset network's intensity (the distance's weights and its
    /// scale) on FER+ Valid, faces none of them trained on, as `dgcn calibrate` does for the
    /// shipped weights, instead of on the network's own training faces (the own-reference scale
    /// still on the training performers' neutral pairs). Needs FER+ in the data.
    #[arg(long)]
    pub intensity_on_valid: bool,
    /// Weights of the network that judges whether generated references look neutral: one trained
    /// on real faces that did not guide the generator (default: each fold's network itself).
    #[arg(long)]
    pub judge: Option<PathBuf>,
    /// Score --weights on the N TFEID performers that `dgcn train --holdout-subjects N` (same
    /// --holdout-seed) held out, instead of cross-validating TFEID: accuracy, reference fidelity
    /// (judged by --judge) and a grid of their references in --out.
    #[arg(long, value_name = "N")]
    pub held_out: Option<usize>,
    /// The seed that chose those performers (as in `dgcn train`).
    #[arg(long, default_value_t = HOLDOUT_SEED)]
    pub holdout_seed: u64,
    /// Also write `reference_grid.png` to --out: eight evenly spaced frames of this clip (`demo`
    /// for the demo clip), each as query | generated reference | difference, with --weights.
    #[arg(long, value_name = "CLIP")]
    pub grid_clip: Option<PathBuf>,
    /// Folder for report.json and report.md.
    #[arg(long, default_value = "runs/eval")]
    pub out: PathBuf,
    /// With --weights: average each face's logits with its mirror image's (test-time flip),
    /// whatever the sidecar says.
    #[arg(long)]
    pub flip: bool,
    /// With --weights: smooth noisy input faces (`on`) or not (`off`), whatever their sidecar
    /// says (`--denoise` is for the networks eval trains itself).
    #[arg(long, value_name = "on|off", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub weights_denoise: Option<bool>,
    /// With --weights and --split: score the same faces again degraded as cameras degrade them,
    /// a row each in the report: `camera` for a standard set, or effects such as `blur:1.5`,
    /// `noise:0.05`, `jpeg:30`, `faraway:24` (the face that many pixels wide), `gamma:1.8`,
    /// joined by `+` to apply several (`faraway:32+jpeg:50`). Applied to the aligned 64×64 faces.
    #[arg(long, value_name = "SPEC", value_delimiter = ',')]
    pub degrade: Vec<String>,
    /// With --weights and --split: also try the live app's rule for taking the own neutral face
    /// by itself on every face of the split, each turned into 8 webcam-like frames of a still face
    /// (moved ≤ 1.5 px, turned ≤ 2°, scaled ≤ 2 %, noise σ 0.01): the share of neutral and of
    /// expressive faces it would take (8 forward passes per face).
    #[arg(long)]
    pub auto_neutral_check: bool,
    /// Re-score a recorded session instead: run --weights over its faces and compare with its
    /// labels (and with the predictions recorded at the time).
    #[arg(long, value_name = "SESSION")]
    pub session: Option<PathBuf>,
    /// Score --weights on a folder of labelled photos instead (any dataset): each image's label
    /// is the nearest folder above it named after an expression (`happy`, `anger`, `sadness`,
    /// …); accuracy, mean recall and the confusion matrix, and every photo's prediction in
    /// --out/predictions_folder.csv.
    #[arg(long, value_name = "FOLDER", conflicts_with = "session")]
    pub folder: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct InferArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Weights (default: $DGCN_WEIGHTS or the shipped weights/gcnet.safetensors).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Treat each whole image as an already-cropped face (no detection).
    #[arg(long)]
    pub aligned: bool,
    /// Write <stem>.query.png and <stem>.reference.png for the largest face here (for an image
    /// found in a folder, <stem> is its path inside that folder with `_` for `/`).
    #[arg(long)]
    pub save_reference: Option<PathBuf>,
    /// Images to read; a folder stands for every image in it and its subfolders, in path order.
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
}

#[derive(Args, Debug, Clone)]
pub struct LiveArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Weights (default: $DGCN_WEIGHTS or the shipped weights/gcnet.safetensors).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// `camera`, `camera:N`, `demo`, a video file, an image or a folder of images
    /// (default: the first camera, or the demo clip when there is none).
    #[arg(long)]
    pub source: Option<crate::capture::SourceSpec>,
    /// Camera resolution to ask for (the closest the camera offers is used).
    #[arg(long, default_value = "640x480", value_parser = parse_resolution)]
    pub camera_resolution: (u32, u32),
    /// Camera frame rate to ask for.
    #[arg(long, default_value_t = 30)]
    pub camera_fps: u32,
    /// Search the whole frame every N frames and track faces in between (1: every frame).
    #[arg(long, default_value_t = 10)]
    pub detect_every: u32,
    /// Whole-frame searches run on the frame scaled to this longer side (0: full size).
    #[arg(long, default_value_t = 320)]
    pub detect_max_side: u32,
    /// A face that has not moved (its region changed less than a one-pixel shift would change
    /// it) keeps its landmarks and the model's result for up to N frames in a row, without
    /// running the detector or the model (0: both run on every frame).
    #[arg(long, default_value_t = crate::face::TrackConfig::default().still_max)]
    pub hold_still: u32,
    /// A tracked face is searched for in a crop twice its box's size, scaled to this many pixels
    /// a side (the detector's cost grows with its square; 64 to 640).
    #[arg(long, default_value_t = crate::face::TrackConfig::default().roi_side_px,
          value_parser = clap::value_parser!(u32).range(64..=640))]
    pub track_crop: u32,
    /// Run the pipeline without a window and write one JSON line per frame.
    #[arg(long)]
    pub headless: bool,
    /// Where the JSON lines go in headless mode (`-`: standard output).
    #[arg(long, default_value = "-")]
    pub out: PathBuf,
    /// Stop after this many frames.
    #[arg(long)]
    pub max_frames: Option<u64>,
    /// Headless: play videos at their own frame rate and drop frames the pipeline cannot keep up
    /// with, as with a camera (default: every frame, as fast as possible).
    #[arg(long)]
    pub realtime: bool,
    /// Headless: from the first frame at or after this time (seconds) that shows a face, compare
    /// that face with itself as it was then — the person's own neutral face, as the window's
    /// "Use my neutral face" (N) does — instead of the generated reference.
    #[arg(long, value_name = "SECONDS")]
    pub own_neutral_at: Option<f64>,
    /// The own neutral face (N in the window, `--own-neutral-at`) is the mean of the face taken
    /// and of its next crops, over this many frames the model runs on (1: the one face taken),
    /// so that one frame's jitter does not become the reference.
    #[arg(long, value_name = "N", default_value_t = crate::pipeline::DEFAULT_OWN_FRAMES,
          value_parser = clap::value_parser!(u16).range(1..=300))]
    pub own_neutral_frames: u16,
    /// Do not take a face as its own neutral face by itself. By default, once the model has
    /// called a tracked face neutral with a probability of at least 0.8 (calibrated) on as many
    /// of its runs in a row as `--own-neutral-frames`, those frames become that person's own
    /// neutral face, as if N had been pressed (the window's "take my neutral face by itself";
    /// off with `--own-neutral-at`, and in the window when the generated reference is chosen).
    #[arg(long)]
    pub no_auto_neutral: bool,
    /// Start a video again when it ends.
    #[arg(long = "loop")]
    pub looped: bool,
    /// Record the session into this folder (created; it must not exist yet).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Headless recording: take each frame's label from this CSV (`frame,label` columns, as
    /// the labelled clips have; labels that are not one of the 8 expressions mean none).
    #[arg(long, value_name = "CSV")]
    pub labels: Option<PathBuf>,
    /// Window: where recordings go (default ~/dgcn-sessions), one new folder each.
    #[arg(long, value_name = "DIR")]
    pub sessions_dir: Option<PathBuf>,
    /// Also save every whole frame as JPEG in the session.
    #[arg(long)]
    pub record_frames: bool,
    /// Window: after this many frames, save a screenshot of the window to PATH (and its layout to
    /// PATH.json), then close. For tests and documentation.
    #[arg(long, value_name = "PATH")]
    pub screenshot: Option<PathBuf>,
    /// Frames to show before `--screenshot` is taken.
    #[arg(long, default_value_t = 45)]
    pub screenshot_after: u64,
}

fn parse_resolution(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X', '×'])
        .ok_or_else(|| format!("{s}: expected WIDTHxHEIGHT, as in 640x480"))?;
    match (w.trim().parse(), h.trim().parse()) {
        (Ok(w), Ok(h)) if w > 0 && h > 0 => Ok((w, h)),
        _ => Err(format!("{s}: expected WIDTHxHEIGHT, as in 640x480")),
    }
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Weights (default: $DGCN_WEIGHTS or the shipped weights/gcnet.safetensors).
    #[arg(long, default_value_os_t = crate::infer::default_weights_path())]
    pub weights: PathBuf,
    /// The clip to measure on.
    #[arg(
        long,
        default_value = "../shared/clips/synth_tfeid_s01_expressions.mp4"
    )]
    pub clip: PathBuf,
    /// Frames of the clip used for the per-stage timings.
    #[arg(long, default_value_t = 60)]
    pub frames: usize,
    /// Passes over those frames per stage.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Frames of the clip for the whole-pipeline runs (0: all).
    #[arg(long, default_value_t = 0)]
    pub pipeline_frames: u64,
    /// Also run the looped clip for this many frames and report memory along the way.
    #[arg(long, default_value_t = 0)]
    pub memory_frames: u64,
    /// Also write the report to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Measure training throughput instead: samples/s of step 1 and step 2 on TFEID + CK+48,
    /// one row per configuration (the paper's end-to-end step and the shipped recipe, at width
    /// 0.5 and 1.0).
    #[arg(long)]
    pub train: bool,
    /// Measure GCNet's forward time at batch 1 for each candidate model layout instead (random
    /// weights; the live budget is 5 ms).
    #[arg(long)]
    pub layouts: bool,
    /// Measure GCNet's forward with --weights instead, at batch 1, 8 and 64 on the CPU and on
    /// every CUDA device (no clip needed).
    #[arg(long)]
    pub model: bool,
    #[command(flatten)]
    pub data: DataArgs,
}

#[derive(Args, Debug, Clone)]
pub struct OpenArgs {
    /// The session folder (made by recording in the app or with `dgcn live --record`).
    pub session: PathBuf,
    /// Start at this frame.
    #[arg(long)]
    pub frame: Option<u64>,
    /// Save a screenshot of the window to PATH (and its layout to PATH.json), then close.
    #[arg(long, value_name = "PATH")]
    pub screenshot: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeat_reads_dataset_and_times_and_rejects_the_rest() {
        assert_eq!(parse_repeat("tfeid=8"), Ok((DatasetKind::Tfeid, 8)));
        assert_eq!(parse_repeat("CKPLUS48 = 3"), Ok((DatasetKind::Ckplus48, 3)));
        for bad in ["tfeid", "tfeid=0", "tfeid=-2", "jaffe=4", "tfeid=x"] {
            assert!(parse_repeat(bad).is_err(), "{bad}");
        }
        let args = Cli::try_parse_from(["dgcn", "train", "--repeat", "tfeid=8,ckplus48=4"]);
        let Ok(Cli {
            command: Some(Command::Train(t)),
            ..
        }) = args
        else {
            panic!("train --repeat did not parse");
        };
        assert_eq!(
            t.model.repeat,
            vec![(DatasetKind::Tfeid, 8), (DatasetKind::Ckplus48, 4)]
        );
    }
}
