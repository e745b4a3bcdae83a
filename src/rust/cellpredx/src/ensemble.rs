//! Several CellPredX networks trained on the same data with consecutive seeds, whose class
//! probabilities and open-set scores are averaged (`predict`) and whose attributions are those
//! of the averaged probability (`interpret`).
//!
//! A single network's calls on the benchmark pairs move with the seed — on P6 one seed calls an
//! alpha cell gamma and another does not — because each network settles in its own minimum of
//! the five losses. Where that matters a transfer trains three and averages them
//! (`transfer::auto_networks` has the measured effect). On the CPU the networks train side by
//! side (`Schedule`), which makes three on two cores cost about twice one, not three times.

use crate::error::{CellPredXError, Result};
use crate::model::NetworkShape;
use crate::predict::check_prior_correction;
use crate::progress::{ProgressEvent, ProgressSink};
use crate::runtime;
use crate::train::{train, Compute, Recovery, StepRecord, StopReason, TrainedModel, TrainingConfig, TrainingData};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use tch::{Device, Tensor};

/// Networks of a transfer where it uses an ensemble (`transfer::auto_networks`).
pub const DEFAULT_NETWORKS: usize = 3;

/// More networks than this cost training time for no measurable gain.
pub const MAX_NETWORKS: usize = 20;

/// The number of networks must be 1 to `MAX_NETWORKS`.
pub fn check_networks(networks: usize) -> Result<()> {
    if (1..=MAX_NETWORKS).contains(&networks) {
        Ok(())
    } else {
        Err(CellPredXError::invalid(format!("networks must be 1 to {MAX_NETWORKS}, not {networks}")))
    }
}

/// How an ensemble's networks share the CPU: how many train at the same time, and how many
/// threads libtorch and the sparse first layer use inside each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub concurrent: usize,
    pub threads_each: usize,
}

impl Schedule {
    /// On the CPU, networks train side by side: a network's matrices are too small to keep
    /// several cores busy (on two cores the second one idled through 29 % of a P1 step), so
    /// three networks on one thread each beat three in turn on two threads each (a P1
    /// transfer: 109 s against 155–164 s; bench/NOTES.md). One network more than there are
    /// threads keeps every core busy while the last ones finish. On a GPU, whose kernels queue
    /// one after another anyway, they train in turn with all threads.
    pub fn for_compute(compute: Compute, networks: usize, threads: usize) -> Self {
        let threads = threads.max(1);
        let concurrent = if compute.device == Device::Cpu && threads > 1 { networks.clamp(1, threads + 1) } else { 1 };
        Schedule { concurrent, threads_each: (threads / concurrent).max(1) }
    }
}

/// How one network of an ensemble was trained: its seed, its steps and why it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRun {
    pub seed: u64,
    pub steps: usize,
    pub stop: StopReason,
    /// Recoveries from a diverging loss (`train::Recovery`); 0 in files written before they existed.
    #[serde(default)]
    pub recoveries: usize,
}

/// Networks of the same shape and classes.
pub struct Ensemble {
    members: Vec<TrainedModel>,
    runs: Vec<NetworkRun>,
}

