//! The built-in demo corpus, written from a hand-written table of textbook medical facts.
//!
//! - [`facts`] holds the table: five kinds of fact (symptoms, treatments and drug classes,
//!   contraindications, specialists, red flags), each with wrong alternatives.

pub mod facts;
