//! `dgcn bench` of the model alone (no clip, no FFmpeg): GCNet's forward with given weights per
//! device and batch size (`--model`), the candidate layouts at batch 1 (`--layouts`) and training
//! throughput (`--train`).
use anyhow::{Context, Result};
use tch::Device;

use super::{finish_report, median_p95, time_ms};
use crate::app::cli::BenchArgs;
use crate::device::device_name;

/// `dgcn bench --train`: one epoch of each step per configuration on TFEID + CK+48, samples/s.
pub(super) fn run_train_bench(args: &BenchArgs) -> Result<()> {
    use crate::data::DatasetKind;
    use crate::learn::{
        pool::TrainData,
        train::{train, TrainConfig},
    };
    use crate::model::ModelConfig;
    let device = args.common.runtime().device()?;
    let sets = crate::app::learn::prepare_all(
        &[DatasetKind::Tfeid, DatasetKind::Ckplus48],
        &args.data,
        &args.common,
    )?;
    let parts: Vec<_> = sets.iter().map(|s| (s, (0..s.len()).collect())).collect();
    let data = TrainData::from_sets(&parts);
    let mut md = String::from(
        "| configuration | width | step 1 samples/s | step 2 samples/s |\n|---|---:|---:|---:|\n",
    );
    eprintln!(
        "  {:<58} {:>5} {:>10} {:>10}",
        "configuration", "width", "step 1/s", "step 2/s"
    );
    for width in [0.5, 1.0] {
        let paper = TrainConfig {
            model: ModelConfig {
                width,
                ..ModelConfig::default()
            },
            generator_in_step2: true,
            ..TrainConfig::default()
        };
        let shipped = TrainConfig {
            model: ModelConfig::shipped_variant(width),
            generator_in_step2: false,
            class_balance: 0.5,
            ..TrainConfig::default()
        };
        // One factor at a time between the two ends, to see where the time goes.
        let configs = [
            (
                "paper: G end to end in step 2, L_Recon, contrast only",
                paper.clone(),
            ),
            (
                "paper without L_Recon",
                TrainConfig {
                    model: ModelConfig {
                        use_reconstruction: false,
                        ..paper.model
                    },
                    ..paper.clone()
                },
            ),
            (
                "G held in step 2, L_Recon",
                TrainConfig {
                    model: ModelConfig {
                        use_reconstruction: true,
                        ..shipped.model
                    },
                    ..shipped.clone()
                },
            ),
            (
                "shipped: G held in step 2, no L_Recon, query + contrast",
                shipped,
            ),
        ];
        for (k, (name, cfg)) in configs.into_iter().enumerate() {
            // Step 1 (the generator alone) is the same in every configuration: timed once.
            let cfg = TrainConfig {
                gen_epochs: usize::from(k == 0),
                epochs: 1,
                ..cfg
            };
            let trained = train(&data, None, &cfg, device, None, false, None)?;
            let rate = |step: u8| {
                trained
                    .history
                    .iter()
                    .find(|m| m.step == step)
                    .map(|m| m.samples_per_sec)
                    .unwrap_or(f64::NAN)
            };
            let (s1, s2) = (rate(1), rate(2));
            let s1 = if s1.is_nan() {
                "—".to_string()
            } else {
                format!("{s1:.1}")
            };
            eprintln!("  {name:<58} {width:>5} {s1:>10} {s2:>10.1}");
            md += &format!("| {name} | {width} | {s1} | {s2:.1} |\n");
        }
    }
    // Batch assembly with and without augmentation, outside the network.
    let mut rng = rand::SeedableRng::seed_from_u64(1);
    let idx: Vec<usize> = (0..64.min(data.len())).collect();
    let mut times = |augment: bool| {
        let cfg = TrainConfig {
            augment,
            ..TrainConfig::default()
        };
        let mut ms: Vec<f64> = (0..30)
            .map(|_| {
                time_ms(|| {
                    let _ =
                        crate::learn::train::training_batch(&data, &idx, &cfg, 2, device, &mut rng);
                })
            })
            .collect();
        median_p95(&mut ms).0
    };
    let (plain_ms, augmented_ms) = (times(false), times(true));
    md += &format!(
        "\nBatch of 64 assembled: {plain_ms:.2} ms as stored, {augmented_ms:.2} ms with augmentation and degradation (median of 30).\n"
    );
    let report = format!(
        "Training throughput on {} threads, device {}, TFEID + CK+48 ({} faces), batch 64, augmentation on:\n\n{md}",
        tch::get_num_threads(),
        device_name(device),
        data.len()
    );
    finish_report(args, &report)
}

