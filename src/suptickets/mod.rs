//! Sup-tickets (Yin et al., UAI 2022; docs/computation.md, Sup-tickets): the building blocks a
//! training run calls.
//!
//! - [`schedule`]: the budget split (normal epochs P, cycles of C epochs, K tickets), the
//!   per-iteration triangle learning rate of Eq. 3, cycle starts and ticket captures;
//! - [`superpose`]: the running superposed ticket S (CIA / CAA / CIMA averaging fused with
//!   global or layerwise magnitude re-pruning on the device), one extra copy of the maskable
//!   weights whatever the number of tickets, and the ultimate ticket;
//! - [`bn`]: batch-norm statistics of the superposed ticket, AV (averaged) or BU (recomputed);
//! - [`ensemble`]: the deep-ensemble baseline of appendix E (keeps every ticket).
//!
//! A run, in order: [`Budget::new`] and [`SupSchedule::new`]; the normal phase with the base
//! method's schedule over P epochs; at [`SupSchedule::capture`] = Some(0),
//! [`Superposer::new`] (+ [`BnAverager::new`], [`Ensemble::add_ticket`]); at each
//! [`SupSchedule::cycle_start`] = Some(k) one exploration step (per-layer magnitude prune of
//! q and regrowth, `crate::sparse`), then SGD at [`SupSchedule::cyclic_lr`]; at
//! [`SupSchedule::capture`] = Some(k), [`Superposer::add_ticket`] (+ [`BnAverager::add_ticket`],
//! [`Ensemble::add_ticket`]); at the end [`Superposer::apply_to`] / [`Superposer::ultimate_store`]
//! and [`BnAverager::apply_to`] or [`bn_update`], then evaluate the ultimate ticket.

pub mod bn;
pub mod driver;
pub mod ensemble;
pub mod schedule;
pub mod superpose;
pub mod superpose_config;

pub use bn::{bn_update, bn_update_loader, BnAverager, BnStrategy};
pub use ensemble::{Ensemble, EnsembleReport};
pub use schedule::{Budget, Phase, SupSchedule, TriangleLr};
pub use superpose::{
    AverageKind, Averaging, Reprune, SuperposeConfig, Superposer, TicketStats, UltimateParam,
    DEFAULT_CIMA_BETA,
};
