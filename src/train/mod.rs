//! The training engine: one step loop shared by PT, SFT and DPO, with our own AdamW, schedules,
//! gradient clipping and accumulation.

pub mod checkpoint;
pub mod engine;
pub mod optim;
pub mod schedule;
pub mod tasks;

#[cfg(test)]
mod tests;
