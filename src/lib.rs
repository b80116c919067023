//! medrun: reproducible, eval-gated training of medical LLMs.
//!
//! The crate is one library plus a thin binary. `spec`, `lock`, `hash`, `store`, `lineage`,
//! `fsx` and `strict_json` never touch the ML stack, so they stay fast to build and test.

pub mod cli;
pub mod data;
pub mod demo;
pub mod env;
pub mod error;
pub mod eval;
pub mod fsx;
pub mod generation;
pub mod hash;
pub mod lineage;
pub mod lock;
pub mod model;
pub mod ops;
pub mod printer;
pub mod promotions;
pub mod provenance;
pub mod rng;
pub mod spec;
pub mod stage;
pub mod store;
pub mod strict_json;
pub mod tempfiles;
pub mod template;
pub mod time;
pub mod tokenizer;
pub mod train;
pub mod yaml;