impl Ensemble {
    /// Trains one network on each of `data`, the i-th (from 0) with seed `config.seed + i`, so
    /// that an ensemble of one is the network `train` gives for `config`. On the CPU the networks
    /// train side by side (`Schedule::for_compute`).
    pub fn train(data: &[TrainingData<'_>], config: &TrainingConfig, compute: Compute, progress: &mut dyn ProgressSink) -> Result<Self> {
        let schedule = Schedule::for_compute(compute, data.len(), runtime::threads());
        Self::train_scheduled(data, config, compute, schedule, progress)
    }

    /// `train` with the networks spread over threads as `schedule` says. Each network computes
    /// on its own `schedule.threads_each` threads, so its result does not depend on how many
    /// others train beside it.
    pub fn train_scheduled(data: &[TrainingData<'_>], config: &TrainingConfig, compute: Compute, schedule: Schedule, progress: &mut dyn ProgressSink) -> Result<Self> {
        let networks = data.len();
        check_networks(networks)?;
        let configs: Vec<TrainingConfig> = (0..networks).map(|i| TrainingConfig { seed: config.seed.wrapping_add(i as u64), ..config.clone() }).collect();
        let members = train_networks(data, &configs, compute, schedule, progress)?;
        let runs = members.iter().map(|m| NetworkRun { seed: m.config.seed, steps: m.history.len(), stop: m.stop, recoveries: m.recoveries.len() }).collect();
        Ok(Ensemble { members, runs })
    }

    /// Takes back `correction` (0 to 1) of the tilt toward small types that drawing reference
    /// cells with `class_balance` b gave the classifiers: each class's logit moves by
    /// correction · b · ln(its reference cells). Drawing cell i with weight nₖ^−b trains under
    /// the prior nₖ^(1−b); correction 1 restores the reference's composition nₖ exactly (Bayes'
    /// rule), 0 keeps the balanced prior. Predictions and attributions see the shift; training
    /// never does, so it can be set again.
    pub fn correct_priors(&mut self, class_cells: &[usize], correction: f64) -> Result<()> {
        check_prior_correction(correction)?;
        if class_cells.len() != self.classes().len() || class_cells.contains(&0) {
            return Err(CellPredXError::invalid(format!(
                "the prior correction needs the reference cells of each of the {} classes, got {class_cells:?}",
                self.classes().len()
            )));
        }
        for member in &mut self.members {
            let tilt = correction * member.config.class_balance;
            let offsets: Vec<f32> = class_cells.iter().map(|&n| (tilt * (n as f64).ln()) as f32).collect();
            member.class_offsets = Tensor::f_from_slice(&offsets)?.f_to_device(member.compute.device)?;
        }
        Ok(())
    }

    pub fn members(&self) -> &[TrainedModel] {
        &self.members
    }

    /// The networks' common shape.
    pub fn shape(&self) -> NetworkShape {
        self.members[0].shape()
    }

    pub fn classes(&self) -> &[String] {
        &self.members[0].classes
    }

    pub fn compute(&self) -> Compute {
        self.members[0].compute
    }

    pub fn runs(&self) -> &[NetworkRun] {
        &self.runs
    }

    /// Every network's training steps, one network after another, each with its network's
    /// number (from 1). Empty for a loaded ensemble: files keep no history.
    pub fn history(&self) -> impl Iterator<Item = (usize, &StepRecord)> {
        self.members.iter().enumerate().flat_map(|(i, m)| m.history.iter().map(move |r| (i + 1, r)))
    }

    /// Every network's recoveries from a diverging loss, each with its network's number (from 1).
    /// Empty for a loaded ensemble.
    pub fn recoveries(&self) -> impl Iterator<Item = (usize, &Recovery)> {
        self.members.iter().enumerate().flat_map(|(i, m)| m.recoveries.iter().map(move |r| (i + 1, r)))
    }

    /// Writes every network's variables into one safetensors file, each name prefixed with
    /// `network<i>.` (from 1).
    pub fn save_weights(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = Vec::new();
        for (i, member) in self.members.iter().enumerate() {
            let mut variables: Vec<(String, Tensor)> = member.vs.variables().into_iter().collect();
            variables.sort_by(|a, b| a.0.cmp(&b.0));
            named.extend(variables.into_iter().map(|(name, t)| (format!("network{}.{name}", i + 1), t)));
        }
        Tensor::write_safetensors(&named, path).map_err(|e| CellPredXError::invalid(format!("cannot write {}: {}", path.display(), CellPredXError::from(e))))
    }

    /// The ensemble `save_weights` wrote, for networks of `shape` trained as `runs` say.
    pub fn load_weights(path: &Path, shape: NetworkShape, classes: &[String], config: &TrainingConfig, runs: &[NetworkRun], compute: Compute) -> Result<Self> {
        let not_these_weights = |why: String| CellPredXError::invalid(format!("{} is missing, truncated or not the weights of this model: {why}", path.display()));
        check_networks(runs.len()).map_err(|e| not_these_weights(e.to_string()))?;
        let stored: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(path).map_err(|e| not_these_weights(CellPredXError::from(e).to_string()))?.into_iter().collect();
        let mut members = Vec::with_capacity(runs.len());
        for (i, run) in runs.iter().enumerate() {
            let member_config = TrainingConfig { seed: run.seed, ..config.clone() };
            let member = TrainedModel::with_weights(shape, classes.to_vec(), member_config, run.stop, compute, |name, variable| {
                let key = format!("network{}.{name}", i + 1);
                let value = stored.get(&key).ok_or_else(|| not_these_weights(format!("no {key}")))?;
                if value.size() != variable.size() {
                    return Err(not_these_weights(format!("{key} has shape {:?}, the model {:?}", value.size(), variable.size())));
                }
                Ok(value.shallow_clone())
            })?;
            members.push(member);
        }
        Ok(Ensemble { members, runs: runs.to_vec() })
    }
}

/// What a training thread tells the calling thread.
enum Report {
    Step { network: usize, done: usize, metrics: Vec<(String, f64)> },
    Finished { network: usize, result: Box<Result<TrainedModel>> },
}

/// A training thread's progress sink: passes each step on to the calling thread, and stops the
/// training once any network has failed or the caller's own sink has.
struct ForwardSteps<'a> {
    network: usize,
    sender: mpsc::Sender<Report>,
    stop: &'a AtomicBool,
}

impl ProgressSink for ForwardSteps<'_> {
    fn report(&mut self, event: &ProgressEvent<'_>) -> Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            return Err(CellPredXError::Interrupted);
        }
        let metrics = event.metrics.iter().map(|(name, value)| (name.to_string(), *value)).collect();
        // The receiver only goes away once every training thread has ended.
        let _ = self.sender.send(Report::Step { network: self.network, done: event.done, metrics });
        Ok(())
    }
}

