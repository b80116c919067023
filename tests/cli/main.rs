//! Integration tests driving the real CLI on tiny generated projects.

mod common;
mod demo;
mod eval;
mod generation;
mod integrity;
mod keys;
mod lock;
mod paths;
mod promotions;
mod reproduce;
mod run;
mod snapshots;
mod store;
mod tempfiles;
mod train;
