//! Renderers of results for people. Pure: they take computed summaries and a `Write`.

pub mod table;