/// How often the calling thread reports when no step arrives, so that Ctrl-C is noticed while the
/// networks prepare or summarise.
const QUIET_REPORT_INTERVAL: Duration = Duration::from_millis(250);

/// The networks of `configs`, the i-th trained on `data[i]`, on `schedule.concurrent` threads that
/// take the next untrained network as they finish one. Only the calling thread reports to
/// `progress` (the sink may be R): one stage for all networks, its steps summed and its figures
/// averaged over the networks. A failure, or an error from `progress` (Ctrl-C), stops every
/// network at its next step.
fn train_networks(data: &[TrainingData<'_>], configs: &[TrainingConfig], compute: Compute, schedule: Schedule, progress: &mut dyn ProgressSink) -> Result<Vec<TrainedModel>> {
    let networks = configs.len();
    let stage = if networks == 1 { "training".to_string() } else { format!("training {networks} networks") };
    let limits: Vec<usize> = configs.iter().zip(data).map(|(c, d)| c.step_limit(d.reference.n_rows(), d.query.n_rows())).collect();
    let total: usize = limits.iter().sum();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (sender, receiver) = mpsc::channel();
    let mut results: Vec<Option<Result<TrainedModel>>> = (0..networks).map(|_| None).collect();
    let mut progress_error = None;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..schedule.concurrent.clamp(1, networks))
            .map(|_| {
                let sender = sender.clone();
                let (next, stop) = (&next, &stop);
                scope.spawn(move || {
                    let _stop_others_on_panic = StopOnPanic(stop);
                    runtime::set_libtorch_threads_here(schedule.threads_each);
                    runtime::with_pool_threads(schedule.threads_each, || loop {
                        let network = next.fetch_add(1, Ordering::SeqCst);
                        if network >= networks || stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let mut forward = ForwardSteps { network, sender: sender.clone(), stop };
                        let result = train(&data[network], &configs[network], compute, &mut forward);
                        if result.is_err() {
                            stop.store(true, Ordering::Relaxed);
                        }
                        let _ = sender.send(Report::Finished { network, result: Box::new(result) });
                    })
                })
            })
            .collect();
        drop(sender);
        let mut done = vec![0usize; networks];
        let mut latest: Vec<Vec<(String, f64)>> = vec![Vec::new(); networks];
        loop {
            match receiver.recv_timeout(QUIET_REPORT_INTERVAL) {
                Ok(Report::Step { network, done: steps, metrics }) => {
                    done[network] = steps;
                    latest[network] = metrics;
                }
                Ok(Report::Finished { network, result }) => {
                    done[network] = limits[network];
                    results[network] = Some(*result);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if progress_error.is_none() {
                let metrics = mean_metrics(&latest);
                let named: Vec<(&str, f64)> = metrics.iter().map(|(name, value)| (name.as_str(), *value)).collect();
                if let Err(e) = progress.report(&ProgressEvent { stage: &stage, done: done.iter().sum(), total, metrics: &named }) {
                    progress_error = Some(e);
                    stop.store(true, Ordering::Relaxed);
                }
            }
        }
        for worker in workers {
            if let Err(panic) = worker.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
    // The training threads set libtorch's thread count for threads started later too.
    tch::set_num_threads(runtime::threads() as i32);
    if let Some(e) = progress_error {
        return Err(e);
    }
    let mut members = Vec::with_capacity(networks);
    let mut interrupted = false;
    for result in results {
        match result {
            Some(Ok(member)) => members.push(member),
            Some(Err(CellPredXError::Interrupted)) | None => interrupted = true,
            Some(Err(e)) => return Err(e),
        }
    }
    if interrupted {
        return Err(CellPredXError::Interrupted);
    }
    Ok(members)
}

/// Stops the other networks when the training thread that holds it panics (the panic itself then
/// reaches the caller when the thread is joined).
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.store(true, Ordering::Relaxed);
        }
    }
}

