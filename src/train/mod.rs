//! Training: metrics, learning-rate schedules, FLOP accounting, checkpoints, the run
//! configuration, the training loop, reports and plots (the `suptickets train` command).

pub mod assemble;
pub mod checkpoint;
pub mod config;
pub mod finite;
pub mod flops;
pub mod hooks;
pub mod loss_record;
pub mod metrics;
pub mod plot;
pub mod progress;
pub mod report;
pub mod resuperpose;
pub mod run;
pub mod run_dir;
pub mod schedule;
pub mod trainer;
pub mod validate;

pub use checkpoint::{Checkpoint, CheckpointMeta, ModelSpec};
pub use config::TrainConfig;
pub use flops::{FlopsTable, LayerFlops, Method};
pub use metrics::{Metrics, MetricsAccumulator};
pub use report::{EpochLog, Report};
pub use schedule::{LrSchedule, ScheduleKind};
pub use trainer::{
    eval_checkpoint, evaluate, resume, train, train_from, train_from_with, EvalResult,
};
