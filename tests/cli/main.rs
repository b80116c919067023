//! Integration tests driving the real CLI on tiny generated projects.

mod common;
mod demo;
mod eval;
mod integrity;
mod keys;
mod lock;
mod run;
mod snapshots;
mod store;
mod train;
