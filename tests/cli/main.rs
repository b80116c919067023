//! Integration tests driving the real CLI on tiny generated projects.

mod common;
mod demo;
mod eval;
mod keys;
mod lock;
mod promotions;
mod run;
mod snapshots;
mod store;
mod train;
