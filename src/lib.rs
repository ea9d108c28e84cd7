//! Gatehouse: an identity federation broker. Applications speak OpenID Connect to
//! Gatehouse; Gatehouse signs people in through upstream connections and issues its own
//! tokens. See ARCHITECTURE.md for the map of this crate.

pub mod actions;
pub mod clock;
pub mod connections;
pub mod flow;
pub mod http;
pub mod net;
pub mod oauth;
pub mod profile;
pub mod session;
pub mod settings;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod types;
mod ui;

pub use settings::Settings;
pub use state::Core;
