//! The training engine: one step loop shared by PT, SFT and DPO, with our own AdamW, schedules,
//! gradient clipping and accumulation.

pub mod backend;
pub mod checkpoint;
pub mod dpo;
pub mod engine;
pub mod executor;
pub mod optim;
pub mod pt;
pub mod schedule;
pub mod sft;
pub mod tasks;

#[cfg(test)]
mod tests;
