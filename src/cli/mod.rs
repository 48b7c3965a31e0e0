//! One module per subcommand.

pub mod check;
pub mod embed;
pub mod graph;
pub mod models;
pub mod run;