/// Each figure's mean over the networks that have reported it, matched by name (a network that
/// has recovered from a diverging loss reports more figures than the others); "recoveries" is
/// summed over the networks instead.
fn mean_metrics(latest: &[Vec<(String, f64)>]) -> Vec<(String, f64)> {
    let mut names: Vec<&str> = Vec::new();
    for (name, _) in latest.iter().flatten() {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    names
        .into_iter()
        .map(|name| {
            let values: Vec<f64> = latest.iter().filter_map(|m| m.iter().find(|(n, _)| n == name).map(|(_, v)| *v)).collect();
            let sum = values.iter().sum::<f64>();
            (name.to_string(), if name == "recoveries" { sum } else { sum / values.len() as f64 })
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::progress::{ProgressEvent, Silent};
    use crate::train::tests::{small_config, toy_graph, toy_pair};
    use tch::Device;

    /// `networks` networks trained by `config` on the toy pair of `n_reference` and `n_query`
    /// cells, and the toy query.
    pub(crate) fn toy_ensemble(n_reference: usize, n_query: usize, config: &TrainingConfig, networks: usize) -> (Ensemble, crate::sparse::CsrMatrix) {
        let (reference, labels, query) = toy_pair(n_reference, n_query);
        let graph = toy_graph(&query);
        let data = TrainingData { reference: &reference, labels: &labels, query: &query, query_graph: &graph };
        (Ensemble::train(&vec![data; networks], config, Compute::on(Device::Cpu), &mut Silent).unwrap(), query)
    }

    struct Stages(Vec<String>);

    impl ProgressSink for Stages {
        fn report(&mut self, event: &ProgressEvent<'_>) -> Result<()> {
            if self.0.last().map(String::as_str) != Some(event.stage) {
                self.0.push(event.stage.to_string());
            }
            Ok(())
        }
    }

    #[test]
    fn members_are_the_single_networks_of_consecutive_seeds_and_survive_a_save() {
        let (reference, labels, query) = toy_pair(100, 70);
        let graph = toy_graph(&query);
        let data = TrainingData { reference: &reference, labels: &labels, query: &query, query_graph: &graph };
        let config = TrainingConfig { seed: 5, ..small_config(30) };
        let cpu = Compute::on(Device::Cpu);
        let side_by_side = Schedule { concurrent: 2, threads_each: 1 };
        let mut stages = Stages(Vec::new());
        let ensemble = Ensemble::train_scheduled(&[data; 2], &config, cpu, side_by_side, &mut stages).unwrap();
        assert_eq!(stages.0, ["training 2 networks"]);
        assert_eq!(ensemble.runs().iter().map(|r| r.seed).collect::<Vec<_>>(), [5, 6]);
        let numbered: Vec<usize> = ensemble.history().map(|(network, _)| network).collect();
        assert_eq!(numbered, [vec![1; 30], vec![2; 30]].concat());
        let in_turn = Ensemble::train_scheduled(&[data; 2], &config, cpu, Schedule { concurrent: 1, ..side_by_side }, &mut Silent).unwrap();
        for ((member, seed), alone) in ensemble.members().iter().zip([5, 6]).zip(in_turn.members()) {
            assert_eq!(member.history, alone.history, "seed {seed}: training beside another network changed it");
            let single = Ensemble::train_scheduled(&[data], &TrainingConfig { seed, ..config.clone() }, cpu, side_by_side, &mut stages).unwrap();
            assert_eq!(single.members()[0].history, member.history, "seed {seed}");
        }
        assert_eq!(stages.0.last().unwrap(), "training", "a single network keeps the plain stage name");

        let path = std::env::temp_dir().join(format!("cellpredx-ensemble-{}.safetensors", std::process::id()));
        ensemble.save_weights(&path).unwrap();
        let load = |runs: &[NetworkRun]| Ensemble::load_weights(&path, ensemble.shape(), ensemble.classes(), &config, runs, Compute::on(Device::Cpu));
        let loaded = load(ensemble.runs()).unwrap();
        assert_eq!(loaded.runs(), ensemble.runs());
        for (a, b) in loaded.members().iter().zip(ensemble.members()) {
            for (name, t) in b.vs.variables() {
                assert!(a.vs.variables()[&name].equal(&t), "{name}");
            }
        }
        let three = [ensemble.runs(), &ensemble.runs()[..1]].concat();
        let err = load(&three).err().unwrap().to_string();
        assert!(err.contains("not the weights of this model: no network3."), "{err}");
        let err = load(&[]).err().unwrap().to_string();
        assert!(err.contains("networks must be 1 to 20, not 0"), "{err}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn networks_share_the_cpu_and_take_turns_on_a_gpu() {
        let cpu = Compute::on(Device::Cpu);
        assert_eq!(Schedule::for_compute(cpu, 3, 2), Schedule { concurrent: 3, threads_each: 1 });
        assert_eq!(Schedule::for_compute(cpu, 20, 2), Schedule { concurrent: 3, threads_each: 1 });
        assert_eq!(Schedule::for_compute(cpu, 3, 16), Schedule { concurrent: 3, threads_each: 5 });
        assert_eq!(Schedule::for_compute(cpu, 1, 2), Schedule { concurrent: 1, threads_each: 2 });
        assert_eq!(Schedule::for_compute(cpu, 3, 1), Schedule { concurrent: 1, threads_each: 1 });
        assert_eq!(Schedule::for_compute(Compute::on(Device::Cuda(0)), 3, 8), Schedule { concurrent: 1, threads_each: 8 });
    }

    /// Stops after `left` reports with the error `make` gives.
    struct FailAfter {
        left: usize,
        make: fn() -> CellPredXError,
    }

    impl ProgressSink for FailAfter {
        fn report(&mut self, _event: &ProgressEvent<'_>) -> Result<()> {
            match self.left.checked_sub(1) {
                Some(left) => {
                    self.left = left;
                    Ok(())
                }
                None => Err((self.make)()),
            }
        }
    }

    #[test]
    fn an_interrupt_or_a_failing_network_stops_every_network() {
        let (reference, labels, query) = toy_pair(100, 70);
        let graph = toy_graph(&query);
        let data = TrainingData { reference: &reference, labels: &labels, query: &query, query_graph: &graph };
        let config = small_config(500);
        let side_by_side = Schedule { concurrent: 3, threads_each: 1 };
        let mut interrupt = FailAfter { left: 20, make: || CellPredXError::Interrupted };
        let err = Ensemble::train_scheduled(&[data; 3], &config, Compute::on(Device::Cpu), side_by_side, &mut interrupt).err().unwrap();
        assert!(matches!(err, CellPredXError::Interrupted), "{err}");
        let mut callback = FailAfter { left: 20, make: || CellPredXError::Callback("bar closed".into()) };
        let err = Ensemble::train_scheduled(&[data; 3], &config, Compute::on(Device::Cpu), side_by_side, &mut callback).err().unwrap();
        assert_eq!(err.to_string(), "progress callback failed: bar closed");

        // The second network's graph belongs to other cells: its error, not an interrupt of the
        // others, is what the caller sees.
        let (_, _, other_query) = toy_pair(100, 40);
        let other_graph = toy_graph(&other_query);
        let broken = TrainingData { query_graph: &other_graph, ..data };
        let err = Ensemble::train_scheduled(&[data, broken, data], &config, Compute::on(Device::Cpu), side_by_side, &mut Silent).err().unwrap();
        assert!(matches!(err, CellPredXError::DimensionMismatch { .. }), "{err}");
    }

    #[test]
    fn a_prior_correction_moves_the_probabilities_toward_the_reference_composition() {
        let config = TrainingConfig { class_balance: 0.5, ..small_config(20) };
        let (mut ensemble, query) = toy_ensemble(100, 40, &config, 1);
        let probabilities = |e: &Ensemble| e.predict(&query, 0.0, &mut Silent).unwrap().probabilities;
        let balanced = probabilities(&ensemble);
        let cells = [10, 90];
        ensemble.correct_priors(&cells, 1.0).unwrap();
        // Drawn with weight n^−0.5, the classes were seen in proportion n^0.5; undoing that
        // fully gives p ∝ p_balanced · n^0.5.
        for (b, a) in balanced.rows().into_iter().zip(probabilities(&ensemble).rows()) {
            let tilted: Vec<f32> = b.iter().zip(cells).map(|(p, n)| p * (n as f32).sqrt()).collect();
            let total: f32 = tilted.iter().sum();
            for (t, a) in tilted.iter().zip(a) {
                assert!((t / total - a).abs() < 1e-5, "{} against {a}", t / total);
            }
        }
        ensemble.correct_priors(&cells, 0.0).unwrap();
        assert_eq!(probabilities(&ensemble), balanced, "a correction of 0 is none");
        let mut err = |cells: &[usize], c: f64| ensemble.correct_priors(cells, c).unwrap_err().to_string();
        assert_eq!(err(&cells, 1.5), "prior_correction must be between 0 and 1, not 1.5");
        assert!(err(&[10], 0.5).contains("reference cells of each of the 2 classes"));
        assert!(err(&[0, 90], 0.5).contains("reference cells of each of the 2 classes"));
    }

    #[test]
    fn the_number_of_networks_is_checked() {
        assert!(check_networks(1).is_ok() && check_networks(MAX_NETWORKS).is_ok());
        assert_eq!(check_networks(0).unwrap_err().to_string(), "networks must be 1 to 20, not 0");
        assert!(check_networks(MAX_NETWORKS + 1).is_err());
    }
}
