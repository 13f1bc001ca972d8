//! Renderers of results for people. Pure: they take computed summaries or the report model
//! and a `Write`.

pub mod chart;
pub mod draw;
pub mod figures;
pub mod html;
pub mod markdown;
pub mod model;
pub mod prediction_text;
pub mod search_text;
pub mod table;

#[cfg(test)]
mod tests;