/// GCNet's forward on `x` (generator, encoder on query and reference, classifier): median and
/// 95th percentile in ms over `runs` after `warmup` untimed ones. Each ends with a read of a
/// logit on the host, so a GPU's queued work is counted.
fn time_forward(
    net: &crate::model::GcNet,
    x: &tch::Tensor,
    warmup: usize,
    runs: usize,
) -> (f64, f64) {
    let forward = || {
        tch::no_grad(|| {
            let g = net.generator.forward_t(x, false);
            net.eval_logits(x, &g).0.double_value(&[0, 0])
        })
    };
    for _ in 0..warmup {
        forward();
    }
    let mut ms: Vec<f64> = (0..runs)
        .map(|_| {
            time_ms(|| {
                forward();
            })
        })
        .collect();
    median_p95(&mut ms)
}

/// The model layouts compared by `dgcn bench --layouts`: the paper's, the shipped one's
/// neighbours and the wider encoders considered for recognition.
fn candidate_layouts() -> Vec<(&'static str, crate::model::ModelConfig)> {
    use crate::model::ModelConfig;
    let shipped = ModelConfig::shipped_variant(0.5);
    let encoder = |w: f64, convs: i64| ModelConfig {
        encoder_width: Some(w),
        encoder_convs: convs,
        ..shipped
    };
    vec![
        ("paper's Fig. 3 (width 1)", ModelConfig::default()),
        ("width 0.5, query + contrast", shipped),
        ("G 0.5, encoder 0.75", encoder(0.75, 1)),
        ("G 0.5, encoder 1", encoder(1.0, 1)),
        ("G 0.5, encoder 0.5, 2 convs", encoder(0.5, 2)),
        ("G 0.5, encoder 0.5, 3 convs", encoder(0.5, 3)),
        ("G 0.5, encoder 0.625, 2 convs", encoder(0.625, 2)),
        ("G 0.5, encoder 0.75, 2 convs", encoder(0.75, 2)),
        ("G 0.5, encoder 1, 2 convs", encoder(1.0, 2)),
        (
            "G 0.5, encoder 1, 2 convs residual",
            ModelConfig {
                encoder_residual: true,
                ..encoder(1.0, 2)
            },
        ),
    ]
}

/// GCNet forward (generator, encoder on query and reference, classifier) at batch 1 for each
/// candidate layout, randomly initialised (the time does not depend on the weights' values).
pub(super) fn run_layout_bench(args: &BenchArgs) -> Result<()> {
    args.common.runtime().device()?;
    let mut md = String::from(
        "| layout | parameters | forward ms, batch 1 (median) | p95 |\n|---|---:|---:|---:|\n",
    );
    for (name, cfg) in candidate_layouts() {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let net = crate::model::GcNet::new(&vs.root(), cfg);
        let params: i64 = vs
            .trainable_variables()
            .iter()
            .map(|t| t.numel() as i64)
            .sum();
        let x = tch::Tensor::rand([1, 1, 64, 64], (tch::Kind::Float, Device::Cpu));
        let (m, p) = time_forward(&net, &x, 20, args.repeats * 100);
        eprintln!("  {name:<36} {params:>10} {m:>8.2} {p:>8.2}");
        md += &format!("| {name} | {params} | {m:.2} | {p:.2} |\n");
    }
    finish_report(args, &md)
}

/// `dgcn bench --model`: GCNet's forward (generator, encoder on query and reference, classifier)
/// with the given weights at batch 1, 8 and 64, on the CPU and on every CUDA device libtorch
/// sees. The input is random faces (the time does not depend on the pixels); each timing ends
/// with a read of the logits on the host, so a GPU's queued work is counted.
pub(super) fn run_model_bench(args: &BenchArgs) -> Result<()> {
    args.common.runtime().device()?;
    let mut devices = vec![Device::Cpu];
    for i in 0..tch::Cuda::device_count() {
        devices.push(Device::Cuda(i as usize));
    }
    let mut md = String::from(
        "| device | format | batch | forward ms (median) | p95 | faces/s |\n|---|---|---:|---:|---:|---:|\n",
    );
    let runs = devices.into_iter().flat_map(|dev| {
        crate::device::Precision::benched_on(dev)
            .into_iter()
            .map(move |p| (dev, p))
    });
    for (dev, precision) in runs {
        let mut model = crate::model::weights::load(&args.weights, dev)
            .with_context(|| format!("loading {}", args.weights.display()))?;
        model.prepare_for_inference(precision.kind_on(dev));
        let format = precision.format_on(dev);
        for batch in [1i64, 8, 64] {
            let x = tch::Tensor::rand([batch, 1, 64, 64], (tch::Kind::Float, dev));
            let runs = (args.repeats * 100 / batch as usize).max(10);
            let (m, p) = time_forward(&model.net, &x, 10, runs);
            let rate = batch as f64 * 1000.0 / m.max(1e-9);
            let name = device_name(dev);
            eprintln!("  {name:<40} {format:>5} {batch:>4} {m:>8.3} {p:>8.3} {rate:>10.0}");
            md += &format!("| {name} | {format} | {batch} | {m:.3} | {p:.3} | {rate:.0} |\n");
        }
    }
    let report = format!(
        "GCNet forward, weights {}, {} CPU threads:\n\n{md}",
        args.weights.display(),
        tch::get_num_threads()
    );
    finish_report(args, &report)
}
